"""The walk-forward backtest: it pays where regimes set the drift, not where none do; no
position sees a later bar; costs, delay, PSR and DSR as computed by hand."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats as sps

from regimelab.backtest import rules, stats
from regimelab.backtest.report import (
    REGIME_NAMES,
    panel_summary,
    run_backtest,
    symbol_returns,
)
from regimelab.backtest.walkforward import (
    hmm_warm_start,
    past_penalty,
    refit_points,
    settings_for,
    walk_forward,
)
from regimelab.exceptions import ModelError, ParamsError
from regimelab.features import build_features
from regimelab.params import (
    BacktestParams,
    DSSMParams,
    FeaturesParams,
    GridParams,
    HMMParams,
    JumpParams,
    ScaleParams,
    SelectParams,
)
from regimelab.synth import Regime, make_market
from tests.stages.conftest import load_stage

RANGE = FeaturesParams(set="range")
SCALE = ScaleParams(method="standard", clip=4.0)
JUMP = JumpParams(n_init=3)
#: settings 'past': the stability scan over K in 2..4 and three penalties (small, fast).
PAST_SELECT = SelectParams(grid=GridParams(n_states=(2, 3, 4)), penalties=(5.0, 20.0, 50.0))
SMALL = BacktestParams(families=("jump",), settings="fixed", min_train=1500, refit=400,
                       n_boot=200, jump_penalty=20.0,
                       exposures={"crash": 0.0, "volatile bear": 0.0}, exposure_default=1.0)


def regime_market(drifts: tuple[float, float], *, seed: int, n_bars: int = 5000,
                  vol_clustering: float = 0.0) -> pd.DataFrame:
    """Two regimes: a calm one and one three times as volatile, with the given drifts."""
    regimes = [Regime("calm", drift=drifts[0], vol=0.004, volume=7.0),
               Regime("storm", drift=drifts[1], vol=0.012, volume=8.0)]
    bars = make_market(n_bars, regimes=regimes, stickiness=0.995, random_state=seed,
                       vol_clustering=vol_clustering)
    return bars.drop(columns="regime")


def backtest(bars: pd.DataFrame, params: BacktestParams = SMALL) -> dict:
    features = build_features(bars, params=RANGE)
    result = run_backtest(features.table, bars, columns=features.spec["columns"],
                          base_timeframe=pd.Timedelta("1h"), params=params,
                          settings=settings_for(params, None), scale=SCALE, hmm=HMMParams(),
                          jump=JUMP, seed=0)
    return result.metrics


def test_where_regimes_set_the_drift_risk_on_off_beats_buy_and_hold() -> None:
    m = backtest(regime_market((0.0006, -0.0015), seed=3))
    block = m["symbols"]["SYN"]
    onoff, hold = block["jump"]["risk_onoff"], block["buy_and_hold"]
    assert onoff["sharpe_diff_lo"] > 0  # better beyond the bootstrap's doubt
    assert onoff["max_drawdown"] > hold["max_drawdown"]
    assert onoff["time_in_market"] < 0.8  # it does step out, in the storms
    assert block["jump"]["mapping"]["sharpe"] > hold["sharpe"]


@pytest.mark.parametrize("seed", [1, 2])
def test_without_regimes_risk_on_off_does_not_beat_buy_and_hold(seed: int) -> None:
    # One law of returns with clustered volatility: a model finds calm and stormy
    # stretches, but they say nothing about the drift.
    bars = make_market(5000, regimes=[Regime("one", drift=0.0002, vol=0.006, volume=7.0)],
                       vol_clustering=0.95, random_state=seed).drop(columns="regime")
    block = backtest(bars)["symbols"]["SYN"]
    assert block["jump"]["risk_onoff"]["sharpe_diff_lo"] < 0
    assert block["jump"]["risk_onoff"]["dsr"] < 0.95


def _positions(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every exposure the backtest decides on ``bars`` (first refit at row 1500)."""
    features = build_features(bars, params=RANGE).table
    returns = symbol_returns(features, bars)
    points = refit_points(len(features), min_train=1500, refit=400)
    settings = settings_for(SMALL, None)
    out = {}
    for family in ("jump", "gaussian_hmm"):
        walk = walk_forward(features, ["log_range_1h"], returns, family=family,
                            settings=settings, points=points, rolling=None, scale=SCALE,
                            hmm=HMMParams(n_init=2), jump=JUMP, seed=0)
        for rule in ("risk_onoff", "vol_target", "mapping"):
            out[f"{family}_{rule}"] = rules.decided_exposure(
                walk, rule=rule, bars_per_year=8766.0, exposures={"crash": 0.0},
                exposure_default=1.0)
    past = settings_for(replace(SMALL, settings="past"), None, select=PAST_SELECT, min_dwell=24)
    walk = walk_forward(features, ["log_range_1h"], returns, family="jump", settings=past,
                        points=points, rolling=None, scale=SCALE, hmm=HMMParams(), jump=JUMP,
                        seed=0, reselect=400)
    out["jump_past_risk_onoff"] = rules.decided_exposure(walk, rule="risk_onoff",
                                                         bars_per_year=8766.0)
    out["vol_threshold"] = rules.vol_threshold_exposure(
        rules.trailing_vol(returns, 24), points, quantile=0.8, rolling=None)
    return out


