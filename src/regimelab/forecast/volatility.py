"""Realised volatility over the next h bars, forecast with and without the regimes.

**Target.** For an origin bar t (known at its close) and a horizon of h bars,
the realised variance ``RV_h(t) = sum_{i=1..h} v_{t+i}`` of a per-bar variance
proxy ``v``; its square root is the realised volatility. ``proxy: parkinson``
(the default) is Parkinson's (1980) range estimator ``ln(H/L)^2 / (4 ln 2)``:
the regime features are built from the same high-low ranges, and on hourly
bars it is several times less noisy than a single squared return.
``proxy: squared_returns`` is the squared close-to-close log return, with no
value across a gap. A target whose h bars are not contiguous is left out.

**Models**, each on information at the close of t only:

- ``har``: HAR-RV (Corsi 2009) in logs: ``log RV_h(t)`` on an intercept and the
  logs of the trailing mean of ``v`` over a day, a week and a month of bars,
  by OLS; the forecast is ``exp(fit)`` times Duan's smearing factor (the mean
  of the exponentiated training residuals), which undoes the log's bias without
  assuming normal residuals.
- ``garch``: GARCH(1,1) with a constant mean and normal errors (``arch``),
  fitted on the training split's close-to-close returns, then run forward over
  every later bar with those parameters fixed (``fix``, no refit); the h-bar
  forecast is the sum of the 1..h-step variance forecasts.
- ``garch_mz``: the GARCH forecast recalibrated to the proxy, ``log RV_h`` on an
  intercept and ``log`` of the GARCH forecast (a Mincer–Zarnowitz regression in
  logs): the same model, fairly comparable with the one below.
- ``har_regimes`` and ``garch_regimes``: ``har`` and ``garch_mz`` plus the
  regime family's filtered posteriors ``p_filter_1..K-1`` as regressors.
  ``arch`` takes exogenous regressors in the mean only, not in the variance, so
  the GARCH side is this two-step augmentation.

**Fitting.** Regressions are fitted on train and val origins whose target ends
before the first test bar; GARCH parameters on training returns only. Test is
scored once. Posteriors are filtered within each split as the regimes table's
are (:func:`filtered_posteriors`). With several symbols the regressions are pooled,
GARCH is fitted per symbol, and the test's loss series are the symbols' in turn.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from arch import arch_model

from regimelab.exceptions import InputDataError, ModelError
from regimelab.forecast.vol_inputs import (
    FLOOR_SHARE,
    GARCH_SCALE,
    HAR_INPUTS,
    LogOLS,
    bar_variance,
    garch_backcast,
    har_windows,
    log_design,
    log_returns,
    trailing_means,
)
from regimelab.forecast.vol_metrics import diebold_mariano, qlike, vol_losses
from regimelab.params import ForecastVolParams, format_timeframe
from regimelab.regimes import RegimeModel
from regimelab.sequences import to_sequences

log = logging.getLogger(__name__)

#: The base model each regime-aware one extends, for the Diebold–Mariano test.
BASES = {"har_regimes": "har", "garch_regimes": "garch_mz"}


def forward_sum(v: np.ndarray, timestamps: np.ndarray, *, horizon: int,
                step: pd.Timedelta) -> np.ndarray:
    """``sum_{i=1..h} v[t+i]`` at each t, shape ``(n,)``; NaN unless the h bars after t are
    all there, contiguous and finite."""
    total = pd.Series(v).rolling(horizon, min_periods=horizon).sum().shift(-horizon).to_numpy()
    ts = pd.Series(timestamps)
    span = (ts.shift(-horizon) - ts).to_numpy()
    whole = span == (step * horizon).to_timedelta64()
    return np.where(whole, total, np.nan)


@dataclass(frozen=True)
class GarchFit:
    """GARCH(1,1) parameters fitted on one symbol's training returns (returns in percent):
    ``mu``, ``omega``, ``alpha[1]``, ``beta[1]``, how many returns it saw, and
    ``backcast``, where :func:`garch_forecasts`' recursion starts: arch's backcast of the
    first 75 residuals, training returns when the training split begins the series
    (saved, so that :mod:`regimelab.forecast.vol_apply` reproduces the forecasts)."""

    params: dict[str, float]
    n_train: int
    converged: bool
    backcast: float


def fit_garch(returns: np.ndarray) -> GarchFit:
    """GARCH(1,1) with a constant mean and normal errors on log returns ``(n,)``."""
    model = arch_model(returns * GARCH_SCALE, mean="Constant", vol="GARCH", p=1, q=1,
                       dist="normal", rescale=False)
    result = model.fit(disp="off", show_warning=False)
    converged = int(result.convergence_flag) == 0
    if not converged:
        log.warning("GARCH(1,1) on %d training returns did not converge (%s)", returns.size,
                    result.optimization_result.message)
    params = {k: float(v) for k, v in result.params.items()}
    return GarchFit(params=params, n_train=int(returns.size), converged=converged,
                    backcast=garch_backcast(returns * GARCH_SCALE - params["mu"]))


def garch_forecasts(returns: np.ndarray, fit: GarchFit, horizons: tuple[int, ...]
                    ) -> dict[int, np.ndarray]:
    """The h-bar variance forecast at every return's close, from ``fit``'s fixed parameters:
    ``{h: array (n,)}``, the sum of the 1..h-step forecasts (log-return units).

    The recursion starts from arch's backcast (a weighted mean of the first 75 squared
    residuals), so forecasts after those bars use no later bar.
    """
    model = arch_model(returns * GARCH_SCALE, mean="Constant", vol="GARCH", p=1, q=1,
                       dist="normal", rescale=False)
    fixed = model.fix(pd.Series(fit.params))
    variance = fixed.forecast(horizon=max(horizons), start=0, reindex=False).variance
    cumulative = variance.to_numpy().cumsum(axis=1) / GARCH_SCALE**2
    return {h: cumulative[:, h - 1] for h in horizons}


def filtered_posteriors(model: RegimeModel, frames: Mapping[str, pd.DataFrame],
                        columns: list[str]) -> pd.DataFrame:
    """``timestamp``, ``symbol``, ``split`` and ``p_filter_0..K-1`` of every row of the
    scaled splits, filtered within each split as in the regimes table (causal)."""
    parts = []
    for name, frame in frames.items():
        X, lengths = to_sequences(frame, columns)
        proba = model.filter_proba(X, lengths)
        part = pd.DataFrame({"timestamp": frame["timestamp"].array,
                             "symbol": frame["symbol"].array, "split": name})
        for k in range(proba.shape[1]):
            part[f"p_filter_{k}"] = proba[:, k]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _symbol_inputs(bars: pd.DataFrame, *, params: ForecastVolParams, step: pd.Timedelta,
                   windows: tuple[int, int, int], train_end: pd.Timestamp
                   ) -> tuple[pd.DataFrame, GarchFit | None]:
    """One symbol's targets, HAR regressors and GARCH forecasts at every bar."""
    ts = bars["timestamp"].to_numpy()
    v = bar_variance(bars, proxy=params.proxy, step=step)
    out = pd.DataFrame({"timestamp": bars["timestamp"].array, "symbol": bars["symbol"].array})
    for name, column in zip(HAR_INPUTS, trailing_means(v, windows).T, strict=True):
        out[name] = column
    for h in params.horizons:
        out[f"target_{h}"] = forward_sum(v, ts, horizon=h, step=step)
    fit = None
    if "garch" in params.models:
        r = log_returns(bars)
        n_train = int((bars["timestamp"].iloc[1:] <= train_end).sum())
        if n_train < 100:
            raise InputDataError(f"forecast_vol: {bars['symbol'].iloc[0]} has {n_train} "
                                 "training returns; GARCH(1,1) needs at least 100")
        fit = fit_garch(r[:n_train])  # its backcast, of r's first 75 returns, starts r's
        for h, f in garch_forecasts(r, fit, params.horizons).items():
            out[f"garch_{h}"] = np.concatenate([[np.nan], f])  # bar 0 has no return yet
    return out, fit


