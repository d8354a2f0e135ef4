"""params.yaml sections as frozen dataclasses.

Each stage reads its own section. A key that the dataclass does not know is an
error that names the key and the keys that are allowed, so a misspelling never
falls back to a silent default. Values are checked in ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard, TypeVar

import pandas as pd
import yaml

from regimelab.exceptions import ParamsError

PARAMS_FILE = "params.yaml"

_TIMEFRAME_RE = re.compile(r"^(\d+)(min|m|h|d)$")
_TIMEFRAME_UNITS = {"m": "min", "min": "min", "h": "h", "d": "D"}


def parse_timeframe(value: str, *, key: str = "timeframe") -> pd.Timedelta:
    """Parse a timeframe such as ``15m``, ``1h``, ``4h`` or ``1d`` into a Timedelta.

    Raises
    ------
    ParamsError
        If ``value`` is not a positive count followed by ``m``, ``h`` or ``d``.
    """
    match = _TIMEFRAME_RE.match(str(value).strip())
    if match is None or int(match.group(1)) == 0:
        raise ParamsError(
            f"{key}: {value!r} is not a timeframe; expected a positive count and a unit, "
            "e.g. 15m, 1h, 4h, 1d"
        )
    return pd.Timedelta(int(match.group(1)), unit=_TIMEFRAME_UNITS[match.group(2)])


def format_timeframe(delta: pd.Timedelta) -> str:
    """Inverse of :func:`parse_timeframe`: ``Timedelta('4h')`` gives ``'4h'``."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require(condition: bool, section: str, key: str, value: Any, expected: str) -> None:
    if not condition:
        raise ParamsError(f"{section}.{key}: got {value!r}; expected {expected}")


@dataclass(frozen=True)
class IngestParams:
    """``ingest``: which raw files to read and how to interpret them."""

    path: str = "data/raw/btcusdt_1h.csv.gz"
    symbol: str | None = None
    freq: str = "auto"
    max_invalid_fraction: float = 0.01

    def __post_init__(self) -> None:
        _require(isinstance(self.path, str) and bool(self.path), "ingest", "path", self.path,
                 "a file path or glob")
        _require(self.symbol is None or (isinstance(self.symbol, str) and bool(self.symbol)),
                 "ingest", "symbol", self.symbol, "null (from the data or file name) or a name")
        if self.freq != "auto":
            parse_timeframe(self.freq, key="ingest.freq")
        _require(_is_number(self.max_invalid_fraction)
                 and 0 <= self.max_invalid_fraction <= 1,
                 "ingest", "max_invalid_fraction", self.max_invalid_fraction, "a number in [0, 1]")


FEATURE_SETS = ("v1", "v2", "regime", "range", "columns")


@dataclass(frozen=True)
class FeaturesParams:
    """``features``: which features to compute, at which timeframes.

    ``halflives`` and ``max_gap`` may be ``auto``; what they resolve to depends
    on the set and the timeframes (:func:`regimelab.features.catalog.halflives_at`
    and :func:`~regimelab.features.catalog.resolve_max_gap`) and is written
    into the feature spec.
    """

    set: str = "v1"
    columns: tuple[str, ...] = ()
    timeframes: tuple[str, ...] = ("1h",)
    window: int = 20
    max_gap: int | str = "auto"
    rsi_window: int = 14
    macd: tuple[int, int, int] = (12, 26, 9)
    ma_windows: tuple[int, int] = (10, 50)
    horizons: tuple[int, ...] = (6, 24, 72)
    halflives: tuple[int, ...] | str = "auto"
    volume: bool = False

    def __post_init__(self) -> None:
        _require(self.set in FEATURE_SETS, "features", "set", self.set, f"one of {FEATURE_SETS}")
        _require(self.set != "columns" or len(self.columns) > 0, "features", "columns",
                 list(self.columns), "a non-empty list of feature names when set is 'columns'")
        _require(self.set == "columns" or len(self.timeframes) > 0, "features", "timeframes",
                 list(self.timeframes), "a non-empty list such as [1h, 4h, 1d]")
        for tf in self.timeframes:
            parse_timeframe(tf, key="features.timeframes")
        _require(len(set(self.timeframes)) == len(self.timeframes), "features", "timeframes",
                 list(self.timeframes), "no repeated timeframe")
        _require(_is_int(self.window) and self.window >= 2, "features", "window", self.window,
                 "an integer >= 2")
        _require(self.max_gap == "auto" or (_is_int(self.max_gap) and self.max_gap >= 0),
                 "features", "max_gap", self.max_gap,
                 "'auto' or an integer >= 0 (missing bars a window may span)")
        _require(_is_int(self.rsi_window) and self.rsi_window >= 2, "features", "rsi_window",
                 self.rsi_window, "an integer >= 2")
        _require(len(self.macd) == 3 and all(_is_int(v) and v >= 1 for v in self.macd)
                 and self.macd[0] < self.macd[1], "features", "macd", list(self.macd),
                 "[fast, slow, signal] spans with fast < slow")
        _require(len(self.ma_windows) == 2 and all(_is_int(v) and v >= 1 for v in self.ma_windows)
                 and self.ma_windows[0] < self.ma_windows[1], "features", "ma_windows",
                 list(self.ma_windows), "[fast, slow] with fast < slow")
        _require(len(self.horizons) > 0 and all(_is_int(v) and v >= 2 for v in self.horizons),
                 "features", "horizons", list(self.horizons), "a list of integers >= 2")
        if _is_int(self.halflives):
            # `-S features.halflives=24` means the one-element list [24].
            object.__setattr__(self, "halflives", (self.halflives,))
        _require(self.halflives == "auto" or (
            isinstance(self.halflives, tuple) and len(self.halflives) > 0
            and all(_is_int(v) and v >= 1 for v in self.halflives)
            and len(set(self.halflives)) == len(self.halflives)),
            "features", "halflives", _shown(self.halflives),
            "'auto' or a list of distinct integers >= 1 (half-lives in bars)")
        _require(isinstance(self.volume, bool), "features", "volume", self.volume,
                 "true or false")