def test_no_position_uses_a_bar_after_its_decision() -> None:
    bars = regime_market((0.0006, -0.0015), seed=5, n_bars=3000)
    t = 1500 + 400 + 137  # inside the second block
    future = bars.copy()
    rng = np.random.default_rng(0)
    later = np.arange(len(bars)) > t
    shock = np.exp(rng.normal(0.0, 0.05, later.sum()))
    for column in ("open", "high", "low", "close"):
        future.loc[later, column] *= shock
    future.loc[later, "high"] *= 1.0 + rng.uniform(0, 0.05, later.sum())
    before, after = _positions(bars), _positions(future)
    for name in before:
        assert_allclose(after[name][:t + 1], before[name][:t + 1], rtol=0, atol=0,
                        equal_nan=True, err_msg=name)
    # The shock did reach the later positions, so the check above could have failed.
    assert any(not np.array_equal(after[name][t + 1:], before[name][t + 1:], equal_nan=True)
               for name in before)


def test_execution_delay_and_costs_by_hand() -> None:
    decided = np.array([np.nan, 1.0, 1.0, 0.0, 0.5, 1.0])
    returns = np.array([np.nan, 0.01, -0.02, 0.03, 0.01, -0.01])
    pnl, held = rules.execute(decided, returns, start=1, delay=1, cost_bps=10.0)
    assert_allclose(held, [1.0, 1.0, 0.0, 0.5], rtol=0, atol=0)
    assert_allclose(pnl, [-0.02 - 0.001, 0.03, 0.0 - 0.001, 0.5 * -0.01 - 0.0005],
                    rtol=0, atol=1e-15)
    pnl, held = rules.execute(decided, returns, start=1, delay=2, cost_bps=10.0)
    assert_allclose(held, [0.0, 1.0, 1.0, 0.0], rtol=0, atol=0)
    assert_allclose(pnl, [0.0, 0.03 - 0.001, 0.01, -0.001], rtol=0, atol=1e-15)
    pnl, _ = rules.execute(decided, returns, start=1, delay=1, cost_bps=0.0)
    assert_allclose(pnl, [-0.02, 0.03, 0.0, -0.005], rtol=0, atol=1e-15)


def test_performance_by_hand() -> None:
    pnl = np.array([0.1, -0.2, 0.05, 0.0])
    held = np.array([1.0, 1.0, 0.5, 0.0])
    out = stats.performance(pnl, held, bars_per_year=4.0)  # one year of bars
    assert_allclose(out["total_return"], 1.1 * 0.8 * 1.05 - 1, rtol=1e-12, atol=0)
    assert_allclose(out["annual_return"], 1.1 * 0.8 * 1.05 - 1, rtol=1e-12, atol=0)
    assert_allclose(out["max_drawdown"], 0.8 - 1, rtol=1e-12, atol=0)  # from the 1.1 peak
    assert_allclose(out["turnover"], 1.0 + 0.5 + 0.5, rtol=1e-12, atol=0)
    assert out["trades_per_year"] == 3.0
    assert out["time_in_market"] == 0.75
    assert_allclose(out["sharpe"], pnl.mean() / pnl.std(ddof=1) * 2.0, rtol=1e-12, atol=0)
    assert_allclose(out["sortino"], pnl.mean() / np.sqrt(0.04 / 4) * 2.0, rtol=1e-12, atol=0)


