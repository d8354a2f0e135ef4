"""The backtest of every symbol and family, as the stage reports it.

For each symbol: the walk-forward of each family (:mod:`.walkforward`), each
rule's positions (:mod:`.rules`), the baselines (buy-and-hold, the
volatility-threshold rule) and their statistics (:mod:`.stats`). The
hindsight runs (the same refits, labelled by the smoothed path over each block
seen whole) go under ``look_ahead`` only: they show how much seeing the block
would flatter a result, and are never one. With several symbols, ``panel``
summarises each strategy: the median Sharpe difference from buy-and-hold and
the share of symbols whose maximum drawdown it improves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from regimelab import metrics as regime_metrics
from regimelab.backtest import rules, stats
from regimelab.backtest.walkforward import (
    DEFAULT_MIN_TRAIN,
    DEFAULT_REFIT,
    DEFAULT_RESELECT,
    WARM_STARTS,
    refit_points,
    resolve_bars,
    walk_forward,
)
from regimelab.exceptions import ParamsError
from regimelab.params import BacktestParams, DSSMParams, HMMParams, JumpParams, ScaleParams

log = logging.getLogger(__name__)

BENCHMARK = "buy_and_hold"
BASELINE = "vol_threshold"
#: Rules the hindsight comparison is run for.
HINDSIGHT_RULES = ("risk_onoff", "vol_target")
#: A drawdown improves only by more than this (a hundredth of a percentage point): a
#: strategy that held through the same fall is not better by rounding.
DRAWDOWN_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Backtest:
    """``metrics``: the metrics file; ``plots``: ``equity``, ``drawdown`` and ``exposure``
    tables of the first symbol, one row per day."""

    metrics: dict[str, Any]
    plots: dict[str, pd.DataFrame]


def bars_per_year(timestamps: pd.Series) -> float:
    """Rows per year of one symbol, from its first and last timestamps."""
    span = (timestamps.iloc[-1] - timestamps.iloc[0]).total_seconds() / (365.25 * 86400.0)
    return (len(timestamps) - 1) / span


def vol_window_bars(value: int | str, base_timeframe: pd.Timedelta) -> int:
    """``backtest.vol_window``: ``auto`` is a day of intraday bars, 20 daily bars."""
    if value != "auto":
        return int(value)
    day = pd.Timedelta(days=1)
    return max(2, round(day / base_timeframe)) if base_timeframe < day else 20


def rule_names(params: BacktestParams) -> list[str]:
    """The rules run: the mapping only when ``backtest.exposures`` names regimes."""
    return [r for r in rules.RULES if r != "mapping" or params.exposures]


def symbol_returns(frame: pd.DataFrame, bars: pd.DataFrame) -> np.ndarray:
    """Each feature row's simple return from the previous row's close (NaN on the first)."""
    close = bars.set_index("timestamp")["close"].reindex(frame["timestamp"]).to_numpy()
    return np.r_[np.nan, close[1:] / close[:-1] - 1.0]


def _progress(symbol: str, family: str) -> Callable[[int, int], None]:
    """Logs every tenth refit of a walk-forward, and the last."""
    def report(i: int, n: int) -> None:
        if i % 10 == 0 or i == n:
            log.info("%s %s: refit %d of %d", symbol, family, i, n)
    return report


def backtest_symbol(frame: pd.DataFrame, bars: pd.DataFrame, *, columns: list[str],
                    base_timeframe: pd.Timedelta, params: BacktestParams,
                    settings: dict[str, Any], scale: ScaleParams, hmm: HMMParams,
                    jump: JumpParams, seed: int,
                    dssm: DSSMParams | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """One symbol's metrics block, and the series its plots are drawn from."""
    frame = frame.reset_index(drop=True)
    returns = symbol_returns(frame, bars)
    per_year = bars_per_year(frame["timestamp"])
    min_train = resolve_bars(params.min_train, base_timeframe=base_timeframe,
                             default=DEFAULT_MIN_TRAIN, key="min_train")
    refit = resolve_bars(params.refit, base_timeframe=base_timeframe, default=DEFAULT_REFIT,
                         key="refit")
    points = refit_points(len(frame), min_train=min_train, refit=refit)
    rolling = min_train if params.window == "rolling" else None
    start = points[0]
    rule_kw: dict[str, Any] = {"bars_per_year": per_year, "short": params.short,
               "target_vol": params.target_vol, "max_leverage": params.max_leverage,
               "exposures": params.exposures, "exposure_default": params.exposure_default}
    run: dict[str, Any] = {"delay": params.delay, "cost_bps": params.cost_bps, "start": start}

    decided: dict[str, np.ndarray] = {BENCHMARK: np.where(np.arange(len(frame)) >= start,
                                                          1.0, np.nan)}
    decided[BASELINE] = rules.vol_threshold_exposure(
        rules.trailing_vol(returns, vol_window_bars(params.vol_window, base_timeframe)),
        points, quantile=params.vol_quantile, rolling=rolling)
    hindsight: dict[str, np.ndarray] = {}
    families: dict[str, dict[str, Any]] = {}
    regimes_of_first: np.ndarray | None = None
    names_of_first: list[list[str]] = []
    choices: dict[int, dict[str, Any]] = {}  # settings 'past': shared by the families
    for family in params.families:
        symbol = frame["symbol"].iloc[0]
        walk = walk_forward(
            frame, columns, returns, family=family, settings=settings, points=points,
            rolling=rolling, scale=scale, hmm=hmm, jump=jump, seed=seed, dssm=dssm,
            reselect=resolve_bars(params.reselect, base_timeframe=base_timeframe,
                                  default=DEFAULT_RESELECT, key="reselect"),
            choices=choices,
            progress=_progress(str(symbol), family))
        for rule in rule_names(params):
            decided[f"{family}_{rule}"] = rules.decided_exposure(walk, rule=rule, **rule_kw)
        for rule in HINDSIGHT_RULES:
            hindsight[f"{family}_{rule}_hindsight"] = rules.decided_exposure(
                walk, labels=walk.hindsight, rule=rule, **rule_kw)
        # Timings go to the log, not the metrics: the file stays byte-reproducible.
        log.info("%s %s: %d refits in %.1f s", symbol, family, len(walk.fits),
                 sum(f["seconds"] for f in walk.fits))
        families[family] = {**walk.identity_report(),
                            **({"jump_penalty_by_row": walk.penalties()}
                               if family == "jump" else {}),
                            "n_states_by_row": walk.state_counts(),
                            "warm_start": family in WARM_STARTS,
                            "final_names": {str(k): v for k, v in
                                            enumerate(walk.fits[-1]["names"])}}
        if regimes_of_first is None:
            regimes_of_first = walk.labels
            names_of_first = [f["names"] for f in walk.fits]
            refit_of_first = walk.refit_of

    pnl, held = {}, {}
    for name, d in {**decided, **hindsight}.items():
        pnl[name], held[name] = rules.execute(d, returns, **run)
    block = (regime_metrics.block_length(pnl[BENCHMARK], horizon=1) if params.block == "auto"
             else int(params.block))
    trials = [name for name in decided if name != BENCHMARK]
    described = stats.describe(pnl, held, benchmark=BENCHMARK, trials=trials, block=block,
                               n_boot=params.n_boot, bars_per_year=per_year, seed=seed)
    block_out: dict[str, Any] = {
        "period": {"start": str(frame["timestamp"].iloc[start + 1]),
                   "end": str(frame["timestamp"].iloc[-1]), "bars": len(frame) - start - 1,
                   "refits": len(points), "min_train_bars": min_train, "refit_bars": refit,
                   "bars_per_year": per_year, "bootstrap_block": block},
        BENCHMARK: described[BENCHMARK],
        BASELINE: described[BASELINE],
    }
    for family, report in families.items():
        block_out[family] = {rule: described[f"{family}_{rule}"]
                             for rule in rule_names(params)}
        block_out[family]["refits"] = report
    block_out["look_ahead"] = {name: described[name] for name in hindsight}
    if choices:
        # settings 'past': each re-choice, keyed by the refit row it was made at.
        block_out["past_choices"] = {str(row): choice for row, choice in sorted(choices.items())}

    first = params.families[0]
    if regimes_of_first is None:
        raise ParamsError("backtest.families: empty; list at least one family to walk forward")
    regime = np.full(len(frame), "", dtype=object)
    live = refit_of_first >= 0
    regime[live] = [names_of_first[r][s] for r, s in
                    zip(refit_of_first[live], regimes_of_first[live])]
    series = {"timestamp": frame["timestamp"].iloc[start + 1:].reset_index(drop=True),
              "pnl": {name: pnl[name] for name in decided},
              "held": held[f"{first}_vol_target"],
              # The regime the held exposure was decided in.
              "regime": np.r_[[""] * params.delay, regime][start + 1:len(frame)]}
    return block_out, series


