"""The feature catalogue: every feature kind, its name, its window and its formula.

A feature is a kind, integer parameters and a timeframe; its column name is
``{kind}_{params...}_{timeframe}``, for example ``parkinson_20_4h`` or
``macd_hist_12_26_9_1h``. Each kind says how many bars (of its own timeframe,
the current one included) it needs: its lookback. The ``ewm_*`` kinds count
their window in time instead (bar periods, a missing bar included; see
:mod:`regimelab.features.ewm`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from regimelab.exceptions import FeatureError
from regimelab.features.ewm import ewm, window_length, window_mean
from regimelab.features.rolling import (
    lag,
    rolling_ema,
    rolling_mean,
    rolling_sum,
    rolling_zscore,
)
from regimelab.params import FeaturesParams, parse_timeframe

# open, high, low, close, volume of one symbol at one timeframe, and optionally ``slot``:
# each bar's open time // period (int64), which places it on the timeframe's grid.
Bars = dict[str, np.ndarray]

_LN2_4 = 4.0 * math.log(2.0)
# A flat bar (high == low, e.g. inside an exchange outage) has no log range: floor it.
_RANGE_FLOOR = 1e-8


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


# A per-bar deviation below this is taken as this, so a window without a down
# move (or without any move) keeps a finite log and Sortino ratio.
DEVIATION_FLOOR = 1e-8


def _slot(b: Bars) -> np.ndarray:
    """Bars' positions on their grid; bars without a ``slot`` are consecutive."""
    return b["slot"] if "slot" in b else np.arange(len(b["close"]), dtype=np.int64)


def _returns_per_bar(b: Bars) -> tuple[np.ndarray, np.ndarray]:
    """The log return since the previous bar, and the bar periods it covers.

    After a missing bar the return spans more than one period; the EWM kinds
    divide it (and its square) by the periods, so it enters as one per-bar
    observation of the mean and of the variance.
    """
    slot = _slot(b).astype(np.float64)
    return _log_return(b), slot - lag(slot, 1)


def _ewm_moments(b: Bars, h: int, *moments: str) -> np.ndarray:
    """EWMs of per-bar return moments, shape ``(n, len(moments))``.

    ``r``: the return, ``r2``: its square, ``down2``: ``min(r, 0)^2``.
    """
    r, steps = _returns_per_bar(b)
    per_bar = {"r": r, "r2": r * r, "down2": np.minimum(r, 0.0) ** 2}
    return ewm(np.column_stack([per_bar[m] / steps for m in moments]), _slot(b), h)


def _log_deviation(second_moment: np.ndarray) -> np.ndarray:
    return 0.5 * np.log(np.maximum(second_moment, DEVIATION_FLOOR ** 2))


def _ewm_sortino(b: Bars, h: int) -> np.ndarray:
    m = _ewm_moments(b, h, "r", "down2")
    return m[:, 0] / np.sqrt(np.maximum(m[:, 1], DEVIATION_FLOOR ** 2))


def _ewm_volume(b: Bars, h: int) -> np.ndarray:
    v = _log_volume(b)
    return ewm(v, _slot(b), h) - window_mean(v, _slot(b), window_length(h))


@dataclass(frozen=True)
class Kind:
    """One feature kind: its formula, how many parameters it takes, its lookback.

    ``timed``: the lookback is a span of time in bar periods, missing bars
    included, rather than a count of bars.
    """

    n_params: int
    compute: Callable[..., np.ndarray]
    lookback: Callable[..., int]
    doc: str
    timed: bool = False


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
    "log_range": Kind(
        0, lambda b: np.log(np.maximum(np.log(b["high"] / b["low"]), _RANGE_FLOOR)
                            / math.sqrt(_LN2_4)), lambda: 1,
        "log of the bar's Parkinson volatility: log(log(high/low) / sqrt(4 log 2)), the "
        "range floored at 1e-8 (a flat bar)"),
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
    # EWM_H: the truncated EWM of half-life H bars over the last 6 H bar periods
    # (regimelab.features.ewm); r: the log return per bar period since the
    # previous bar, r^2 and min(r, 0)^2 likewise per period.
    "ewm_return": Kind(1, lambda b, h: _ewm_moments(b, h, "r")[:, 0],
                       lambda h: window_length(h) + 1, "EWM_H(r)", timed=True),
    "ewm_downside": Kind(
        1, lambda b, h: _log_deviation(_ewm_moments(b, h, "down2")[:, 0]),
        lambda h: window_length(h) + 1,
        f"log sqrt(EWM_H(min(r, 0)^2)), the deviation floored at {DEVIATION_FLOOR:g}",
        timed=True),
    "ewm_sortino": Kind(
        1, _ewm_sortino, lambda h: window_length(h) + 1,
        f"EWM_H(r) / sqrt(EWM_H(min(r, 0)^2)), the deviation floored at {DEVIATION_FLOOR:g}",
        timed=True),
    "ewm_vol": Kind(
        1, lambda b, h: _log_deviation(_ewm_moments(b, h, "r2")[:, 0]),
        lambda h: window_length(h) + 1,
        f"log sqrt(EWM_H(r^2)), the deviation floored at {DEVIATION_FLOOR:g}", timed=True),
    "ewm_volume": Kind(
        1, _ewm_volume, window_length,
        "EWM_H(log(1 + volume)) - the plain mean of log(1 + volume) over the same 6 H bar "
        "periods", timed=True),
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
        """Bars of this feature's timeframe it needs, the current bar included.

        For a :attr:`timed` kind, bar periods of time, missing bars included.
        """
        return KINDS[self.kind].lookback(*self.params)

    @property
    def timed(self) -> bool:
        """Whether the window is a span of time rather than a count of bars."""
        return KINDS[self.kind].timed

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


