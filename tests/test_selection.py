"""select-states: candidates, the choice, and picking the true state count."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from regimelab.choice import choose, min_dwell_bars, resolve_model
from regimelab.exceptions import ModelError, ParamsError
from regimelab.families.hmm.fit import candidate_seed, make_hmm
from regimelab.params import GridParams, HMMParams, ModelParams, SelectParams
from regimelab.selection import (
    criteria_tables,
    decision_noise,
    evaluate_candidate,
    run_selection,
    scan_tables,
    study_name,
)
from regimelab.synth import make_market, make_realistic_market

RANGE = "parkinson_1_1h"


def log_range_split(bars: pd.DataFrame, train: float = 0.75
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-bar log(log(high/low)), standardised on the first ``train`` share.

    One feature, close to Gaussian within a regime: the model's own assumptions, so BIC
    can be asked for the true state count. (Adding the return or the volume brings
    within-regime dependence that a diagonal Gaussian pays for with extra states.)
    """
    x = np.log(np.log(bars["high"] / bars["low"])).to_numpy()
    cut = int(train * len(x))
    x = ((x - x[:cut].mean()) / x[:cut].std())[:, None]
    return x[:cut], np.array([cut]), x[cut:], np.array([len(x) - cut])


@pytest.mark.parametrize("n_regimes, seed", [(3, 1), (4, 2)])
def test_bic_picks_the_true_state_count(tmp_path: Path, n_regimes: int, seed: int) -> None:
    bars = make_market(2000, n_regimes=n_regimes, random_state=seed)
    X, lengths, X_val, lengths_val = log_range_split(bars)
    select = SelectParams(grid=GridParams(n_states=(2, 3, 4, 5), covariance_type=("diag",)),
                          criterion="bic", resamples=1, penalties=(5.0,), n_jobs=2)
    result = run_selection(X, lengths, X_val, lengths_val, select=select,
                           hmm=HMMParams(n_init=2), seed=0, storage=f"sqlite:///{tmp_path}/s.db",
                           name="test", feature_names=[RANGE])

    assert (result["choice"]["n_states"], result["choice"]["covariance_type"]) == (n_regimes,
                                                                                   "diag")
    candidates = result["candidates"]
    assert list(candidates) == ["k2_diag", "k3_diag", "k4_diag", "k5_diag"]
    assert all(c["status"] == "complete" for c in candidates.values())
    bic = {c["n_states"]: c["bic"] for c in candidates.values()}
    assert min(bic, key=bic.get) == n_regimes
    assert (result["criterion"], result["n_train"], result["n_val"]) == ("bic", len(X),
                                                                         len(X_val))
    tables = criteria_tables(result)
    assert sorted(tables) == ["aic", "bic", "val_ll"]
    np.testing.assert_allclose(tables["bic"]["diag"], [bic[k] for k in (2, 3, 4, 5)],
                               rtol=1e-12, atol=0)
    np.testing.assert_array_equal(tables["val_ll"]["n_states"], [2, 3, 4, 5])


def test_a_candidate_that_cannot_be_fitted_is_recorded(tmp_path: Path) -> None:
    bars = make_market(300, n_regimes=2, stickiness=0.98, random_state=1)
    assert np.bincount(bars["regime"]).min() >= 140
    X, lengths, _, _ = log_range_split(bars, train=1.0)
    # Three states of at least 110 bars each cannot fit in 300 bars.
    result = run_selection(
        X, lengths, X, lengths,
        select=SelectParams(grid=GridParams(n_states=(2, 3), covariance_type=("diag",)),
                            criterion="bic", resamples=1, penalties=(5.0,)),
        hmm=HMMParams(n_init=2, min_state_bars=110), seed=0,
        storage=f"sqlite:///{tmp_path}/s.db", name="test")
    failed = result["candidates"]["k3_diag"]
    assert failed["status"] == "pruned"
    assert failed["failed"].startswith("model.n_states = 3 (diag): every restart failed")
    assert result["candidates"]["k2_diag"]["status"] == "complete"
    assert (result["choice"]["n_states"], result["choice"]["covariance_type"]) == (2, "diag")
    # The plots leave the failed candidate empty rather than inventing a number.
    assert np.isnan(criteria_tables(result)["bic"]["diag"].iloc[1])