def _at(block: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for key in path:
        block = block[key]
    return block


def panel_summary(blocks: dict[str, dict[str, Any]], params: BacktestParams
                  ) -> dict[str, dict[str, float]]:
    """Per strategy: the median Sharpe difference from buy-and-hold over the symbols and
    the share of symbols whose maximum drawdown it makes smaller."""
    # Each strategy's name and where its figures sit in a symbol's block.
    strategies: list[tuple[str, tuple[str, ...]]] = [(BASELINE, (BASELINE,))] + [
        (f"{family}_{rule}", (family, rule))
        for family in params.families for rule in rule_names(params)]
    out = {}
    for name, path in strategies:
        rows = [_at(b, path) for b in blocks.values()]
        diffs = [row["sharpe_diff"] for row in rows]
        better = [row["max_drawdown"] > b[BENCHMARK]["max_drawdown"] + DRAWDOWN_TOLERANCE
                  for row, b in zip(rows, blocks.values())]
        out[name] = {"median_sharpe_diff": float(np.median(diffs)),
                     "drawdown_improved_share": float(np.mean(better)),
                     "n_symbols": len(blocks)}
    return out


#: Every name :mod:`regimelab.naming` gives, without the numeric suffix of a second
#: state of one kind: the exposure plot's columns, the same whatever the run finds, so
#: dvc.yaml can list them.
REGIME_NAMES = tuple(f"{level} {direction}".strip() for direction in ("bull", "flat", "bear")
                     for level in ("calm", "", "volatile")) + ("crash",)


def daily_plots(series: dict[str, Any], first_family: str) -> dict[str, pd.DataFrame]:
    """Equity (log), drawdown and exposure by regime, at each day's last bar.

    The first family's rules also appear without the family's name
    (``risk_onoff``, ``vol_target``), so the columns dvc.yaml plots exist
    whichever families run.
    """
    ts = series["timestamp"]
    last = ~ts.dt.floor("D").duplicated(keep="last").to_numpy()
    when = ts[last].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy()
    equity = pd.DataFrame({"timestamp": when})
    down = pd.DataFrame({"timestamp": when})
    prefix = f"{first_family}_"
    named = {**series["pnl"], **{name[len(prefix):]: pnl for name, pnl in series["pnl"].items()
                                 if name.startswith(prefix)}}
    for name, pnl in named.items():
        equity[name] = np.cumsum(np.log1p(pnl))[last]
        down[name] = stats.drawdown(pnl)[last]
    exposure = pd.DataFrame({"timestamp": when})
    regime = np.array([rules.base_name(name) for name in series["regime"][last]], dtype=object)
    held = series["held"][last]
    for name in REGIME_NAMES:
        exposure[name] = np.where(regime == name, held, np.nan)
    return {"equity": equity, "drawdown": down, "exposure": exposure}


def run_backtest(features: pd.DataFrame, bars: pd.DataFrame, *, columns: list[str],
                 base_timeframe: pd.Timedelta, params: BacktestParams,
                 settings: dict[str, Any], scale: ScaleParams, hmm: HMMParams,
                 jump: JumpParams, seed: int, dssm: DSSMParams | None = None) -> Backtest:
    """Walk every family forward over every symbol and describe the strategies.

    Parameters
    ----------
    features : pandas.DataFrame
        The feature table (unscaled; ``timestamp``, ``symbol``, ``segment``, ``columns``).
    bars : pandas.DataFrame
        The clean bars: their closes give the returns.
    columns : list of str
    base_timeframe : the bar interval (the feature spec's)
    params : the ``backtest`` params
    settings : :func:`~regimelab.backtest.walkforward.settings_for`'s result
    scale, hmm, jump, seed, dssm : the params the scaler and models are built from
    """
    blocks: dict[str, dict[str, Any]] = {}
    plots: dict[str, pd.DataFrame] = {}
    for symbol, frame in features.groupby("symbol", sort=True):
        block, series = backtest_symbol(
            frame, bars[bars["symbol"] == symbol], columns=columns,
            base_timeframe=base_timeframe, params=params, settings=settings, scale=scale,
            hmm=hmm, jump=jump, seed=seed, dssm=dssm)
        blocks[str(symbol)] = block
        if not plots:
            plots = daily_plots(series, params.families[0])
        first = params.families[0]
        log.info("%s: Sharpe %.2f (%s risk on/off) %.2f (%s vol target) against buy-and-hold "
                 "%.2f; max drawdown %.1f%% / %.1f%% against %.1f%%", symbol,
                 block[first]["risk_onoff"]["sharpe"], first,
                 block[first]["vol_target"]["sharpe"], first,
                 block[BENCHMARK]["sharpe"], 100 * block[first]["risk_onoff"]["max_drawdown"],
                 100 * block[first]["vol_target"]["max_drawdown"],
                 100 * block[BENCHMARK]["max_drawdown"])
    metrics = {
        "settings": {**settings, "window": params.window, "delay": params.delay,
                     "cost_bps": params.cost_bps, "short": params.short,
                     "target_vol": params.target_vol, "max_leverage": params.max_leverage,
                     "families": list(params.families), "rules": rule_names(params),
                     "label": "filtered (online) labels of models fitted on the past only; "
                              "look_ahead holds the smoothed-label runs, never a result"},
        "symbols": blocks,
        "panel": panel_summary(blocks, params),
    }
    return Backtest(metrics=metrics, plots=plots)