def test_psr_and_dsr_match_bailey_and_lopez_de_prado() -> None:
    # The Deflated Sharpe Ratio paper's example: annual SR 2.5 over 5 years of daily
    # returns (T = 1250), skewness -3, kurtosis 10, N = 100 trials whose annual Sharpes
    # vary with variance 0.5: DSR = 0.9004.
    sr = 2.5 / np.sqrt(250)
    trials = np.random.default_rng(0).normal(size=100)
    trials = (trials - trials.mean()) / trials.std(ddof=1) * np.sqrt(0.5 / 250)
    threshold = stats.expected_max_sharpe(trials)
    assert_allclose(threshold, np.sqrt(0.5 / 250) * (
        (1 - np.euler_gamma) * sps.norm.ppf(0.99)
        + np.euler_gamma * sps.norm.ppf(1 - 1 / (100 * np.e))), rtol=1e-12, atol=0)
    dsr = stats.psr(sr, n=1250, skew=-3.0, kurtosis=10.0, benchmark=threshold)
    assert_allclose(dsr, 0.9004, rtol=0, atol=5e-4)
    # PSR against zero, by hand: Phi(SR sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2)).
    assert_allclose(stats.psr(0.1, n=101, skew=0.0, kurtosis=3.0),
                    sps.norm.cdf(1.0 / np.sqrt(1.005)), rtol=1e-12, atol=0)
    assert stats.expected_max_sharpe(np.array([0.3])) == 0.0


def test_bad_backtest_params_name_the_key() -> None:
    with pytest.raises(ParamsError, match=r"^backtest\.refit: got '3x'"):
        BacktestParams(refit="3x")
    with pytest.raises(ParamsError, match=r"^backtest\.families"):
        BacktestParams(families=("dssm", "dssm"))
    with pytest.raises(ParamsError, match=r"^backtest\.dssm_max_epochs"):
        BacktestParams(dssm_max_epochs=0)
    with pytest.raises(ParamsError, match=r"^backtest\.max_states"):
        BacktestParams(max_states=1)
    with pytest.raises(ParamsError, match=r"^backtest\.max_states: 3 is below every"):
        settings_for(BacktestParams(settings="past", max_states=3), None,
                     select=SelectParams(grid=GridParams(n_states=(4, 5))))