def _shown(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class SplitParams:
    """``split``: chronological train / val / test and walk-forward folds."""

    method: str = "fractions"
    train: float = 0.70
    val: float = 0.15
    val_start: str | None = None
    test_start: str | None = None
    embargo: int | str = "auto"
    folds: int = 5

    def __post_init__(self) -> None:
        _require(self.method in ("fractions", "dates"), "split", "method", self.method,
                 "'fractions' or 'dates'")
        if self.method == "fractions":
            _require(isinstance(self.train, (int, float)) and isinstance(self.val, (int, float))
                     and self.train > 0 and self.val > 0 and self.train + self.val < 1,
                     "split", "train/val", (self.train, self.val),
                     "positive fractions with train + val < 1 (test takes the rest)")
        else:
            for key in ("val_start", "test_start"):
                value = getattr(self, key)
                _require(value is not None, "split", key, value, "a date when method is 'dates'")
                try:
                    pd.Timestamp(value)
                except (ValueError, TypeError):
                    raise ParamsError(f"split.{key}: {value!r} is not a date; expected e.g. "
                                      "2024-01-01") from None
            _require(pd.Timestamp(self.val_start) < pd.Timestamp(self.test_start), "split",
                     "test_start", self.test_start, f"a date after val_start ({self.val_start})")
        _require(self.embargo == "auto" or (_is_int(self.embargo) and self.embargo >= 0),
                 "split", "embargo", self.embargo,
                 "'auto' (the longest feature window) or an integer number of bars")
        _require(_is_int(self.folds) and self.folds >= 0, "split", "folds", self.folds,
                 "an integer >= 0")


@dataclass(frozen=True)
class ScaleParams:
    """``scale``: how features are standardised (fitted on train only)."""

    method: str = "standard"
    clip: float | None = None

    def __post_init__(self) -> None:
        _require(self.method in ("standard", "robust"), "scale", "method", self.method,
                 "'standard' or 'robust'")
        _require(self.clip is None or (_is_number(self.clip) and self.clip > 0),
                 "scale", "clip", self.clip, "null or a positive number of scale units")


COVARIANCE_TYPES = ("diag", "full", "spherical", "tied")


@dataclass(frozen=True)
class ModelParams:
    """``model``: shared by both model families.

    ``n_states`` and ``covariance_type`` are either fixed or ``auto``, which
    takes select-states' choice.
    """

    n_states: int | str = "auto"
    covariance_type: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.n_states == "auto" or (_is_int(self.n_states) and self.n_states >= 2),
                 "model", "n_states", self.n_states, "'auto' or an integer >= 2")
        _require(self.covariance_type == "auto" or self.covariance_type in COVARIANCE_TYPES,
                 "model", "covariance_type", self.covariance_type,
                 f"'auto' or one of {', '.join(COVARIANCE_TYPES)}")
        _require(_is_int(self.seed) and self.seed >= 0, "model", "seed", self.seed,
                 "an integer >= 0")


@dataclass(frozen=True)
class GridParams:
    """``select.grid``: the candidate models."""

    n_states: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    covariance_type: tuple[str, ...] = ("diag", "full")

    def __post_init__(self) -> None:
        _require(len(self.n_states) > 0 and all(_is_int(k) and k >= 2 for k in self.n_states)
                 and len(set(self.n_states)) == len(self.n_states), "select", "grid.n_states",
                 list(self.n_states), "a list of distinct integers >= 2")
        _require(len(self.covariance_type) > 0
                 and all(c in COVARIANCE_TYPES for c in self.covariance_type)
                 and len(set(self.covariance_type)) == len(self.covariance_type),
                 "select", "grid.covariance_type", list(self.covariance_type),
                 f"a list of distinct covariance types from {', '.join(COVARIANCE_TYPES)}")