def test_an_unreachable_storage_names_the_key() -> None:
    X = np.random.default_rng(0).normal(size=(100, 1))
    with pytest.raises(ParamsError, match="select.storage: cannot open"):
        run_selection(X, np.array([100]), X, np.array([100]), select=SelectParams(),
                      hmm=HMMParams(), seed=0, storage="sqlite:////no/such/folder/s.db",
                      name="test")


def test_evaluate_candidate_scores_what_train_hmm_refits() -> None:
    bars = make_market(900, n_regimes=3, random_state=1)
    X, lengths, X_val, lengths_val = log_range_split(bars)
    hmm = HMMParams(n_init=2)
    row = evaluate_candidate(X, lengths, X_val, lengths_val, n_states=3, covariance_type="diag",
                             hmm=hmm, seed=7)
    assert set(row) == {"n_states", "covariance_type", "train_ll_per_bar", "val_ll_per_bar",
                        "aic", "bic", "n_parameters", "restart_ari", "n_iter", "converged",
                        "failed_restarts", "restarts_continued", "restart_ll_spread_per_bar",
                        "restart_val_ll_spread_per_bar"}
    # start 2 + transitions 6 + means 3 + variances 3
    assert row["n_parameters"] == 14
    n = len(X)
    np.testing.assert_allclose(row["aic"], -2 * n * row["train_ll_per_bar"] + 2 * 14,
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(row["bic"] - row["aic"], 14 * (np.log(n) - 2), rtol=1e-9, atol=0)
    # The same seed derivation in train-hmm gives the same model.
    model = make_hmm(3, "diag", hmm=hmm, seed=7).fit(X, lengths)
    assert model.log_likelihood_ / n == row["train_ll_per_bar"]
    assert model.score(X_val, lengths_val) / len(X_val) == row["val_ll_per_bar"]
    assert 0.0 <= row["restart_ari"] <= 1.0 and row["failed_restarts"] == 0
    # The optimiser's noise: how far apart the two restarts run to convergence end.
    continued = [r for r in model.restarts_ if r.continued]
    assert row["restarts_continued"] == len(continued) == 2
    lls = [r.log_likelihood for r in continued]
    assert row["restart_ll_spread_per_bar"] == abs(lls[0] - lls[1]) / n
    val = [m.score(X_val, lengths_val) for m in model.continued_models_.values()]
    assert val[0] == model.score(X_val, lengths_val)  # the best restart comes first
    np.testing.assert_allclose(row["restart_val_ll_spread_per_bar"],
                               abs(val[0] - val[1]) / len(X_val), rtol=1e-12, atol=0)
    alone = evaluate_candidate(X, lengths, X_val, lengths_val, n_states=3,
                               covariance_type="diag", hmm=HMMParams(n_init=1), seed=7)
    assert alone["restarts_continued"] == 1 and np.isnan(alone["restart_ll_spread_per_bar"])


def test_candidate_seed_is_stable_and_distinct() -> None:
    seeds = {candidate_seed(0, k, cov) for k in range(2, 9) for cov in ("diag", "full")}
    assert len(seeds) == 14
    assert candidate_seed(0, 4, "full") == candidate_seed(0, 4, "full")
    assert candidate_seed(1, 4, "full") != candidate_seed(0, 4, "full")


def test_study_name_changes_with_the_data_and_settings() -> None:
    select, hmm = SelectParams(), HMMParams()
    a, b = np.zeros((5, 2)), np.ones((3, 2))
    name = study_name([a, b], columns=["x", "y"], select=select, hmm=hmm, seed=0)
    assert name == study_name([a.copy(), b.copy()], columns=["x", "y"], select=select, hmm=hmm,
                              seed=0)
    assert name.startswith("select-states-")
    assert name != study_name([a, b + 1e-12], columns=["x", "y"], select=select, hmm=hmm, seed=0)
    assert name != study_name([a, b], columns=["y", "x"], select=select, hmm=hmm, seed=0)
    assert name != study_name([a, b], columns=["x", "y"], select=select,
                              hmm=HMMParams(n_init=3), seed=0)


def test_an_error_in_a_trial_leaves_no_trial_running(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    import regimelab.selection as selection

    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(selection, "evaluate_candidate", broken)
    X = np.random.default_rng(0).normal(size=(200, 1))
    storage = f"sqlite:///{tmp_path}/s.db"
    select = SelectParams(grid=GridParams(n_states=(2, 3, 4), covariance_type=("diag",)))
    with pytest.raises(RuntimeError, match="out of memory"):
        run_selection(X, np.array([200]), X, np.array([200]), select=select, hmm=HMMParams(),
                      seed=0, storage=storage, name="broken")
    study = optuna.load_study(study_name="broken", storage=storage)
    states = {t.state for t in study.get_trials()}
    assert optuna.trial.TrialState.RUNNING not in states


# -- choose --------------------------------------------------------------------------------


def row(n_states: int, cov: str, bic: float, val_ll: float, *, aic: float | None = None,
        status: str = "complete") -> dict[str, Any]:
    return {"status": status, "n_states": n_states, "covariance_type": cov, "bic": bic,
            "aic": bic if aic is None else aic, "val_ll_per_bar": val_ll,
            "n_parameters": n_states * (n_states + (10 if cov == "full" else 4))}


def picked(chosen: dict[str, Any]) -> tuple[int, str]:
    return chosen["n_states"], chosen["covariance_type"]


def test_lowest_bic_wins() -> None:
    rows = [row(2, "diag", 1000.0, -1.0), row(3, "diag", 900.0, -1.2),
            row(4, "diag", 950.0, -0.9)]
    # 950 is 0.025 nats per bar above the best (BIC is -2 log-likelihood): no tie at 0.002.
    assert picked(choose(rows, criterion="bic", tie_tolerance=0.002, n_train=1000)) == (3, "diag")


# 0.002 nats per bar over 1,000 bars is 2 nats, 4 in BIC.
@pytest.mark.parametrize("bic_4, expected", [(903.9, (4, "diag")), (904.1, (3, "diag"))])
def test_near_ties_go_to_the_better_validation_fit(bic_4: float, expected: tuple) -> None:
    rows = [row(3, "diag", 900.0, -1.2), row(4, "diag", bic_4, -1.1)]
    assert picked(choose(rows, criterion="bic", tie_tolerance=0.002, n_train=1000)) == expected


def test_exact_ties_go_to_fewer_states_then_the_simpler_covariance() -> None:
    rows = [row(4, "diag", 900.0, -1.0), row(3, "full", 900.0, -1.0),
            row(3, "diag", 900.0, -1.0)]
    assert picked(choose(rows, criterion="bic", tie_tolerance=0.0, n_train=1000)) == (3, "diag")


def test_val_ll_and_aic_criteria() -> None:
    rows = [row(2, "diag", 900.0, -1.3, aic=880.0), row(5, "full", 990.0, -1.0, aic=870.0)]
    assert picked(choose(rows, criterion="val_ll", tie_tolerance=0.0, n_train=1000)) == (5, "full")
    assert picked(choose(rows, criterion="aic", tie_tolerance=0.0, n_train=1000)) == (5, "full")
    assert picked(choose(rows, criterion="bic", tie_tolerance=0.0, n_train=1000)) == (2, "diag")


def test_val_ll_near_ties_go_to_the_fewest_parameters() -> None:
    rows = [row(2, "diag", 900.0, -1.0001), row(8, "full", 990.0, -1.0)]
    assert picked(choose(rows, criterion="val_ll", tie_tolerance=0.01, n_train=1000)) \
        == (2, "diag")
    assert picked(choose(rows, criterion="val_ll", tie_tolerance=0.0, n_train=1000)) \
        == (8, "full")


def test_only_complete_candidates_count() -> None:
    rows = [row(2, "diag", 1.0, 0.0, status="pruned"), row(3, "diag", 900.0, -1.0)]
    assert picked(choose(rows, criterion="bic", tie_tolerance=0.002, n_train=1000)) == (3, "diag")
    with pytest.raises(ModelError, match="select-states: no candidate could be fitted"):
        choose(rows[:1], criterion="bic", tie_tolerance=0.002, n_train=1000)


# -- resolve_model -------------------------------------------------------------------------


@pytest.fixture
def selection() -> dict[str, Any]:
    rows = [row(2, "diag", 1000.0, -1.3), row(2, "full", 1010.0, -1.3),
            row(3, "diag", 900.0, -1.1), row(3, "full", 950.0, -1.2),
            row(4, "diag", 960.0, -1.2), row(4, "full", 920.0, -1.15),
            row(5, "diag", 0.0, 0.0, status="pruned"), row(5, "full", 0.0, 0.0, status="pruned")]
    return {"choice": {"n_states": 3, "covariance_type": "diag"}, "criterion": "bic",
            "tie_tolerance": 0.002, "n_train": 1000,
            "candidates": {f"k{r['n_states']}_{r['covariance_type']}": r for r in rows}}


@pytest.mark.parametrize("n_states, covariance_type, expected", [
    ("auto", "auto", (3, "diag")),
    (4, "auto", (4, "full")),      # the best covariance type at four states
    (2, "auto", (2, "diag")),
    ("auto", "full", (4, "full")),  # the best state count among full models
    (3, "full", (3, "full")),
    (7, "auto", (7, "diag")),       # outside the grid: as given, the rest from the choice
    (4, "tied", (4, "tied")),
    (5, "auto", (5, "diag")),       # every K=5 candidate failed: as given
])
def test_resolve_model(selection: dict[str, Any], n_states: int | str, covariance_type: str,
                       expected: tuple) -> None:
    params = ModelParams(n_states=n_states, covariance_type=covariance_type)
    assert resolve_model(selection, params) == {"n_states": expected[0],
                                                "covariance_type": expected[1],
                                                "jump_penalty": None,
                                                "jump_penalty_n_states": None}


def test_auto_takes_the_recorded_choice(selection: dict[str, Any]) -> None:
    selection["choice"] = {"n_states": 4, "covariance_type": "full"}
    assert resolve_model(selection, ModelParams()) == {"n_states": 4, "covariance_type": "full",
                                                       "jump_penalty": None,
                                                       "jump_penalty_n_states": None}


def test_the_stability_choice_takes_its_count_and_the_scan_s_penalty(
        selection: dict[str, Any]) -> None:
    scan = {f"k{k}": {"status": "complete", "n_states": k, "jump_penalty": p}
            for k, p in ((3, 2.0), (4, 10.0))}
    selection.update(criterion="stability", scan=scan,
                     choice={"n_states": 4, "covariance_type": "full"})
    assert resolve_model(selection, ModelParams()) == {
        "n_states": 4, "covariance_type": "full", "jump_penalty": 10.0,
        "jump_penalty_n_states": 4}
    # A fixed count takes its own penalty, and its best covariance type by BIC.
    assert resolve_model(selection, ModelParams(n_states=3)) == {
        "n_states": 3, "covariance_type": "diag", "jump_penalty": 2.0,
        "jump_penalty_n_states": 3}
    # One the scan did not reach takes the nearest scanned count's.
    assert resolve_model(selection, ModelParams(n_states=7))["jump_penalty"] == 10.0
    assert resolve_model(selection, ModelParams(n_states=2))["jump_penalty_n_states"] == 3


def test_min_dwell_auto_is_a_day_of_intraday_bars() -> None:
    assert min_dwell_bars(SelectParams(), pd.Timedelta("1h")) == 24
    assert min_dwell_bars(SelectParams(), pd.Timedelta("15min")) == 96
    assert min_dwell_bars(SelectParams(), pd.Timedelta("1D")) == 5
    assert min_dwell_bars(SelectParams(min_dwell=10), pd.Timedelta("1h")) == 10


def test_the_edge_flag_says_where_the_criterion_is_best(tmp_path: Path) -> None:
    # On per-bar features of a market with volatility clustering BIC keeps falling with
    # more states: its optimum is the grid's largest count, whatever a tie rule picks.
    bars = make_realistic_market(6000, n_regimes=2, random_state=3)
    X, lengths, X_val, lengths_val = log_range_split(bars)
    common = dict(grid=GridParams(n_states=(2, 3), covariance_type=("diag",)), resamples=1,
                  penalties=(5.0,), n_jobs=2)
    runs = {}
    for criterion in ("bic", "stability"):
        runs[criterion] = run_selection(
            X, lengths, X_val, lengths_val, select=SelectParams(criterion=criterion, **common),
            hmm=HMMParams(n_init=2), seed=0, storage=f"sqlite:///{tmp_path}/{criterion}.db",
            name="edge", feature_names=[RANGE])
    bic = {c["n_states"]: c["bic"] for c in runs["bic"]["candidates"].values()}
    assert bic[3] < bic[2] and runs["bic"]["bic_optimum_n_states"] == 3
    assert runs["bic"]["choice"]["at_grid_edge"] is True
    # The scan finds two reproducible, distinct regimes and no third: not at the edge.
    stable = runs["stability"]
    # One covariance type at that count: no HMM decision to weigh against the noise.
    assert stable["choice"] == {"n_states": 2, "covariance_type": "diag", "at_grid_edge": False,
                                "within_optimiser_noise": None}
    assert stable["optimiser_noise"]["choice"]["runner_up"] is None
    assert stable["bic_optimum_n_states"] == 3
    tables = scan_tables(stable)
    np.testing.assert_array_equal(tables["scan"]["n_states"], [2, 3])
    assert list(tables["persistence"].columns) == ["penalty", "k2", "k3", "min_dwell"]


def test_full_covariances_over_collinear_features_are_refused(tmp_path: Path) -> None:
    bars = make_market(900, n_regimes=2, random_state=2)
    X, lengths, X_val, lengths_val = log_range_split(bars)
    twin = np.hstack([X, X + 1e-3 * np.random.default_rng(0).standard_normal(X.shape)])
    twin_val = np.hstack([X_val, X_val])
    collinear = [["a", "b", 0.9999]]
    with pytest.raises(ModelError, match="features a and b correlate at \\+0.9999.*"
                                         "hmm.allow_collinear"):
        evaluate_candidate(twin, lengths, twin_val, lengths_val, n_states=2,
                           covariance_type="full", hmm=HMMParams(n_init=1), seed=0,
                           collinear=collinear)
    # Diagonal covariances are fine, and so is a full one the user insists on.
    evaluate_candidate(twin, lengths, twin_val, lengths_val, n_states=2, covariance_type="diag",
                       hmm=HMMParams(n_init=1), seed=0, collinear=collinear)
    evaluate_candidate(twin, lengths, twin_val, lengths_val, n_states=2, covariance_type="full",
                       hmm=HMMParams(n_init=1, allow_collinear=True), seed=0,
                       collinear=collinear)
    result = run_selection(
        twin, lengths, twin_val, lengths_val,
        select=SelectParams(grid=GridParams(n_states=(2,), covariance_type=("diag", "full")),
                            criterion="bic", resamples=1, penalties=(5.0,)),
        hmm=HMMParams(n_init=1), seed=0, storage=f"sqlite:///{tmp_path}/s.db", name="twin",
        collinear=collinear)
    assert result["candidates"]["k2_full"]["status"] == "pruned"
    assert "correlate" in result["candidates"]["k2_full"]["failed"]
    assert result["choice"]["covariance_type"] == "diag"


# -- the optimiser's noise against the decision ---------------------------------------------


def noisy(n_states: int, cov: str, bic: float, val_ll: float, *, spread: float,
          val_spread: float = float("nan")) -> dict[str, Any]:
    """A candidate whose continued restarts ended ``spread`` nats per training bar apart."""
    return {**row(n_states, cov, bic, val_ll), "restart_ll_spread_per_bar": spread,
            "restart_val_ll_spread_per_bar": val_spread}


# 0.001 nats per bar over 1,000 training bars is 1 nat of log-likelihood, 2 in BIC.
@pytest.mark.parametrize("bic_3, within", [(901.5, True), (902.5, False)])
def test_a_bic_gap_below_the_restart_spread_is_flagged(bic_3: float, within: bool) -> None:
    rows = [noisy(2, "diag", 950.0, -1.2, spread=0.0), noisy(4, "diag", 900.0, -1.0,
                                                             spread=0.001),
            noisy(3, "diag", bic_3, -1.1, spread=0.0)]
    noise = decision_noise(rows, chosen=rows[1], criterion="bic", n_train=1000)
    assert noise["chosen"] == "k4_diag" and noise["runner_up"] == "k3_diag"
    np.testing.assert_allclose([noise["gap"], noise["restart_spread"]], [bic_3 - 900.0, 2.0],
                               rtol=1e-12, atol=0)
    assert noise["within_optimiser_noise"] is within and noise["units"] == "BIC"


def test_the_runner_up_s_spread_counts_too() -> None:
    rows = [noisy(3, "diag", 900.0, -1.0, spread=0.0), noisy(3, "full", 901.0, -1.0,
                                                             spread=0.002)]
    noise = decision_noise(rows, chosen=rows[0], criterion="aic", n_train=1000)
    assert noise["runner_up_restart_spread"] == 4.0
    assert noise["within_optimiser_noise"] is True
    # A tie-broken choice that the criterion ranks second: the gap is still its distance.
    noise = decision_noise(rows, chosen=rows[1], criterion="bic", n_train=1000)
    assert (noise["runner_up"], noise["gap"]) == ("k3_diag", 1.0)


@pytest.mark.parametrize("val_spread, within", [(0.02, True), (0.005, False)])
def test_val_ll_compares_validation_spreads(val_spread: float, within: bool) -> None:
    # A large training spread does not count: val_ll decides on validation bars.
    rows = [noisy(2, "diag", 900.0, -1.00, spread=1.0, val_spread=val_spread),
            noisy(5, "full", 900.0, -1.01, spread=1.0, val_spread=0.0)]
    noise = decision_noise(rows, chosen=rows[0], criterion="val_ll", n_train=1000)
    np.testing.assert_allclose(noise["gap"], 0.01, rtol=1e-9)
    assert noise["within_optimiser_noise"] is within
    assert noise["units"] == "nats per validation bar"


def test_no_runner_up_or_no_measured_spread_is_unknown() -> None:
    alone = [noisy(3, "diag", 900.0, -1.0, spread=0.01)]
    assert decision_noise(alone, chosen=alone[0], criterion="bic",
                          n_train=1000)["within_optimiser_noise"] is None
    unmeasured = [noisy(3, "diag", 900.0, -1.0, spread=float("nan")),
                  noisy(4, "diag", 900.5, -1.0, spread=float("nan")),
                  noisy(5, "diag", 800.0, -1.0, spread=0.1, val_spread=0.1) | {
                      "status": "pruned"}]
    noise = decision_noise(unmeasured, chosen=unmeasured[0], criterion="bic", n_train=1000)
    assert noise["runner_up"] == "k4_diag" and noise["within_optimiser_noise"] is None


def test_the_selection_flags_a_choice_inside_the_noise(tmp_path: Path, monkeypatch,
                                                       caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    # The grid's fits replaced by known scores: K=3 beats K=2 by 1.5 BIC, and K=3's
    # restarts ended 1 nat (2 BIC) apart; AIC's optimum is clear of its noise.
    bars = make_market(900, n_regimes=2, random_state=2)
    X, lengths, X_val, lengths_val = log_range_split(bars)
    n = len(X)
    scores = {2: (1001.5, 1100.0, -1.1, 0.0), 3: (1000.0, 1000.0, -1.0, 1.0 / n)}

    def fake(X, lengths, X_val, lengths_val, *, n_states, covariance_type, **_):
        bic, aic, val_ll, spread = scores[n_states]
        scored = {k: v for k, v in row(n_states, covariance_type, bic, val_ll, aic=aic).items()
                  if k != "status"}
        return {**scored, "restart_ari": 1.0, "n_iter": 5, "restart_ll_spread_per_bar": spread,
                "restart_val_ll_spread_per_bar": 0.0}

    monkeypatch.setattr("regimelab.selection.evaluate_candidate", fake)
    select = SelectParams(grid=GridParams(n_states=(2, 3), covariance_type=("diag",)),
                          criterion="bic", tie_tolerance=0.0, resamples=1, penalties=(5.0,))
    with caplog.at_level(logging.WARNING, logger="regimelab.selection"):
        result = run_selection(X, lengths, X_val, lengths_val, select=select,
                               hmm=HMMParams(n_init=2), seed=0,
                               storage=f"sqlite:///{tmp_path}/s.db", name="noise")
    assert result["choice"]["n_states"] == 3
    assert result["choice"]["within_optimiser_noise"] is True
    noise = result["optimiser_noise"]
    assert (noise["choice"]["chosen"], noise["choice"]["runner_up"]) == ("k3_diag", "k2_diag")
    np.testing.assert_allclose([noise["choice"]["gap"], noise["choice"]["restart_spread"]],
                               [1.5, 2.0], rtol=1e-9)
    assert noise["bic"]["within_optimiser_noise"] is True
    assert noise["aic"]["within_optimiser_noise"] is False  # 100 apart, 2 of noise
    assert noise["val_ll"]["within_optimiser_noise"] is False  # no validation spread
    assert [r.message for r in caplog.records if "WITHIN OPTIMISER NOISE" in r.message] == [
        "WITHIN OPTIMISER NOISE: BIC k3_diag over k2_diag by 1.5 BIC, less than the restarts' "
        "spread (2, 0): another seed may decide otherwise; more restarts (hmm.n_init, "
        "hmm.n_continue) narrow it"]