def test_stage_writes_metrics_and_plots(tmp_path: Path) -> None:
    bars = regime_market((0.0006, -0.0015), seed=4, n_bars=2500)
    features = build_features(bars, params=RANGE)
    bars.to_parquet(tmp_path / "bars.parquet")
    features.table.to_parquet(tmp_path / "features.parquet")
    (tmp_path / "spec.json").write_text(json.dumps(features.spec))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "backtest": {"families": ["jump", "gaussian_hmm"], "min_train": 1500, "refit": "400h",
                     "n_boot": 100},
        "jump": {"n_init": 2}, "hmm": {"n_init": 2}, "scale": {"clip": 4.0}}))
    args = ["--params", str(tmp_path / "params.yaml"),
            "--features", str(tmp_path / "features.parquet"),
            "--spec", str(tmp_path / "spec.json"), "--bars", str(tmp_path / "bars.parquet"),
            "--selection", str(tmp_path / "absent.json"),
            "--metrics", str(tmp_path / "out/backtest.json"), "--plots", str(tmp_path / "out")]
    load_stage("backtest").main(args)
    m = json.loads((tmp_path / "out/backtest.json").read_text())
    block = m["symbols"]["SYN"]
    assert block["period"]["refits"] == 3  # rows 1500, 1900, 2300
    assert set(block["look_ahead"]) == {f"{f}_{r}_hindsight" for f in ("jump", "gaussian_hmm")
                                        for r in ("risk_onoff", "vol_target")}
    assert "hindsight" not in json.dumps({k: v for k, v in block.items() if k != "look_ahead"})
    assert m["settings"]["look_ahead_of_selection"] is False
    # The default re-chooses K and the penalty on the past, once, with select's grid; both
    # families use the one choice, which the metrics record.
    assert m["settings"]["jump_penalty"] == "past" and m["settings"]["n_states"] == "past"
    assert m["settings"]["state_grid"] == [2, 3, 4, 5, 6, 7, 8]
    chosen = block["jump"]["refits"]["jump_penalty_by_row"]
    assert list(chosen) == ["1500"] and chosen["1500"] in m["settings"]["penalties"]
    assert list(block["past_choices"]) == ["1500"]
    choice = block["past_choices"]["1500"]
    assert set(choice["scan"]) <= {str(k) for k in range(2, 9)}
    for family in ("jump", "gaussian_hmm"):
        assert block[family]["refits"]["n_states_by_row"] == {"1500": choice["n_states"]}
    equity = pd.read_csv(tmp_path / "out/equity.csv")
    assert {"buy_and_hold", "vol_threshold", "risk_onoff", "vol_target", "jump_risk_onoff",
            "gaussian_hmm_vol_target"} <= set(equity.columns)
    assert_allclose(equity["risk_onoff"], equity["jump_risk_onoff"], rtol=0, atol=0)
    exposure = pd.read_csv(tmp_path / "out/exposure.csv")
    assert list(exposure.columns) == ["timestamp", *REGIME_NAMES]
    assert exposure.drop(columns="timestamp").notna().sum(axis=1).max() == 1
    assert (pd.read_csv(tmp_path / "out/drawdown.csv").drop(columns="timestamp") <= 0).all().all()
    first = (tmp_path / "out/backtest.json").read_bytes()
    load_stage("backtest").main(args)
    assert (tmp_path / "out/backtest.json").read_bytes() == first


def test_panel_summary_takes_the_median_and_the_share_of_better_drawdowns() -> None:
    def block(hold_dd: float, rule_dd: float, diff: float) -> dict:
        row = {"max_drawdown": rule_dd, "sharpe_diff": diff}
        return {"buy_and_hold": {"max_drawdown": hold_dd, "sharpe_diff": 0.0},
                "vol_threshold": row, "jump": {"risk_onoff": row, "vol_target": row}}

    params = BacktestParams(families=("jump",), settings="fixed", exposures={})
    blocks = {"A": block(-0.5, -0.3, 0.2), "B": block(-0.5, -0.5, -0.1),
              "C": block(-0.4, -0.6, 0.4)}
    summary = panel_summary(blocks, params)
    assert set(summary) == {"vol_threshold", "jump_risk_onoff", "jump_vol_target"}
    assert summary["jump_risk_onoff"] == {"median_sharpe_diff": 0.2,
                                          "drawdown_improved_share": 1 / 3, "n_symbols": 3}


def test_past_penalty_is_the_smallest_that_makes_regimes_last() -> None:
    bars = regime_market((0.0006, -0.0015), seed=6, n_bars=3000)
    features = build_features(bars, params=RANGE).table
    X = (features[["log_range_1h"]].to_numpy() - features["log_range_1h"].mean()) \
        / features["log_range_1h"].std()
    segment = features["segment"].to_numpy()
    kw = {"n_states": 2, "jump": JUMP, "penalties": [0.0, 5.0, 50.0], "seed": 0,
          "columns": ["log_range_1h"]}
    penalty, dwell = past_penalty(X, segment, min_dwell=1, **kw)
    assert penalty == 0.0 and list(dwell) == ["0"]  # the first one already lasts a bar
    penalty, dwell = past_penalty(X, segment, min_dwell=24, **kw)
    assert dwell["0"] < 24  # k-means on single bars flickers ...
    assert penalty == min(float(p) for p, d in dwell.items() if d is not None and d >= 24)
    penalty, dwell = past_penalty(X, segment, min_dwell=10**6, **kw)
    assert penalty == 50.0 and all(d < 10**6 for d in dwell.values())  # none lasts: the largest