SELECT_CRITERIA = ("stability", "bic", "aic", "val_ll")


@dataclass(frozen=True)
class SelectParams:
    """``select``: how select-states searches the grid and picks a model."""

    grid: GridParams = GridParams()
    criterion: str = "stability"
    tie_tolerance: float = 0.002
    min_stability: float = 0.9
    min_separation: float = 1.0
    resamples: int = 2
    scan_penalty: float = 5.0
    penalties: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
    min_dwell: int | str = "auto"
    sampler: str = "grid"
    n_trials: int | None = None
    storage: str | None = None
    n_jobs: int = 2

    def __post_init__(self) -> None:
        _require(self.criterion in SELECT_CRITERIA, "select", "criterion", self.criterion,
                 "'stability' (the largest reproducible, distinct state count), 'bic', 'aic' "
                 "or 'val_ll'")
        _require(_is_number(self.min_stability) and 0 <= self.min_stability <= 1, "select",
                 "min_stability", self.min_stability, "an adjusted Rand index in [0, 1]")
        _require(_is_number(self.min_separation) and self.min_separation >= 0, "select",
                 "min_separation", self.min_separation,
                 "a number >= 0 (within-state standard deviations between two centres)")
        _require(_is_int(self.resamples) and self.resamples >= 1, "select", "resamples",
                 self.resamples, "an integer >= 1 (block-bootstrap refits per state count)")
        _require(_is_number(self.scan_penalty) and self.scan_penalty >= 0, "select",
                 "scan_penalty", self.scan_penalty, "a number >= 0 (a jump penalty)")
        _require(len(self.penalties) > 0 and all(_is_number(v) and v >= 0 for v in self.penalties)
                 and list(self.penalties) == sorted(set(self.penalties)), "select", "penalties",
                 list(self.penalties), "an ascending list of distinct jump penalties >= 0")
        _require(self.min_dwell == "auto" or (_is_int(self.min_dwell) and self.min_dwell >= 1),
                 "select", "min_dwell", self.min_dwell,
                 "'auto' (a day of intraday bars, 5 daily bars) or an integer number of bars")
        _require(_is_number(self.tie_tolerance) and self.tie_tolerance >= 0,
                 "select", "tie_tolerance", self.tie_tolerance,
                 "a number >= 0 (nats per bar within which candidates tie)")
        _require(self.sampler in ("grid", "tpe"), "select", "sampler", self.sampler,
                 "'grid' or 'tpe'")
        _require(self.n_trials is None or (_is_int(self.n_trials) and self.n_trials >= 1),
                 "select", "n_trials", self.n_trials, "null (the grid's size) or an integer >= 1")
        _require(self.storage is None or (isinstance(self.storage, str) and "://" in self.storage),
                 "select", "storage", self.storage,
                 "null (a SQLite file among the outputs) or a database URL such as "
                 "postgresql://user@host/db")
        _require(_is_int(self.n_jobs) and (self.n_jobs >= 1 or self.n_jobs == -1), "select",
                 "n_jobs", self.n_jobs, "an integer >= 1, or -1 for every core")


@dataclass(frozen=True)
class HMMParams:
    """``hmm``: how each Gaussian HMM is fitted."""

    n_init: int = 5
    n_iter: int = 200
    tol: float = 1e-4
    min_covar: float = 1e-3
    stickiness: float = 0.0
    implementation: str = "scaling"
    short_iter: int = 10
    n_continue: int = 2
    min_state_bars: int = 20
    init_smoothing: int = 8
    allow_collinear: bool = False

    def __post_init__(self) -> None:
        _require(isinstance(self.allow_collinear, bool), "hmm", "allow_collinear",
                 self.allow_collinear, "true or false")
        _require(_is_int(self.n_init) and self.n_init >= 1, "hmm", "n_init", self.n_init,
                 "an integer >= 1")
        _require(_is_int(self.n_iter) and self.n_iter >= 1, "hmm", "n_iter", self.n_iter,
                 "an integer >= 1")
        _require(_is_number(self.tol) and self.tol > 0, "hmm", "tol", self.tol,
                 "a positive number (log-likelihood gain per bar that counts as progress)")
        _require(_is_number(self.min_covar) and self.min_covar > 0, "hmm",
                 "min_covar", self.min_covar, "a positive number")
        _require(_is_number(self.stickiness) and self.stickiness >= 0, "hmm", "stickiness",
                 self.stickiness, "a number >= 0 (0: no sticky prior; 1 about doubles the "
                 "expected dwell)")
        _require(self.implementation in ("scaling", "log"), "hmm", "implementation",
                 self.implementation, "'scaling' or 'log'")
        _require(_is_int(self.short_iter) and 1 <= self.short_iter <= self.n_iter, "hmm",
                 "short_iter", self.short_iter, f"an integer in [1, n_iter = {self.n_iter}]")
        _require(_is_int(self.n_continue) and 1 <= self.n_continue, "hmm", "n_continue",
                 self.n_continue, "an integer >= 1")
        _require(_is_int(self.min_state_bars) and self.min_state_bars >= 1, "hmm",
                 "min_state_bars", self.min_state_bars, "an integer >= 1")
        _require(_is_int(self.init_smoothing) and self.init_smoothing >= 1, "hmm",
                 "init_smoothing", self.init_smoothing, "an integer >= 1 (1: no smoothing)")


