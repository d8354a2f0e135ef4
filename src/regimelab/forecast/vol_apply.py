"""The forecast-vol stage's models applied to new bars: ``regimelab forecast --vol-model``.

The stage writes its fitted models to one JSON file, ``vol_models.json``, in its
models folder (``models/forecast_vol``): how the inputs are built (the per-bar
variance proxy, the bar interval, the HAR windows in bars, the log floor), each
symbol's GARCH(1,1) parameters and the backcast its recursion starts from, per
horizon each regression's inputs and coefficients, the regime family whose
filtered posteriors are inputs and that model folder's version, and the library
versions. Nothing is pickled and nothing here imports ``arch``: the GARCH
recursion with fixed parameters is :func:`~regimelab.forecast.vol_inputs.garch_variance`.

Every forecast at bar t uses the bars up to t and the regime posteriors filtered
up to t only. Each column ``rv_<model>_h{h}`` is a **volatility**: the square
root of the forecast sum of the per-bar variance proxy over bars t+1..t+h, in
log-return units (0.01 is 1%), over the h bars together (not per bar, not
annualised).

``regimelab now`` and the service give the same numbers for a request's last bar
(:func:`latest_volatility`, one entry per horizon).
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regimelab import __version__
from regimelab.exceptions import InputDataError, ModelError
from regimelab.forecast.vol_inputs import (
    HAR_INPUTS,
    Columns,
    LogOLS,
    bar_variance,
    garch_sums,
    log_design,
    log_returns,
    trailing_means,
)
from regimelab.io import read_json, write_json
from regimelab.params import parse_timeframe

log = logging.getLogger(__name__)

VOL_FILE = "vol_models.json"
#: The environment variable that names the forecast-vol models folder for ``now`` and serve.
VOL_ENV = "REGIMELAB_VOL_MODEL"
#: The file's layout; a reader refuses any other.
FORMAT = "regimelab.forecast_vol/1"
#: What every forecast column holds.
UNIT = ("volatility: sqrt of the forecast sum of the per-bar variance proxy over the next "
        "h bars, log-return units, not annualised")
#: The libraries whose versions the fitted numbers depend on.
LIBRARIES = ("numpy", "pandas", "scipy", "arch")
KEYS = ("format", "family", "model_version", "n_states", "inputs", "horizons", "garch",
        "models")
WHAT = "expected the forecast-vol stage's models folder (models/forecast_vol)"


def write_vol_models(models: dict[str, Any], folder: str | Path, *, family: str,
                     model_version: str) -> None:
    """Write the stage's fitted models (:attr:`VolForecast.models`) to ``folder``, atomically.

    Parameters
    ----------
    models : dict
        :func:`~regimelab.forecast.volatility.fitted_models`' result.
    folder : path
        The models folder (``models/forecast_vol``); created if missing.
    family, model_version : str
        The regime model whose filtered posteriors are inputs, and its folder's
        :func:`~regimelab.models.model_version`.
    """
    versions = {"regimelab": __version__,
                **{name: importlib.metadata.version(name) for name in LIBRARIES}}
    write_json({"format": FORMAT, "family": family, "model_version": model_version,
                "unit": UNIT, **models, "versions": versions}, Path(folder) / VOL_FILE)


@dataclass(frozen=True)
class VolModels:
    """A forecast-vol models folder, loaded: its path and ``vol_models.json``."""

    folder: str
    spec: dict[str, Any]

    @property
    def horizons(self) -> tuple[int, ...]:
        return tuple(int(h) for h in self.spec["horizons"])

    @property
    def n_states(self) -> int:
        return int(self.spec["n_states"])

    def names(self, horizon: int) -> list[str]:
        """The models at ``horizon``, in the stage's order (garch, har, har_regimes,
        garch_mz, garch_regimes, those fitted)."""
        return list(self.spec["models"][f"h{horizon}"])

    @property
    def columns(self) -> list[str]:
        """The output columns, ``rv_<model>_h{h}``, horizon by horizon."""
        return [f"rv_{name}_h{h}" for h in self.horizons for name in self.names(h)]


def load_vol_models(folder: str | Path, *, model_version: str | None = None) -> VolModels:
    """The forecast-vol stage's fitted models in ``folder``.

    Parameters
    ----------
    folder : path
        The stage's models folder (``models/forecast_vol``).
    model_version : str, optional
        The regime model's version: refused unless the models were fitted on its
        filtered posteriors.

    Raises
    ------
    ModelError
        If the folder holds no forecast-vol models, or they were fitted on other regimes.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ModelError(f"--vol-model {folder}: no such folder; {WHAT}")
    path = root / VOL_FILE
    if not path.is_file():
        raise ModelError(f"--vol-model {folder}: no {VOL_FILE} in it; {WHAT}")
    try:
        spec = read_json(path)
    except ValueError as exc:
        raise ModelError(f"--vol-model {path}: not valid JSON ({exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        found = spec.get("format") if isinstance(spec, dict) else type(spec).__name__
        raise ModelError(f"--vol-model {path}: format {found!r}, expected {FORMAT!r}; rerun "
                         "the forecast-vol stage")
    missing = [key for key in KEYS if key not in spec]
    if missing:
        raise ModelError(f"--vol-model {path}: no {', '.join(missing)}; rerun the forecast-vol "
                         "stage")
    if model_version is not None and spec["model_version"] != model_version:
        raise ModelError(f"--vol-model {folder}: fitted on the regimes of {spec['family']} "
                         f"model version {spec['model_version']}, not {model_version}; pass "
                         "that model folder or rerun the forecast-vol stage")
    return VolModels(str(folder), spec)


def _symbol_inputs(bars: pd.DataFrame, vol: VolModels, step: pd.Timedelta) -> pd.DataFrame:
    """One symbol's HAR inputs and GARCH h-bar variance forecasts at each of its bars
    (sorted by time), each from that bar and earlier ones."""
    out = {"timestamp": bars["timestamp"].array, "symbol": bars["symbol"].array}
    out.update(_symbol_arrays(bars, str(bars["symbol"].iloc[0]), vol, step))
    return pd.DataFrame(out)


def _symbol_arrays(bars: Columns, symbol: str, vol: VolModels, step: pd.Timedelta
                   ) -> dict[str, np.ndarray]:
    """:func:`_symbol_inputs`' numbers as arrays (``rv_d``, ``rv_w``, ``rv_m`` and
    ``garch_{h}``), from ``bars``' ``timestamp``, ``high``, ``low`` and ``close``."""
    inputs = vol.spec["inputs"]
    v = bar_variance(bars, proxy=inputs["proxy"], step=step)
    out = dict(zip(HAR_INPUTS, trailing_means(v, inputs["har_windows"]).T, strict=True))
    if not vol.spec["garch"]:  # no GARCH among the models
        return out
    params = vol.spec["garch"].get(symbol)
    if params is None:
        log.warning("%s: no GARCH(1,1) fitted for %s (fitted: %s); its GARCH forecasts are "
                    "empty", vol.folder, symbol, ", ".join(vol.spec["garch"]) or "none")
        for h in vol.horizons:
            out[f"garch_{h}"] = np.full(len(v), np.nan)
        return out
    sums = garch_sums(log_returns(bars), params, backcast=float(params["backcast"]),
                      horizons=vol.horizons)
    for h in vol.horizons:
        out[f"garch_{h}"] = np.concatenate([[np.nan], sums[h]])  # bar 0 has no return yet
    return out


def vol_variances(vol: VolModels, bars: pd.DataFrame, posteriors: pd.DataFrame
                  ) -> dict[tuple[str, int], np.ndarray]:
    """Each model's forecast variance over the next h bars at every row of ``posteriors``:
    ``{(model, h): array (n,)}`` (what the stage's test forecasts hold). See
    :func:`vol_forecasts`."""
    regime = [f"p_filter_{k}" for k in range(vol.n_states)]
    found = sorted(c for c in posteriors.columns if str(c).startswith("p_filter_"))
    if sorted(regime) != found or not {"symbol", "timestamp"} <= set(posteriors.columns):
        raise ModelError(f"--vol-model {vol.folder}: fitted on the {vol.n_states} filtered "
                         f"posteriors of a {vol.n_states}-state {vol.spec['family']} model; "
                         f"got symbol, timestamp and {', '.join(found) or 'no p_filter_'} "
                         "columns")
    step = parse_timeframe(vol.spec["inputs"]["bar"], key=f"{vol.folder}: inputs.bar")
    keys = ["symbol", "timestamp"]
    parts = [_symbol_inputs(group.reset_index(drop=True), vol, step)
             for _, group in bars.sort_values(keys).groupby("symbol", sort=True)]
    table = posteriors[[*keys, *regime]].reset_index(drop=True).merge(
        pd.concat(parts, ignore_index=True), on=keys, how="left", validate="one_to_one")
    return _model_variances(vol, table)


def _model_variances(vol: VolModels, table: Columns) -> dict[tuple[str, int], np.ndarray]:
    """Each model's forecast variance at each row of ``table``: the inputs of
    :func:`_symbol_inputs` and the ``p_filter_k`` posteriors of the same bars."""
    floor = float(vol.spec["inputs"]["floor"])
    out: dict[tuple[str, int], np.ndarray] = {}
    for h in vol.horizons:
        for name, model in vol.spec["models"][f"h{h}"].items():
            if model["kind"] == "garch":
                out[name, h] = np.asarray(table[f"garch_{h}"], dtype="float64")
            else:
                fitted = LogOLS(coef=np.asarray(model["coef"], dtype="float64"),
                                smear=float(model["smear"]))
                out[name, h] = fitted.predict(log_design(table, model["log_inputs"],
                                                         model["inputs"], floor))
    return out


def vol_forecasts(vol: VolModels, bars: pd.DataFrame, posteriors: pd.DataFrame
                  ) -> pd.DataFrame:
    """Each saved model's forecast of the realised volatility over the next h bars, at
    every row of ``posteriors``, from information up to that row's bar only.

    Parameters
    ----------
    vol : VolModels
        :func:`load_vol_models`' result.
    bars : pandas.DataFrame
        Clean bars (``symbol``, ``timestamp``, ``high``, ``low``, ``close``), every bar
        the forecasts may look back on: a HAR forecast needs half a month of bars before
        it (the month window), GARCH's a few hundred to forget where its recursion
        started.
    posteriors : pandas.DataFrame
        ``symbol``, ``timestamp`` and the regime model's ``p_filter_0..K-1`` of the bars
        to forecast from (:func:`regimelab.inference.regimes`).

    Returns
    -------
    pandas.DataFrame
        ``rv_<model>_h{h}`` (:attr:`VolModels.columns`), one row per row of
        ``posteriors``, same index; NaN where a model lacks inputs (too few bars before,
        a symbol with no GARCH fit).

    Raises
    ------
    ModelError
        If the posteriors are not those of a model with the saved number of states.
    """
    variances = vol_variances(vol, bars, posteriors)
    return pd.DataFrame({f"rv_{name}_h{h}": np.sqrt(values)
                         for (name, h), values in variances.items()}, index=posteriors.index)


def vol_answer(vol: VolModels, bars: pd.DataFrame, p_filter: Sequence[float]
               ) -> dict[str, dict[str, float | None]]:
    """One bar's volatility forecasts per horizon, as JSON: ``{"h1": {"garch": ...,
    "har": ..., "har_regimes": ..., ...}, "h24": {...}}`` (``None`` where a model has no
    forecast), the columns of :func:`vol_forecasts` at that bar (the same functions on
    that bar's row alone: the regressions' product on one row may differ from the batch's
    in the last bit).

    Parameters
    ----------
    vol : VolModels
        :func:`load_vol_models`' result.
    bars : pandas.DataFrame
        One symbol's clean bars, up to and including the bar (the latest), with the
        history :func:`vol_forecasts` needs.
    p_filter : sequence of float
        The bar's filtered regime posteriors, shape ``(K,)``.

    Raises
    ------
    InputDataError
        If the bars are empty or hold several symbols.
    ModelError
        If ``p_filter`` is not of the saved number of states.
    """
    if bars.empty or bars["symbol"].nunique() != 1:
        raise InputDataError(f"vol_answer: expected one symbol's bars, got "
                             f"{bars['symbol'].nunique()} symbols in {len(bars)} bars")
    if not bars["timestamp"].is_monotonic_increasing:
        bars = bars.sort_values("timestamp")
    return _last_answer(vol, {c: bars[c].to_numpy() for c in ("timestamp", "high", "low",
                                                            "close")},
                        str(bars["symbol"].iloc[0]), p_filter)


def _last_answer(vol: VolModels, bars: Columns, symbol: str, p_filter: Sequence[float]
                 ) -> dict[str, dict[str, float | None]]:
    """:func:`vol_answer` on one symbol's bars as columns (sorted by time): vol_forecasts'
    inputs at the last bar, without its merge of every bar with the posteriors (most of
    the time of a request), the same functions on the same row."""
    if len(p_filter) != vol.n_states:
        raise ModelError(f"--vol-model {vol.folder}: fitted on the {vol.n_states} filtered "
                         f"posteriors of a {vol.n_states}-state {vol.spec['family']} model; "
                         f"got {len(p_filter)}")
    step = parse_timeframe(vol.spec["inputs"]["bar"], key=f"{vol.folder}: inputs.bar")
    row = {name: values[-1:] for name, values in _symbol_arrays(bars, symbol, vol,
                                                                step).items()}
    row.update({f"p_filter_{k}": np.array([float(p)]) for k, p in enumerate(p_filter)})
    variances = _model_variances(vol, row)
    return {f"h{h}": {name: (float(value) if math.isfinite(value) else None)
                      for name in vol.names(h)
                      for value in [float(np.sqrt(variances[name, h][0]))]}
            for h in vol.horizons}


def latest_volatility(vol: VolModels, symbol: str, ts_ns: np.ndarray,
                      cols: dict[str, np.ndarray], p_filter: Sequence[float]
                      ) -> list[dict[str, Any]]:
    """The volatility forecasts of one symbol's last bar, from arrays, as ``regimelab now``
    and the service answer them: one entry per horizon, ``{"horizon": h, "garch": ...,
    "har": ..., ...}`` (:func:`vol_answer`'s numbers, ``None`` where a model has no
    forecast: a HAR model with fewer than half its month window of bars before the bar).

    Parameters
    ----------
    vol : VolModels
        :func:`load_vol_models`' result.
    symbol : str
        The symbol the GARCH parameters were fitted for.
    ts_ns : ndarray of int64, shape (n,)
        The bars' open times in nanoseconds (sorted, unique), the last one the bar.
    cols : dict
        Their ``high``, ``low`` and ``close``, each shape ``(n,)``.
    p_filter : sequence of float
        The last bar's filtered regime posteriors, shape ``(K,)``.
    """
    if len(ts_ns) == 0:
        raise InputDataError(f"{symbol}: no bars to forecast the volatility from")
    # Arrays, no DataFrame: vol_answer's functions on the columns it reads.
    bars = {"timestamp": np.asarray(ts_ns, dtype=np.int64).view("datetime64[ns]"),
            **{c: np.asarray(cols[c], dtype="float64") for c in ("high", "low", "close")}}
    answer = _last_answer(vol, bars, symbol, p_filter)
    return [{"horizon": h, **answer[f"h{h}"]} for h in vol.horizons]