# features.halflives: auto, in days: for bars shorter than a day, a day, three
# days and ten days of bars (24, 72, 240 hourly bars); for daily and longer
# bars, 5, 15 and 45 bars (a week, three weeks, about two months of trading days).
AUTO_HALFLIVES_DAYS = (1, 3, 10)
AUTO_HALFLIVES_BARS = (5, 15, 45)
REGIME_KINDS = ("ewm_return", "ewm_downside", "ewm_sortino")


def halflives_at(p: FeaturesParams, timeframe: str) -> tuple[int, ...]:
    """The regime set's half-lives, in bars of ``timeframe``."""
    if not isinstance(p.halflives, str):  # params allow "auto" or integers
        return tuple(p.halflives)
    period = parse_timeframe(timeframe)
    day = pd.Timedelta(days=1)
    if period >= day:
        return AUTO_HALFLIVES_BARS
    return tuple(max(1, round(d * day / period)) for d in AUTO_HALFLIVES_DAYS)


def resolve_max_gap(p: FeaturesParams) -> int:
    """``features.max_gap`` as a number of bars.

    ``auto`` is 0 (no gap is spanned) for v1, v2 and columns. For the regime
    set it is twice the shortest half-life at the finest timeframe (48 hourly
    bars), so an exchange outage of up to two days is bridged: the EWMs weigh
    bars by time and need no bar inside the gap, and a run is not cut in two.
    """
    if p.max_gap != "auto":
        return int(p.max_gap)
    if p.set != "regime":
        return 0
    finest = min(p.timeframes, key=lambda tf: parse_timeframe(tf))
    return 2 * min(halflives_at(p, finest))


def regime_kinds(p: FeaturesParams, timeframe: str) -> list[tuple[str, tuple[int, ...]]]:
    """For each half-life, the EWM return, log downside deviation and Sortino ratio.

    The features of statistical jump models (Nystrup et al.; Shu, Yu & Mulvey
    2024), plus ``ewm_volume`` with ``features.volume``. Kind first, then
    half-life.
    """
    kinds = [*REGIME_KINDS, *(("ewm_volume",) if p.volume else ())]
    return [(kind, (h,)) for kind in kinds for h in halflives_at(p, timeframe)]


def range_kinds(p: FeaturesParams) -> list[tuple[str, tuple[int, ...]]]:
    """Each bar's own volatility, the log of its Parkinson range estimate.

    The volatility set: one observation per bar and timeframe, with no
    smoothing, so a change of regime shows at once; persistence is left to
    the model (a jump penalty, a sticky prior), which pools the bars of a
    regime in hindsight and lags by a few bars live. Smoothed features (the
    regime set) lag by about a half-life at every change of regime.
    """
    return [("log_range", ())]


def select_features(p: FeaturesParams) -> list[FeatureDef]:
    """The features that ``features`` params ask for, in column order."""
    if p.set == "columns":
        defs = [parse_feature(name) for name in p.columns]
    elif p.set == "range":
        defs = [FeatureDef(kind, params, tf) for tf in p.timeframes
                for kind, params in range_kinds(p)]
    elif p.set == "regime":
        defs = [FeatureDef(kind, params, tf) for tf in p.timeframes
                for kind, params in regime_kinds(p, tf)]
    else:
        kinds = v1_kinds(p) if p.set == "v1" else v2_kinds(p)
        defs = [FeatureDef(kind, params, tf) for tf in p.timeframes for kind, params in kinds]
    names = [d.name for d in defs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FeatureError(f"features.columns: {dupes[0]!r} is listed more than once")
    return defs