@dataclass(frozen=True)
class DSSMParams:
    """``dssm``: the deep state-space model and how it is trained."""

    init: str = "hmm"
    hidden: int = 32
    transition: str = "static"
    emission: str = "scale"
    max_log_scale: float = 1.0
    min_covar: float = 1e-3
    stickiness: float = 0.0
    window: int = 256
    stride: int = 224
    burn_in: int = 32
    batch_size: int = 32
    max_epochs: int = 40
    patience: int = 5
    lr: float = 1e-2
    weight_decay: float = 0.0
    gradient_clip: float = 1.0
    min_occupancy: float = 0.002
    accelerator: str = "cpu"
    num_threads: int = 1

    def __post_init__(self) -> None:
        _require(self.init in ("hmm", "fresh"), "dssm", "init", self.init,
                 "'hmm' (start from train-hmm's model) or 'fresh' (fit its own starting HMM)")
        _require(_is_int(self.hidden) and self.hidden >= 1, "dssm", "hidden", self.hidden,
                 "an integer >= 1")
        _require(self.transition in ("static", "context"), "dssm", "transition",
                 self.transition, "'static' or 'context' (modulated by the past)")
        _require(self.emission in ("scale", "static"), "dssm", "emission", self.emission,
                 "'scale' (the past scales each regime's spread) or 'static'")
        _require(_is_number(self.max_log_scale) and self.max_log_scale > 0, "dssm",
                 "max_log_scale", self.max_log_scale, "a positive number")
        _require(_is_number(self.min_covar) and 0 <= self.min_covar < float("inf"), "dssm",
                 "min_covar", self.min_covar, "a number >= 0 (hmm.min_covar's default 1e-3 "
                 "compares the families like with like; 0: no floor)")
        _require(_is_number(self.stickiness) and self.stickiness >= 0, "dssm", "stickiness",
                 self.stickiness, "a number >= 0 (0: no sticky prior; 1 about doubles the "
                 "expected dwell)")
        _require(_is_int(self.window) and self.window >= 2, "dssm", "window", self.window,
                 "an integer >= 2 (bars per training window)")
        _require(_is_int(self.burn_in) and 0 <= self.burn_in < self.window, "dssm", "burn_in",
                 self.burn_in, f"an integer in [0, window = {self.window})")
        _require(_is_int(self.stride) and 1 <= self.stride <= self.window - self.burn_in,
                 "dssm", "stride", self.stride,
                 f"an integer in [1, window - burn_in = {self.window - self.burn_in}], so no "
                 "bar is left out of training")
        for key in ("batch_size", "max_epochs", "patience", "num_threads"):
            value = getattr(self, key)
            _require(_is_int(value) and value >= 1, "dssm", key, value, "an integer >= 1")
        for key in ("lr", "gradient_clip"):
            value = getattr(self, key)
            _require(_is_number(value) and value > 0, "dssm", key, value, "a positive number")
        _require(_is_number(self.weight_decay) and self.weight_decay >= 0, "dssm",
                 "weight_decay", self.weight_decay, "a number >= 0")
        _require(_is_number(self.min_occupancy) and 0 <= self.min_occupancy < 1, "dssm",
                 "min_occupancy", self.min_occupancy, "a share in [0, 1)")
        # Not 'mps': the DSSM trains in float64, which Apple's GPUs do not have.
        _require(self.accelerator in ("cpu", "auto", "gpu", "cuda"), "dssm",
                 "accelerator", self.accelerator, "'cpu', 'auto', 'gpu' or 'cuda'")