def three_regime_market(seed: int, n_bars: int = 4000) -> pd.DataFrame:
    """Three regimes of distinct volatility: the true state count is 3."""
    regimes = [Regime("calm", drift=0.0004, vol=0.003, volume=7.0),
               Regime("mid", drift=0.0, vol=0.008, volume=7.5),
               Regime("storm", drift=-0.001, vol=0.02, volume=8.0)]
    return make_market(n_bars, regimes=regimes, stickiness=0.995,
                       random_state=seed).drop(columns="regime")


def _past_walk(bars: pd.DataFrame, family: str = "jump",
               choices: dict | None = None) -> tuple[object, dict]:
    features = build_features(bars, params=RANGE).table
    settings = settings_for(BacktestParams(settings="past"), None, select=PAST_SELECT,
                            min_dwell=24)
    choices = {} if choices is None else choices
    walk = walk_forward(features, ["log_range_1h"], symbol_returns(features, bars),
                        family=family, settings=settings,
                        points=refit_points(len(features), min_train=1500, refit=500),
                        rolling=None, scale=SCALE, hmm=HMMParams(n_init=2), jump=JUMP, seed=0,
                        reselect=1000, choices=choices)
    return walk, choices


def test_past_settings_rechoose_the_true_state_count_at_the_reselect_cadence() -> None:
    walk, choices = _past_walk(three_regime_market(seed=2))
    # Re-chosen at the first refit and then every 1000 rows (refits every 500).
    assert sorted(choices) == [1500, 2500, 3500]
    assert all(c["n_states"] == 3 and c["passed"] for c in choices.values())
    assert walk.state_counts() == {"1500": 3}
    assert all(fit["n_states"] == 3 and len(fit["names"]) == 3 for fit in walk.fits)
    # The HMM walked over the same symbol reuses the choices, and uses their count.
    hmm_walk, again = _past_walk(three_regime_market(seed=2), "gaussian_hmm", choices)
    assert again is choices and sorted(again) == [1500, 2500, 3500]
    assert all(len(fit["names"]) == 3 for fit in hmm_walk.fits)


def test_past_choice_of_the_state_count_never_uses_a_later_bar() -> None:
    bars = three_regime_market(seed=1)
    t = 2500 + 200  # after the second re-choice, before the third
    future = bars.copy()
    later = np.arange(len(bars)) > t
    # From t on, one calm regime only: the later choice has other data to go on.
    rng = np.random.default_rng(3)
    steps = np.exp(np.cumsum(rng.normal(0.0, 0.003, later.sum())))
    anchor = future.loc[~later, "close"].iloc[-1]
    for column in ("open", "high", "low", "close"):
        future.loc[later, column] = anchor * steps
    future.loc[later, "high"] *= 1.001
    future.loc[later, "low"] /= 1.001
    before, chosen_before = _past_walk(bars)
    after, chosen_after = _past_walk(future)
    for row in (1500, 2500):
        assert chosen_after[row] == chosen_before[row]
    assert_array_equal(after.labels[:t + 1], before.labels[:t + 1])
    assert chosen_before[1500]["n_states"] != chosen_before[2500]["n_states"]  # K changes
    # The altered bars did reach the last choice, so the check above could have failed.
    assert chosen_after[3500] != chosen_before[3500]