def model_specs(models: tuple[str, ...], n_states: int, horizon: int
                ) -> dict[str, tuple[list[str], list[str]]]:
    """Each regression's log regressors and posterior regressors at ``horizon``; the last
    posterior is left out, as the posteriors sum to one beside the intercept."""
    regime_cols = [f"p_filter_{k}" for k in range(1, n_states)]
    specs: dict[str, tuple[list[str], list[str]]] = {}
    if "har" in models:
        specs["har"] = (list(HAR_INPUTS), [])
        specs["har_regimes"] = (list(HAR_INPUTS), regime_cols)
    if "garch" in models:
        specs["garch_mz"] = ([f"garch_{horizon}"], [])
        specs["garch_regimes"] = ([f"garch_{horizon}"], regime_cols)
    return specs


@dataclass(frozen=True)
class VolForecast:
    """The metrics report, the test forecasts (``timestamp``, ``symbol``, ``horizon``,
    ``actual`` and one column per model, all variances over the horizon), and the fitted
    models as JSON (:func:`fitted_models`; :mod:`regimelab.forecast.vol_apply` applies
    them to new bars)."""

    report: dict[str, Any]
    forecasts: pd.DataFrame
    models: dict[str, Any]


def forecast_volatility(bars: pd.DataFrame, posteriors: pd.DataFrame, *,
                        params: ForecastVolParams, step: pd.Timedelta) -> VolForecast:
    """Fit every volatility model on train (+ val) and score it once on test.

    Parameters
    ----------
    bars : pandas.DataFrame
        Clean bars (the bars contract), every symbol.
    posteriors : pandas.DataFrame
        :func:`filtered_posteriors`' table: the origins (rows of the splits), their
        ``split`` and ``p_filter_0..K-1``.
    params : ForecastVolParams
        The ``forecast_vol`` section.
    step : pandas.Timedelta
        The bar interval.

    Raises
    ------
    InputDataError
        If the splits have no test rows, or too few rows to fit or score.
    """
    n_states = sum(c.startswith("p_filter_") for c in posteriors.columns)
    if n_states < 2:
        raise ModelError("forecast_vol: the posteriors have fewer than two p_filter_ columns")
    splits = posteriors["split"].to_numpy()
    if not (splits == "test").any():
        raise InputDataError("forecast_vol: the splits have no test rows to score")
    test_start = posteriors.loc[splits == "test", "timestamp"].min()
    train_end = posteriors.loc[splits == "train", "timestamp"].max()
    windows = har_windows(step, params.har_windows)
    inputs, fits, garch = [], {}, {}
    for symbol, group in bars.sort_values(["symbol", "timestamp"]).groupby("symbol", sort=True):
        table, fit = _symbol_inputs(group.reset_index(drop=True), params=params, step=step,
                                    windows=windows, train_end=train_end)
        inputs.append(table)
        if fit is not None:
            fits[str(symbol)] = {**fit.params, "n_train": fit.n_train, "converged": fit.converged}
            garch[str(symbol)] = {**fits[str(symbol)], "backcast": fit.backcast}
    table = posteriors.merge(pd.concat(inputs, ignore_index=True), on=["symbol", "timestamp"],
                             how="inner", validate="one_to_one")
    table = table.sort_values(["symbol", "timestamp"], ignore_index=True)
    before_test = table["timestamp"] < test_start
    v_train = table.loc[before_test, "rv_d"].to_numpy()
    floor = FLOOR_SHARE * float(np.nanmedian(v_train[v_train > 0]))
    report: dict[str, Any] = {"proxy": params.proxy, "har_windows": list(windows),
                              "n_states": n_states, "garch": fits, "horizons": {}}
    frames = []
    for h in params.horizons:
        block, forecasts = _horizon(table, h=h, n_states=n_states, params=params, floor=floor,
                                    fit_rows=(table["split"] != "test")
                                    & (table["timestamp"] + step * h < test_start))
        report["horizons"][f"h{h}"] = block
        frames.append(forecasts)
    models = fitted_models(report, params=params, step=step, floor=floor, garch=garch)
    return VolForecast(report=report, forecasts=pd.concat(frames, ignore_index=True),
                       models=models)