@dataclass(frozen=True)
class JumpParams:
    """``jump``: statistical jump models (discrete, or continuous with soft memberships)."""

    jump_penalty: float | str = "auto"
    cont: bool = False
    grid_size: float = 0.05
    mode_loss: bool = True
    n_init: int = 10
    max_iter: int = 1000
    tol: float = 1e-8
    min_state_bars: int = 20

    def __post_init__(self) -> None:
        _require(self.jump_penalty == "auto"
                 or (_is_number(self.jump_penalty) and self.jump_penalty >= 0), "jump",
                 "jump_penalty", self.jump_penalty,
                 "'auto' (select-states' calibrated penalty) or a number >= 0 (the cost of a "
                 "switch, in units of the loss)")
        for key in ("cont", "mode_loss"):
            value = getattr(self, key)
            _require(isinstance(value, bool), "jump", key, value, "true or false")
        _require(_is_number(self.grid_size) and 0 < self.grid_size <= 0.5
                 and abs(round(1 / self.grid_size) * self.grid_size - 1) < 1e-9, "jump",
                 "grid_size", self.grid_size, "a step in (0, 0.5] that divides 1, e.g. 0.05")
        for key in ("n_init", "max_iter", "min_state_bars"):
            value = getattr(self, key)
            _require(_is_int(value) and value >= 1, "jump", key, value, "an integer >= 1")
        _require(_is_number(self.tol) and self.tol >= 0, "jump", "tol", self.tol,
                 "a number >= 0 (the smallest gain in the objective that counts as progress)")


@dataclass(frozen=True)
class EvaluateParams:
    """``evaluate``: which split is described, and how forward returns are summarised."""

    split: str = "test"
    horizons: tuple[int, ...] = (1, 24)
    n_boot: int = 1000
    block: int | str = "auto"
    max_share: float = 0.4

    def __post_init__(self) -> None:
        _require(self.split in ("train", "val", "test"), "evaluate", "split", self.split,
                 "'train', 'val' or 'test'")
        _require(len(self.horizons) > 0 and all(_is_int(v) and v >= 1 for v in self.horizons),
                 "evaluate", "horizons", list(self.horizons), "a list of integers >= 1 (bars)")
        _require(_is_int(self.n_boot) and self.n_boot >= 100, "evaluate", "n_boot",
                 self.n_boot, "an integer >= 100 (bootstrap resamples)")
        _require(self.block == "auto" or (_is_int(self.block) and self.block >= 1), "evaluate",
                 "block", self.block, "'auto' (Politis-White, at least 5 horizons) or an "
                 "integer >= 1 (bars per bootstrap block)")
        _require(_is_number(self.max_share) and 0 < self.max_share <= 1, "evaluate",
                 "max_share", self.max_share, "a share in (0, 1]")


BACKTEST_FAMILIES = ("jump", "gaussian_hmm", "dssm")
_DURATION_RE = re.compile(r"^\d+(min|m|h|d)$")


def _bars_or_duration(value: Any) -> bool:
    """``auto``, a positive whole number of bars, or a duration such as ``730d``."""
    return (value == "auto" or (_is_int(value) and value >= 1)
            or (isinstance(value, str) and _DURATION_RE.match(value) is not None
                and not value.startswith("0")))


