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
from typing import Any, TypeVar

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
        _require(isinstance(self.max_invalid_fraction, (int, float))
                 and 0 <= self.max_invalid_fraction <= 1,
                 "ingest", "max_invalid_fraction", self.max_invalid_fraction, "a number in [0, 1]")


FEATURE_SETS = ("v1", "v2", "columns")


@dataclass(frozen=True)
class FeaturesParams:
    """``features``: which features to compute, at which timeframes."""

    set: str = "v1"
    columns: tuple[str, ...] = ()
    timeframes: tuple[str, ...] = ("1h",)
    window: int = 20
    max_gap: int = 0
    rsi_window: int = 14
    macd: tuple[int, int, int] = (12, 26, 9)
    ma_windows: tuple[int, int] = (10, 50)
    horizons: tuple[int, ...] = (6, 24, 72)

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
        _require(_is_int(self.max_gap) and self.max_gap >= 0, "features", "max_gap",
                 self.max_gap, "an integer >= 0 (missing bars a window may span)")
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
        _require(self.clip is None or (isinstance(self.clip, (int, float)) and self.clip > 0),
                 "scale", "clip", self.clip, "null or a positive number of scale units")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


SECTIONS: dict[str, type] = {
    "ingest": IngestParams,
    "features": FeaturesParams,
    "split": SplitParams,
    "scale": ScaleParams,
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
    values = {}
    for key, value in raw.items():
        # YAML lists arrive as lists; the dataclasses hold tuples so they stay hashable and frozen.
        values[key] = tuple(value) if isinstance(value, list) else value
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
    "FeaturesParams",
    "IngestParams",
    "ScaleParams",
    "SplitParams",
    "format_timeframe",
    "from_mapping",
    "load_section",
    "parse_timeframe",
]