def fitted_models(report: dict[str, Any], *, params: ForecastVolParams, step: pd.Timedelta,
                  floor: float, garch: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What applying the models to new bars needs, as JSON: how the inputs are built
    (``inputs``: proxy, bar interval, HAR windows in bars, the log floor), the regime
    posteriors' count, the horizons, each symbol's GARCH parameters and backcast, and per
    horizon each model's inputs and coefficients, in the order of the test forecasts."""
    n_states = int(report["n_states"])
    horizons: dict[str, Any] = {}
    for h in params.horizons:
        fits = report["horizons"][f"h{h}"]["fits"]
        specs = model_specs(params.models, n_states, h)
        block: dict[str, Any] = {"garch": {"kind": "garch"}} if "garch" in params.models else {}
        for name, (base, extra) in specs.items():
            block[name] = {"kind": "log_ols", "log_inputs": base, "inputs": extra,
                           "columns": fits[name]["columns"], "coef": fits[name]["coef"],
                           "smear": fits[name]["smear"]}
        horizons[f"h{h}"] = block
    return {"n_states": n_states,
            "inputs": {"proxy": params.proxy, "bar": format_timeframe(step),
                       "har_windows": report["har_windows"], "floor": floor,
                       "garch_scale": GARCH_SCALE},
            "horizons": list(params.horizons), "garch": garch, "models": horizons}


def _horizon(table: pd.DataFrame, *, h: int, n_states: int, params: ForecastVolParams,
             floor: float, fit_rows: pd.Series
             ) -> tuple[dict[str, Any], pd.DataFrame]:
    """Fit, forecast and score every model at one horizon."""
    specs = model_specs(params.models, n_states, h)
    needed = [f"target_{h}", *{c for base, extra in specs.values() for c in base + extra}]
    usable = table[needed].notna().all(axis=1).to_numpy()
    fit_mask = usable & fit_rows.to_numpy()
    test_mask = usable & (table["split"] == "test").to_numpy()
    if fit_mask.sum() < 50 or test_mask.sum() < 2 * h + 1:
        raise InputDataError(f"forecast_vol: horizon {h} has {int(fit_mask.sum())} rows to fit "
                             f"and {int(test_mask.sum())} to score; need at least 50 and "
                             f"{2 * h + 1}")
    target = table[f"target_{h}"].to_numpy(dtype="float64")
    log_y = np.log(np.maximum(target, floor * h))
    test = table.loc[test_mask]
    out = pd.DataFrame({"timestamp": test["timestamp"].array, "symbol": test["symbol"].array,
                        "horizon": h, "actual": target[test_mask]})
    fits: dict[str, Any] = {}
    if "garch" in params.models:
        out["garch"] = test[f"garch_{h}"].to_numpy(dtype="float64")
    for name, (base, extra) in specs.items():
        fitted = LogOLS.fit(log_design(table.loc[fit_mask], base, extra, floor),
                            log_y[fit_mask])
        out[name] = fitted.predict(log_design(test, base, extra, floor))
        fits[name] = {"columns": ["const", *[f"log_{c}" for c in base], *extra],
                      "coef": [float(c) for c in fitted.coef], "smear": fitted.smear}
    names = [c for c in out.columns if c not in ("timestamp", "symbol", "horizon", "actual")]
    actual = out["actual"].to_numpy()
    bandwidth = None if params.dm_bandwidth == "auto" else float(params.dm_bandwidth)
    dm = {}
    for alt, base_name in BASES.items():
        if alt in out:
            dm[f"{alt}_vs_{base_name}"] = diebold_mariano(
                qlike(actual, out[base_name].to_numpy()), qlike(actual, out[alt].to_numpy()),
                horizon=h, bandwidth=bandwidth).as_dict()
    models = {name: vol_losses(actual, out[name].to_numpy()) for name in names}
    return {"n_fit": int(fit_mask.sum()), "n_test": int(test_mask.sum()),
            "test_start": str(out["timestamp"].min()), "models": models,
            "best_qlike": min(models, key=lambda m: models[m]["qlike"]),
            "diebold_mariano": dm, "fits": fits}, out


def plot_tables(forecasts: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Forecast against actual volatility on test, one table per horizon (``h1``, ...), for
    the first symbol: ``timestamp``, ``actual`` and one column per model, each the square
    root of the variance over the horizon (``dvc plots show`` draws them)."""
    first = forecasts[forecasts["symbol"] == forecasts["symbol"].min()]
    tables = {}
    for h, group in first.groupby("horizon", sort=True):
        values = group.drop(columns=["timestamp", "symbol", "horizon"])
        table = np.sqrt(values).astype("float64")
        table.insert(0, "timestamp", group["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        tables[f"h{h}"] = table.reset_index(drop=True)
    return tables