@dataclass(frozen=True)
class BacktestParams:
    """``backtest``: the walk-forward refits, the position rules, execution and statistics.

    ``min_train`` and ``refit`` are ``auto`` (two years, and 30 days, of bars), a
    number of bars, or a duration (``730d``, ``720h``). ``settings: fixed`` takes
    ``n_states``, ``covariance_type`` and ``jump_penalty`` from this section;
    ``past`` re-chooses the state count (select-states' stability rule over
    ``select.grid.n_states`` up to ``max_states``) and the jump penalty on the past
    every ``reselect`` bars (``auto``: a year), with ``covariance_type`` from this
    section; ``pipeline`` takes select-states' resolved ones, chosen on data that
    overlaps the backtest (look-ahead of selection, labelled so).
    """

    families: tuple[str, ...] = ("jump", "gaussian_hmm")
    settings: str = "past"
    reselect: int | str = "auto"
    n_states: int = 2
    max_states: int = 8
    covariance_type: str = "full"
    jump_penalty: float = 50.0
    dssm_max_epochs: int = 5
    min_train: int | str = "auto"
    refit: int | str = "auto"
    window: str = "expanding"
    delay: int = 1
    cost_bps: float = 10.0
    short: bool = False
    target_vol: float = 0.5
    max_leverage: float = 1.0
    exposures: dict[str, float] = dataclasses.field(default_factory=dict)
    exposure_default: float = 0.0
    vol_window: int | str = "auto"
    vol_quantile: float = 0.8
    n_boot: int = 1000
    block: int | str = "auto"

    def __post_init__(self) -> None:
        _require(len(self.families) > 0 and all(f in BACKTEST_FAMILIES for f in self.families)
                 and len(set(self.families)) == len(self.families), "backtest", "families",
                 _shown(self.families), f"a list of distinct families from {BACKTEST_FAMILIES}")
        _require(self.settings in ("fixed", "past", "pipeline"), "backtest", "settings",
                 self.settings, "'fixed' (this section's n_states, covariance_type, "
                 "jump_penalty), 'past' (the state count and jump penalty re-chosen on the "
                 "past) or "
                 "'pipeline' (select-states' choice: look-ahead of selection)")
        _require(_is_int(self.n_states) and self.n_states >= 2, "backtest", "n_states",
                 self.n_states, "an integer >= 2")
        _require(_is_int(self.max_states) and self.max_states >= 2, "backtest", "max_states",
                 self.max_states, "an integer >= 2 (settings past: the largest state count "
                 "of select.grid.n_states scanned)")
        _require(self.covariance_type in COVARIANCE_TYPES, "backtest", "covariance_type",
                 self.covariance_type, f"one of {', '.join(COVARIANCE_TYPES)}")
        _require(_is_number(self.jump_penalty) and self.jump_penalty >= 0, "backtest",
                 "jump_penalty", self.jump_penalty, "a number >= 0")
        _require(_is_int(self.dssm_max_epochs) and self.dssm_max_epochs >= 1, "backtest",
                 "dssm_max_epochs", self.dssm_max_epochs,
                 "an integer >= 1 (epochs of each DSSM refit, in place of dssm.max_epochs)")
        for key in ("min_train", "refit", "reselect"):
            value = getattr(self, key)
            _require(_bars_or_duration(value), "backtest", key, value,
                     "'auto', a number of bars >= 1 or a duration such as 730d or 720h")
        _require(self.window in ("expanding", "rolling"), "backtest", "window", self.window,
                 "'expanding' or 'rolling' (the last min_train bars)")
        _require(_is_int(self.delay) and self.delay >= 1, "backtest", "delay", self.delay,
                 "an integer >= 1 (bars from the decision to the first bar it earns)")
        _require(_is_number(self.cost_bps) and self.cost_bps >= 0, "backtest", "cost_bps",
                 self.cost_bps, "a number >= 0 (basis points per unit of turnover)")
        _require(isinstance(self.short, bool), "backtest", "short", self.short, "true or false")
        _require(_is_number(self.target_vol) and self.target_vol > 0, "backtest", "target_vol",
                 self.target_vol, "a positive annualised volatility, e.g. 0.5")
        _require(_is_number(self.max_leverage) and self.max_leverage > 0, "backtest",
                 "max_leverage", self.max_leverage, "a positive exposure cap, e.g. 1.0")
        _require(isinstance(self.exposures, dict)
                 and all(isinstance(k, str) and _is_number(v) for k, v in self.exposures.items()),
                 "backtest", "exposures", self.exposures,
                 "a mapping of regime names to exposures, e.g. {calm bull: 1.0, crash: 0.0}")
        _require(_is_number(self.exposure_default), "backtest", "exposure_default",
                 self.exposure_default, "a number (the exposure of a regime not in exposures)")
        _require(self.vol_window == "auto" or (_is_int(self.vol_window) and self.vol_window >= 2),
                 "backtest", "vol_window", self.vol_window,
                 "'auto' (a day of intraday bars, 20 daily bars) or an integer >= 2")
        _require(_is_number(self.vol_quantile) and 0 < self.vol_quantile < 1, "backtest",
                 "vol_quantile", self.vol_quantile, "a quantile in (0, 1)")
        _require(_is_int(self.n_boot) and self.n_boot >= 100, "backtest", "n_boot",
                 self.n_boot, "an integer >= 100 (bootstrap resamples)")
        _require(self.block == "auto" or (_is_int(self.block) and self.block >= 1), "backtest",
                 "block", self.block, "'auto' (Politis-White) or an integer >= 1")


#: The short names of regimelab.families.FAMILIES (not imported: every stage reads params).
FAMILY_KEYS = ("dssm", "hmm", "jump")
VOL_PROXIES = ("parkinson", "squared_returns")
VOL_MODELS = ("har", "garch")