def test_hmm_refits_start_from_the_previous_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    from regimelab.backtest import walkforward

    bars = regime_market((0.0006, -0.0015), seed=5, n_bars=3000)
    features = build_features(bars, params=RANGE).table
    returns = symbol_returns(features, bars)
    kw = {"family": "gaussian_hmm", "settings": settings_for(SMALL, None),
          "points": refit_points(len(features), min_train=1500, refit=400), "rolling": None,
          "scale": SCALE, "hmm": HMMParams(n_init=3), "jump": JUMP, "seed": 0}
    make = walkforward.make_model
    made: list = []

    def recording(family: str, **settings: object) -> object:
        made.append(make(family, **settings))
        return made[-1]

    monkeypatch.setattr(walkforward, "make_model", recording)
    warm = walk_forward(features, ["log_range_1h"], returns, **kw)
    # The first refit runs every cold restart; each later one a single EM run from the
    # previous fit, and nothing else.
    assert len(made) == len(kw["points"]) and len(made[0].restarts_) == 3
    assert all(len(m.restarts_) == 1 and m.n_init == 1 for m in made[1:])
    monkeypatch.setattr(walkforward, "WARM_STARTS", ("jump",))
    cold = walk_forward(features, ["log_range_1h"], returns, **kw)
    live = warm.refit_of >= 0
    assert np.mean(warm.labels[live] == cold.labels[live]) > 0.97


def test_hmm_warm_start_carries_the_parameters_into_the_new_scale() -> None:
    from regimelab.families.hmm.fit import make_hmm
    from regimelab.scaling import Scaler

    bars = regime_market((0.0006, -0.0015), seed=5, n_bars=3000)
    features = build_features(bars, params=RANGE).table
    old = Scaler(method="standard").fit(features.iloc[:1500], ["log_range_1h"])
    new = Scaler(method="standard").fit(features.iloc[:2500], ["log_range_1h"])
    X = old.transform_array(features[["log_range_1h"]].to_numpy()[:1500])
    model = make_hmm(2, "full", hmm=HMMParams(n_init=2), seed=0).fit(X, np.array([1500]))
    init = hmm_warm_start(model, old, new)
    # The same centres and spreads in feature units, whichever scaler expresses them.
    assert_allclose(init["means"] * new.scale_ + new.center_,
                    model.means_ * old.scale_ + old.center_, rtol=1e-12)
    assert_allclose(init["covars"] * new.scale_ ** 2, model.covars_ * old.scale_ ** 2,
                    rtol=1e-12)
    assert_array_equal(init["transmat"], model.transmat_)
    with pytest.raises(ModelError, match=r"init\['means'\] has shape"):
        make_hmm(2, "full", hmm=HMMParams(), seed=0).fit(
            X, np.array([1500]), init={**init, "means": init["means"][:1]})


def test_a_failed_refit_keeps_the_previous_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from regimelab.backtest import walkforward

    bars = regime_market((0.0006, -0.0015), seed=5, n_bars=3000)
    features = build_features(bars, params=RANGE).table
    returns = symbol_returns(features, bars)
    points = refit_points(len(features), min_train=1500, refit=400)  # 1500, 1900, 2300
    kw = {"family": "jump", "settings": settings_for(SMALL, None), "points": points,
          "rolling": None, "scale": SCALE, "hmm": HMMParams(), "jump": JUMP, "seed": 0}
    healthy = walk_forward(features, ["log_range_1h"], returns, **kw)
    make = walkforward.make_model
    calls = []

    def failing_second(family: str, **settings: object) -> object:
        model = make(family, **settings)
        calls.append(model)
        if len(calls) == 2:
            def fit(*args: object, **kwargs: object) -> None:
                raise ModelError("a state is empty")
            model.fit = fit
        return model

    monkeypatch.setattr(walkforward, "make_model", failing_second)
    walk = walk_forward(features, ["log_range_1h"], returns, **kw)
    assert walk.failed == 1 and walk.fits[1]["failed"] == "a state is empty"
    # The first model labels its own block and the failed refit's: the same labels as
    # the healthy run's first model gives (filtered labels never depend on later bars).
    first = calls[0]
    assert_array_equal(walk.labels[:1900], healthy.labels[:1900])
    scaler = walkforward.Scaler(method=SCALE.method, clip=SCALE.clip).fit(
        features.iloc[:1500], ["log_range_1h"])
    X = scaler.transform_array(features[["log_range_1h"]].to_numpy()[:2300])
    lengths = walkforward.segment_lengths(features["segment"].to_numpy()[:2300])
    expected = first.filter_proba(X, lengths).argmax(axis=1)[1900:2300]
    assert_array_equal(walk.labels[1900:2300], expected)
    assert walk.refit_of[2000] == 1 and walk.fits[2]["failed"] is None

    monkeypatch.setattr(walkforward, "make_model", lambda family, **s: _broken(make(family, **s)))
    with pytest.raises(ModelError, match="first refit"):
        walk_forward(features, ["log_range_1h"], returns, **kw)


