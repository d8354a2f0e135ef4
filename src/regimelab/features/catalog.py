"""The feature catalogue: every feature kind, its name, its window and its formula.

A feature is a kind, integer parameters and a timeframe; its column name is
``{kind}_{params...}_{timeframe}``, for example ``parkinson_20_4h`` or
``macd_hist_12_26_9_1h``. Each kind says how many bars (of its own timeframe,
the current one included) it needs: its lookback.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from regimelab.exceptions import FeatureError
from regimelab.features.rolling import (
    lag,
    rolling_ema,
    rolling_mean,
    rolling_sum,
    rolling_zscore,
)
from regimelab.params import FeaturesParams

Bars = dict[str, np.ndarray]  # open, high, low, close, volume of one symbol at one timeframe

_LN2_4 = 4.0 * math.log(2.0)


def _log_return(b: Bars) -> np.ndarray:
    c = b["close"]
    return np.log(c / lag(c, 1))


def _log_volume(b: Bars) -> np.ndarray:
    # log1p keeps zero-volume bars (exchange outages) finite.
    return np.log1p(b["volume"])


def _vwap(b: Bars, w: int) -> np.ndarray:
    typical = (b["high"] + b["low"] + b["close"]) / 3.0
    vol = rolling_sum(b["volume"], w)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = rolling_sum(typical * b["volume"], w) / vol
    # A window without volume has no VWAP; the mean typical price stands in for it.
    return np.where(vol > 0, vwap, rolling_mean(typical, w))


def _relative_volume(b: Bars, w: int) -> np.ndarray:
    mean = rolling_mean(b["volume"], w)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = b["volume"] / mean
    return np.where(mean > 0, ratio, 1.0)


def _rsi(b: Bars, n: int) -> np.ndarray:
    change = b["close"] - lag(b["close"], 1)
    gain = rolling_mean(np.maximum(change, 0.0), n)
    loss = rolling_mean(np.maximum(-change, 0.0), n)
    total = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = 100.0 * gain / total
    return np.where(total > 0, rsi, 50.0)


def _macd(b: Bars, fast: int, slow: int) -> np.ndarray:
    c = b["close"]
    return (rolling_ema(c, fast) - rolling_ema(c, slow)) / c


def _macd_signal(b: Bars, fast: int, slow: int, signal: int) -> np.ndarray:
    return rolling_ema(_macd(b, fast, slow), signal)


def _realized_vol(b: Bars, h: int) -> np.ndarray:
    return np.sqrt(rolling_mean(_log_return(b) ** 2, h))


@dataclass(frozen=True)
class Kind:
    """One feature kind: its formula, how many parameters it takes, its lookback."""

    n_params: int
    compute: Callable[..., np.ndarray]
    lookback: Callable[..., int]
    doc: str


def _ema_support(span: int) -> int:
    return 4 * span


KINDS: dict[str, Kind] = {
    "log_return": Kind(0, _log_return, lambda: 2, "log(close_t / close_t-1)"),
    "log_volume_change": Kind(
        0, lambda b: _log_volume(b) - lag(_log_volume(b), 1), lambda: 2,
        "log(1 + volume_t) - log(1 + volume_t-1)"),
    "parkinson": Kind(
        1, lambda b, w: np.sqrt(rolling_mean(np.log(b["high"] / b["low"]) ** 2, w) / _LN2_4),
        lambda w: w, "Parkinson volatility: sqrt(mean_w(log(high/low)^2) / (4 log 2))"),
    "return_zscore": Kind(
        1, lambda b, w: rolling_zscore(_log_return(b), w), lambda w: w + 1,
        "(r_t - mean_w(r)) / std_w(r) of log returns, 0 for a constant window"),
    "relative_volume": Kind(1, _relative_volume, lambda w: w, "volume_t / mean_w(volume)"),
    "log_close_vwap": Kind(
        1, lambda b, w: np.log(b["close"] / _vwap(b, w)), lambda w: w,
        "log(close_t / VWAP_w), VWAP on the typical price (h + l + c) / 3"),
    "close_vwap_ratio": Kind(
        1, lambda b, w: b["close"] / _vwap(b, w), lambda w: w, "close_t / VWAP_w"),
    "hl_range_pct": Kind(
        0, lambda b: 100.0 * (b["high"] - b["low"]) / b["close"], lambda: 1,
        "100 (high - low) / close"),
    "close_open_pct": Kind(
        0, lambda b: 100.0 * (b["close"] - b["open"]) / b["open"], lambda: 1,
        "100 (close - open) / open"),
    "rsi": Kind(1, _rsi, lambda n: n + 1,
                "Cutler's RSI: 100 mean_n(gains) / (mean_n(gains) + mean_n(losses))"),
    "macd": Kind(3, lambda b, f, s, g: _macd(b, f, s),
                 lambda f, s, g: _ema_support(s), "(EMA_fast - EMA_slow) / close"),
    "macd_signal": Kind(3, _macd_signal,
                        lambda f, s, g: _ema_support(s) + _ema_support(g) - 1,
                        "EMA_signal of the MACD line"),
    "macd_hist": Kind(3, lambda b, f, s, g: _macd(b, f, s) - _macd_signal(b, f, s, g),
                      lambda f, s, g: _ema_support(s) + _ema_support(g) - 1,
                      "MACD line - signal line"),
    "ma_ratio": Kind(2, lambda b, f, s: np.log(rolling_mean(b["close"], f)
                                               / rolling_mean(b["close"], s)),
                     lambda f, s: s, "log(SMA_fast / SMA_slow) of close"),
    "realized_vol": Kind(1, _realized_vol, lambda h: h + 1,
                         "sqrt(mean_h(r^2)) of log returns (zero-mean convention)"),
    "momentum": Kind(1, lambda b, h: np.log(b["close"] / lag(b["close"], h)),
                     lambda h: h + 1, "log(close_t / close_t-h)"),
    "volume_zscore": Kind(1, lambda b, w: rolling_zscore(_log_volume(b), w), lambda w: w,
                          "z-score of log(1 + volume) over the window"),
}
# The MACD line itself does not use the signal span, but all three MACD columns
# carry the same (fast, slow, signal) so they read as one family.

_NAME_RE = re.compile(r"^(?P<kind>[a-z]+(?:_[a-z]+)*)(?P<params>(?:_\d+)*)_(?P<tf>\d+(?:m|h|d))$")


@dataclass(frozen=True)
class FeatureDef:
    """A concrete feature: kind, integer parameters and timeframe."""

    kind: str
    params: tuple[int, ...]
    timeframe: str

    @property
    def name(self) -> str:
        return "_".join([self.kind, *map(str, self.params), self.timeframe])

    @property
    def lookback(self) -> int:
        """Bars of this feature's timeframe it needs, the current bar included."""
        return KINDS[self.kind].lookback(*self.params)

    def compute(self, bars: Bars) -> np.ndarray:
        """The feature for every bar of ``bars`` (NaN without a full window), shape ``(n,)``."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return KINDS[self.kind].compute(bars, *self.params)


def parse_feature(name: str) -> FeatureDef:
    """Parse a column name such as ``parkinson_20_4h`` into a :class:`FeatureDef`."""
    match = _NAME_RE.match(name)
    kind = match.group("kind") if match else None
    if match is None or kind not in KINDS:
        raise FeatureError(
            f"features.columns: unknown feature {name!r}; expected KIND[_PARAMS]_TIMEFRAME "
            f"with KIND one of {', '.join(KINDS)} (e.g. parkinson_20_1h)"
        )
    params = tuple(int(p) for p in match.group("params").split("_") if p)
    expected = KINDS[kind].n_params
    if len(params) != expected:
        raise FeatureError(
            f"features.columns: {name!r}: {kind} takes {expected} integer parameter(s), "
            f"got {len(params)}"
        )
    if any(p < 1 for p in params):
        raise FeatureError(f"features.columns: {name!r}: parameters must be positive")
    return FeatureDef(kind, params, match.group("tf"))


def v1_kinds(p: FeaturesParams) -> list[tuple[str, tuple[int, ...]]]:
    """The minimal set at one timeframe.

    Only the log of close/VWAP is in v1: the ratio and its log agree to about
    1e-4 on hourly bars, so carrying both would make a full covariance singular.
    ``close_vwap_ratio_W_TF`` is there for ``features.columns``.
    """
    w = p.window
    return [
        ("log_return", ()),
        ("log_volume_change", ()),
        ("parkinson", (w,)),
        ("return_zscore", (w,)),
        ("relative_volume", (w,)),
        ("log_close_vwap", (w,)),
        ("hl_range_pct", ()),
        ("close_open_pct", ()),
    ]


def v2_kinds(p: FeaturesParams) -> list[tuple[str, tuple[int, ...]]]:
    """v1 plus momentum, trend and volume-shape features at one timeframe."""
    macd = tuple(p.macd)
    extra: list[tuple[str, tuple[int, ...]]] = [
        ("rsi", (p.rsi_window,)),
        ("macd", macd),
        ("macd_signal", macd),
        ("macd_hist", macd),
        ("ma_ratio", tuple(p.ma_windows)),
        *[("realized_vol", (h,)) for h in p.horizons],
        *[("momentum", (h,)) for h in p.horizons],
        ("volume_zscore", (p.window,)),
    ]
    return [*v1_kinds(p), *extra]


def select_features(p: FeaturesParams) -> list[FeatureDef]:
    """The features that ``features`` params ask for, in column order."""
    if p.set == "columns":
        defs = [parse_feature(name) for name in p.columns]
    else:
        kinds = v1_kinds(p) if p.set == "v1" else v2_kinds(p)
        defs = [FeatureDef(kind, params, tf) for tf in p.timeframes for kind, params in kinds]
    names = [d.name for d in defs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FeatureError(f"features.columns: {dupes[0]!r} is listed more than once")
    return defs