@dataclass(frozen=True)
class ForecastVolParams:
    """``forecast_vol``: realised-volatility forecasts with and without the regimes.

    ``family`` is a model folder's short name (``models/<family>``), whose filtered
    posteriors are the regime inputs; ``proxy`` the per-bar variance summed over the
    next ``h`` bars; ``har_windows`` the HAR day, week and month in bars (``auto``:
    1, 7 and 30 days of bars); ``dm_bandwidth`` the Bartlett bandwidth of the
    Diebold–Mariano test (``auto``: Newey–West's choice), at least ``h - 1``.
    """

    family: str = "dssm"
    horizons: tuple[int, ...] = (1, 24)
    proxy: str = "parkinson"
    models: tuple[str, ...] = VOL_MODELS
    har_windows: tuple[int, ...] | str = "auto"
    dm_bandwidth: int | str = "auto"

    def __post_init__(self) -> None:
        _require(self.family in FAMILY_KEYS, "forecast_vol", "family", self.family,
                 f"one of {', '.join(FAMILY_KEYS)} (a trained model folder models/<family>)")
        _require(len(self.horizons) > 0 and all(_is_int(v) and v >= 1 for v in self.horizons)
                 and len(set(self.horizons)) == len(self.horizons), "forecast_vol",
                 "horizons", _shown(self.horizons), "a list of distinct integers >= 1 (bars)")
        _require(self.proxy in VOL_PROXIES, "forecast_vol", "proxy", self.proxy,
                 "'parkinson' (the high-low range) or 'squared_returns' (close to close)")
        _require(len(self.models) > 0 and all(m in VOL_MODELS for m in self.models)
                 and len(set(self.models)) == len(self.models), "forecast_vol", "models",
                 _shown(self.models), f"a list of distinct models from {VOL_MODELS}")
        _require(self.har_windows == "auto"
                 or (isinstance(self.har_windows, tuple) and len(self.har_windows) == 3
                     and all(_is_int(v) and v >= 1 for v in self.har_windows)
                     and list(self.har_windows) == sorted(set(self.har_windows))),
                 "forecast_vol", "har_windows", _shown(self.har_windows),
                 "'auto' (1, 7 and 30 days of bars) or three increasing integers >= 1 "
                 "(day, week, month in bars)")
        _require(self.dm_bandwidth == "auto"
                 or (_is_int(self.dm_bandwidth) and self.dm_bandwidth >= 0), "forecast_vol",
                 "dm_bandwidth", self.dm_bandwidth,
                 "'auto' (Newey-West's choice) or an integer >= 0 (lags); never below h - 1")
FORECAST_FAMILIES = ("jump", "hmm", "dssm")
FORECAST_TARGETS = ("state", "switch", "bull_bear")
FORECAST_MODELS = ("persistence", "markov", "random_forest", "hist_gradient_boosting", "gru",
                   "lstm", "transformer")


@dataclass(frozen=True)
class ForecastParams:
    """``forecast``: which family's regimes are forecast, the targets, models and tuning.

    ``family`` is a model folder's short name (``models/<family>``); ``targets``
    are ``state`` (the hindsight regime at t + h), ``switch`` (a switch within the
    next h bars) and ``bull_bear`` (the price dating at t + h, with
    ``bull_threshold`` and ``bear_threshold``). The learned models are tuned with
    ``n_trials`` Optuna trials each over the split stage's folds, in ``storage``
    (null: SQLite among the stage's files), and fitted on at most
    ``max_train_rows`` evenly spaced rows (null: all). The sequence models (``gru``,
    ``lstm``, ``transformer``) read windows of ``sequence_window`` bars, train for at
    most ``sequence_max_epochs`` epochs (early stopping after ``sequence_patience``
    without progress on the latest fifth of the fit's rows) in batches of
    ``sequence_batch_size`` on at most ``sequence_max_train_rows`` windows, with
    ``num_threads`` torch threads. ``sequence_min_class_rows`` is the class floor the
    folds try against plain thinning, per task and model (the floor: each class keeps
    at least that many windows, the probabilities corrected back to the unthinned
    class shares); 0 disables it entirely.
    """

    family: str = "jump"
    horizons: tuple[int, ...] = (1, 24)
    targets: tuple[str, ...] = FORECAST_TARGETS
    models: tuple[str, ...] = FORECAST_MODELS
    bull_threshold: float = 0.2
    bear_threshold: float = 0.2
    input_windows: tuple[int, ...] = (24, 168)
    n_trials: int = 3
    n_estimators: int = 50
    max_train_rows: int | None = 5000
    importance_repeats: int = 2
    sequence_window: int = 16
    sequence_max_epochs: int = 5
    sequence_patience: int = 2
    sequence_batch_size: int = 64
    sequence_max_train_rows: int | None = 1500
    sequence_min_class_rows: int = 150
    num_threads: int = 1
    storage: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.family in FORECAST_FAMILIES, "forecast", "family", self.family,
                 f"one of {', '.join(FORECAST_FAMILIES)} (a folder under models/)")
        _require(len(self.horizons) > 0 and all(_is_int(v) and v >= 1 for v in self.horizons)
                 and len(set(self.horizons)) == len(self.horizons), "forecast", "horizons",
                 _shown(self.horizons), "a list of distinct integers >= 1 (bars)")
        for key, allowed in (("targets", FORECAST_TARGETS), ("models", FORECAST_MODELS)):
            value = getattr(self, key)
            _require(len(value) > 0 and all(v in allowed for v in value)
                     and len(set(value)) == len(value), "forecast", key, _shown(value),
                     f"a list of distinct names from {', '.join(allowed)}")
        for key in ("bull_threshold", "bear_threshold"):
            value = getattr(self, key)
            _require(_is_number(value) and 0 < value < 1, "forecast", key, value,
                     "a share in (0, 1), e.g. 0.2 for a 20% move")
        _require(all(_is_int(v) and v >= 2 for v in self.input_windows)
                 and len(set(self.input_windows)) == len(self.input_windows), "forecast",
                 "input_windows", _shown(self.input_windows),
                 "a list of distinct integers >= 2 (bars), or []")
        _require(_is_int(self.n_trials) and self.n_trials >= 1, "forecast", "n_trials",
                 self.n_trials, "an integer >= 1 (Optuna trials per model and target)")
        _require(_is_int(self.n_estimators) and self.n_estimators >= 1, "forecast",
                 "n_estimators", self.n_estimators,
                 "an integer >= 1 (trees of the forest, boosting iterations)")
        _require(self.max_train_rows is None
                 or (_is_int(self.max_train_rows) and self.max_train_rows >= 100), "forecast",
                 "max_train_rows", self.max_train_rows, "null (every row) or an integer >= 100")
        _require(_is_int(self.importance_repeats) and self.importance_repeats >= 1, "forecast",
                 "importance_repeats", self.importance_repeats, "an integer >= 1")
        for key, lowest, meaning in (
                ("sequence_window", 1, "bars per window of a sequence model"),
                ("sequence_max_epochs", 1, "training epochs of a sequence model"),
                ("sequence_patience", 1, "epochs without progress before stopping"),
                ("sequence_batch_size", 1, "windows per training batch"),
                ("sequence_min_class_rows", 0,
                 "the class floor the folds try against plain thinning; 0: never tried"),
                ("num_threads", 1, "torch's intra-op threads")):
            value = getattr(self, key)
            _require(_is_int(value) and value >= lowest, "forecast", key, value,
                     f"an integer >= {lowest} ({meaning})")
        _require(self.sequence_max_train_rows is None
                 or (_is_int(self.sequence_max_train_rows)
                     and self.sequence_max_train_rows >= 100), "forecast",
                 "sequence_max_train_rows", self.sequence_max_train_rows,
                 "null (every window) or an integer >= 100")
        _require(self.storage is None or (isinstance(self.storage, str) and "://" in self.storage),
                 "forecast", "storage", self.storage,
                 "null (a SQLite file among the outputs) or a database URL such as "
                 "postgresql://user@host/db")
        _require(_is_int(self.seed), "forecast", "seed", self.seed, "an integer")