def _broken(model: object) -> object:

    def fit(*args: object, **kwargs: object) -> None:
        raise ModelError("no")
    model.fit = fit
    return model


def test_state_exposures_by_hand() -> None:
    fit = {"mean": [0.001, -0.002, float("nan")], "vol": [0.01, 0.04, float("nan")],
           "names": ["calm bull", "crash", "flat 2"]}
    onoff = rules.state_exposures(fit, rule="risk_onoff", bars_per_year=100.0)
    assert onoff.tolist() == [1.0, 0.0, 0.0]
    short = rules.state_exposures(fit, rule="risk_onoff", bars_per_year=100.0, short=True)
    assert short.tolist() == [1.0, -1.0, 0.0]  # the unseen state stays flat
    target = rules.state_exposures(fit, rule="vol_target", bars_per_year=100.0,
                                   target_vol=0.2, max_leverage=1.5)
    assert_allclose(target, [1.5, 0.2 / 0.4, 0.0], rtol=1e-12, atol=0)  # 0.2/0.1 capped
    mapped = rules.state_exposures(fit, rule="mapping", bars_per_year=100.0,
                                   exposures={"crash": 0.0, "flat": 0.5},
                                   exposure_default=1.0)
    assert mapped.tolist() == [1.0, 0.0, 0.5]  # "flat 2" falls back to "flat"


def test_dssm_walks_forward_warm_started_and_never_sees_a_later_bar(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from regimelab.families.dssm.model import REGIME_PARAMETERS, RegimeDSSM

    bars = regime_market((0.0006, -0.0015), seed=5, n_bars=2200)
    fits: list[dict] = []
    fit = RegimeDSSM.fit

    def recording(self: RegimeDSSM, X: np.ndarray, lengths: np.ndarray, **kw: object) -> object:
        fits.append({"rows": len(X) + len(kw["X_val"]), "model": self, **kw})
        return fit(self, X, lengths, **kw)

    monkeypatch.setattr(RegimeDSSM, "fit", recording)
    params = replace(SMALL, families=("dssm",), dssm_max_epochs=1)
    dssm = DSSMParams(window=64, stride=48, burn_in=8, batch_size=8)

    def labels(market: pd.DataFrame) -> tuple[Any, list]:
        features = build_features(market, params=RANGE).table
        walk = walk_forward(features, ["log_range_1h"], symbol_returns(features, market),
                            family="dssm", settings=settings_for(params, None),
                            points=[1500, 1900], rolling=None, scale=SCALE, hmm=HMMParams(),
                            jump=JUMP, seed=0, dssm=dssm)
        return walk, walk.fits

    walk, _ = labels(bars)
    first, second = fits[:2]
    # Each refit trains on its window only (85% fit, 15% early stopping), one epoch.
    assert first["rows"] == 1500 and second["rows"] == 1900
    assert first["init"] is None and first["warm_weights"] is None  # cold: its own HMM
    # The second starts from the first: its regime parameters and its context weights.
    assert second["init"] is not None and second["init"].means_.shape == (2, 1)
    assert "cell.weight_ih" in second["warm_weights"] and "means" in second["warm_weights"]
    model = first["model"]
    for name, value in second["warm_weights"].items():
        if name not in REGIME_PARAMETERS:
            assert torch.equal(value, model.net_.state_dict()[name]), name
    assert all(len(f["names"]) == 2 for f in walk.fits) and (walk.labels[1500:] >= 0).all()
    # Later bars move nothing before them.
    t = 1900 + 100
    future = bars.copy()
    later = np.arange(len(bars)) > t
    future.loc[later, ["open", "high", "low", "close"]] *= 1.3
    shifted, _ = labels(future)
    assert_array_equal(shifted.labels[:t + 1], walk.labels[:t + 1])