SECTIONS: dict[str, type] = {
    "ingest": IngestParams,
    "features": FeaturesParams,
    "split": SplitParams,
    "scale": ScaleParams,
    "model": ModelParams,
    "select": SelectParams,
    "hmm": HMMParams,
    "dssm": DSSMParams,
    "jump": JumpParams,
    "evaluate": EvaluateParams,
    "backtest": BacktestParams,
    "forecast_vol": ForecastVolParams,
    "forecast": ForecastParams,
}

T = TypeVar("T")


def from_mapping(cls: type[T], section: str, raw: Any) -> T:
    """Build the dataclass ``cls`` from the mapping ``raw``, rejecting unknown keys."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{section}: expected a mapping of keys, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamsError(
            f"{section}.{unknown[0]}: unknown key; allowed keys are {', '.join(sorted(fields))}"
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        default = fields[key].default
        if dataclasses.is_dataclass(default):
            # A nested section such as select.grid: same rules, its name in messages.
            values[key] = from_mapping(type(default), f"{section}.{key}", value)
        elif isinstance(value, list):
            # YAML lists arrive as lists; the dataclasses hold tuples so they stay frozen.
            values[key] = tuple(value)
        elif isinstance(default, tuple) and value is not None:
            # `-S features.timeframes=4h` means the one-element list [4h].
            values[key] = (value,)
        else:
            values[key] = value
    return cls(**values)


def load_params(path: str | os.PathLike[str] = PARAMS_FILE) -> dict[str, Any]:
    """Read params.yaml as a mapping; a missing or malformed file is a ParamsError."""
    p = Path(path)
    if not p.is_file():
        raise ParamsError(f"{p}: params file not found")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{p}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{p}: expected a mapping of sections at the top level")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ParamsError(f"{p}: unknown section {unknown[0]!r}; known sections are "
                          f"{', '.join(SECTIONS)}")
    return raw


def load_section(section: str, path: str | os.PathLike[str] = PARAMS_FILE) -> Any:
    """Load one section of params.yaml into its frozen dataclass."""
    if section not in SECTIONS:
        raise ParamsError(f"unknown params section {section!r}")
    return from_mapping(SECTIONS[section], section, load_params(path).get(section))


__all__ = [
    "BacktestParams",
    "COVARIANCE_TYPES",
    "DSSMParams",
    "EvaluateParams",
    "FeaturesParams",
    "ForecastVolParams",
    "ForecastParams",
    "GridParams",
    "HMMParams",
    "IngestParams",
    "JumpParams",
    "ModelParams",
    "ScaleParams",
    "SelectParams",
    "SplitParams",
    "format_timeframe",
    "from_mapping",
    "load_section",
    "parse_timeframe",
]
