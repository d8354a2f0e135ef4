"""The sequence forecasters (GRU, LSTM, Transformer): they learn what a window shows,
they never look past bar t, they save without pickle, and they refit to the same bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from safetensors.numpy import load_file

from regimelab.exceptions import ParamsError
from regimelab.forecast import tuning
from regimelab.forecast.folders import forecaster_inputs, load_forecaster, save_forecaster
from regimelab.forecast.inputs import regime_age
from regimelab.forecast.permutation import window_importance
from regimelab.forecast.run import Settings, run_task
from regimelab.forecast.sequence import (
    SEQUENCE_MODELS,
    WEIGHTS_FILE,
    SequenceClassifier,
    SequenceSettings,
    make_sequence,
    make_windows,
)
from regimelab.forecast.targets import ahead_index, run_ids, switch_within
from regimelab.forecast.tuning import (
    FLOOR_PARAM,
    SEQUENCE_START,
    Fold,
    fit_rows,
    floor_binds,
    suggest_params,
    thin,
)
from regimelab.params import ForecastParams
from regimelab.split import walk_forward_folds
from regimelab.synth import make_market

STEP = pd.Timedelta(1, unit="h")
LAG = 3


def _lagged(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``x`` (noise) and a label that is the sign of ``x`` three bars back: a
    window shows it; the label a bar earlier (persistence) says nothing of it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = np.r_[np.zeros(LAG, dtype=np.int64), (x[:-LAG, 0] > 0).astype(np.int64)]
    return x, y


def _fit(kind: str, x: np.ndarray, y: np.ndarray, seed: int = 0) -> SequenceClassifier:
    model = SequenceClassifier(kind, window=6, hidden=8, lr=2e-2, dropout=0.0,
                               max_epochs=12, patience=3, batch_size=64, random_state=seed)
    return model.fit(make_windows(x, np.zeros(len(x)), 6), y)


@pytest.mark.parametrize("kind", SEQUENCE_MODELS)
def test_a_sequence_model_learns_what_its_window_shows(kind: str) -> None:
    x, y = _lagged(1200, seed=0)
    model = _fit(kind, x[:800], y[:800])
    test = make_windows(x, np.zeros(len(x)), 6)[np.arange(800, 1200)]
    predicted = model.classes_[model.predict_proba(test).argmax(axis=1)]
    persistence = np.mean(y[799:1199] == y[800:1200])
    assert persistence < 0.6
    assert np.mean(predicted == y[800:1200]) > persistence + 0.25


def test_a_window_holds_its_bar_and_earlier_bars_of_its_run_only() -> None:
    x = np.arange(10, dtype=float)[:, None]
    windows = make_windows(x, np.array([0] * 6 + [1] * 4), 3)
    array = windows.array()[:, :, 0]
    assert_array_equal(array[0], [0, 0, 0])        # the run's first row repeated
    assert_array_equal(array[5], [3, 4, 5])
    assert_array_equal(array[6], [6, 6, 6])        # a new run: nothing from the last
    assert_array_equal(array[9], [7, 8, 9])


@pytest.mark.parametrize("kind", SEQUENCE_MODELS)
def test_no_forecast_changes_when_the_future_does(kind: str) -> None:
    x, y = _lagged(600, seed=1)
    model = _fit(kind, x[:400], y[:400])
    cut = 500
    later = x.copy()
    later[cut + 1:] = np.random.default_rng(9).normal(size=(len(x) - cut - 1, 2)) * 50
    runs = np.zeros(len(x))
    before = model.predict_proba(make_windows(x, runs, 6))
    after = model.predict_proba(make_windows(later, runs, 6))
    assert_array_equal(after[:cut + 1], before[:cut + 1])
    assert not np.array_equal(after[cut + 1:], before[cut + 1:])


@pytest.mark.parametrize("kind", SEQUENCE_MODELS)
def test_a_sequence_folder_has_no_pickle_refits_to_the_same_bytes_and_loads_back(
        kind: str, tmp_path: Path) -> None:
    x, y = _lagged(400, seed=2)
    manifest = {"inputs": ["a", "b"], "classes": [0, 1]}
    save_forecaster(_fit(kind, x, y), tmp_path / "a", manifest=manifest)
    save_forecaster(_fit(kind, x, y), tmp_path / "b", manifest=manifest)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["manifest.json",
                                                                  WEIGHTS_FILE]
    load_file(tmp_path / "a" / WEIGHTS_FILE)  # plain tensors, read without torch or pickle
    assert ((tmp_path / "a" / WEIGHTS_FILE).read_bytes()
            == (tmp_path / "b" / WEIGHTS_FILE).read_bytes())
    # Another seed gives other weights: the bytes above are equal for a reason.
    save_forecaster(_fit(kind, x, y, seed=1), tmp_path / "c", manifest=manifest)
    assert ((tmp_path / "c" / WEIGHTS_FILE).read_bytes()
            != (tmp_path / "a" / WEIGHTS_FILE).read_bytes())
    loaded, read = load_forecaster(tmp_path / "a")
    assert read["inputs"] == ["a", "b"]
    windows = forecaster_inputs(read, x)
    assert_array_equal(loaded.predict_proba(windows), _fit(kind, x, y).predict_proba(
        make_windows(x, np.zeros(len(x)), 6)))


def test_the_stage_tunes_and_scores_a_sequence_model_beside_the_baselines(
        tmp_path: Path) -> None:
    # Regimes that last 40 bars almost exactly: a window of the regime's age tells when
    # the next switch comes; persistence (the training switch rate) cannot.
    table = _switch_table(3000, horizon=10)
    pre = table["split"] == "train"
    folds = walk_forward_folds(table.loc[pre, "timestamp"], n_folds=2, embargo=STEP)
    settings = Settings(models=("persistence", "gru"), n_trials=1, n_estimators=10,
                        max_train_rows=None, storage=f"sqlite:///{tmp_path / 'study.db'}",
                        seed=0, importance_repeats=1,
                        sequence=SequenceSettings(window=4, max_epochs=8, patience=2,
                                                  batch_size=64, max_train_rows=1500))
    result = run_task(table, kind="switch", horizon=10,
                      inputs=["p_filter_0", "p_filter_1", "regime_age"], n_states=2,
                      transmat=np.full((2, 2), 0.5), folds=folds, settings=settings)
    scores = result.report["models"]
    assert scores["gru"]["roc_auc"] > 0.8
    assert result.report["tuning"]["gru"]["n_trials"] == 1
    assert result.report["tuning"]["gru"]["train_rows"] <= 1500
    assert isinstance(result.estimators["gru"], SequenceClassifier)
    # Only the regime's age tells when the next switch comes (both states last 40 bars).
    importance = result.report["importance"]["gru"]
    assert max(importance, key=importance.__getitem__) == "regime_age"
    assert importance["regime_age"] > 0.1
    assert list(result.importance.columns) == ["input", "gru"]


def test_the_input_a_window_needs_is_the_most_important() -> None:
    # The label is input 0's sign three bars back: shuffling input 0 across the rows
    # (so every window sees shuffled values at every position) destroys the signal,
    # shuffling input 1 (noise) does not.
    x, y = _lagged(1200, seed=3)
    model = _fit("gru", x[:800], y[:800])
    runs = np.zeros(400)
    rows = np.arange(10, 400)
    kwargs = {"window": 6, "classes": np.array([0, 1]), "columns": ["signal", "noise"],
              "scoring": "balanced_accuracy", "n_repeats": 2, "seed": 0}
    importance = window_importance(model, x[800:], runs, rows, y[800:][rows], **kwargs)
    assert importance["signal"] > 0.25
    assert abs(importance["noise"]) < 0.05
    assert window_importance(model, x[800:], runs, rows, y[800:][rows],
                             **kwargs) == importance


def test_windows_rebuilt_from_the_test_split_are_those_the_model_was_scored_on() -> None:
    # The importance rebuilds the test windows from the test split's rows alone; a
    # window never reaches into another run, so they equal the whole table's windows.
    n = 60
    table = pd.DataFrame({"split": np.repeat(["train", "val", "test"], n // 3),
                          "symbol": "SYN", "segment": np.repeat([0, 0, 1, 1, 2, 3], n // 6)})
    x = np.random.default_rng(0).normal(size=(n, 3))
    runs = run_ids(table)
    test = (table["split"] == "test").to_numpy()
    whole = make_windows(x, runs, 5)[np.flatnonzero(test)].array()
    assert_array_equal(make_windows(x[test], runs[test], 5).array(), whole)


def test_thinning_keeps_a_rare_class_and_the_prior_is_corrected_back() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(20_000) < 0.004).astype(np.int64)
    pool = np.arange(len(y))
    plain = thin(pool, 1000)
    kept = thin(pool, 1000, y, min_class_rows=30)
    assert np.count_nonzero(y) > 60
    assert np.count_nonzero(y[plain]) < 30 <= np.count_nonzero(y[kept])
    # A class with fewer rows than the floor keeps all of them.
    assert np.count_nonzero(y[thin(pool, 1000, y, min_class_rows=500)]) == np.count_nonzero(y)
    assert set(plain) <= set(kept) and np.all(np.diff(kept) > 0)
    assert len(kept) <= 1000 + 30
    assert_array_equal(thin(pool, 1000, y, min_class_rows=0), plain)
    # The fit on the rebalanced rows gives probabilities of the pool's class shares:
    # Bayes' rule with the priors swapped (p(c|x) scaled by pool share / fit share).
    windows = make_windows(rng.normal(size=(len(y), 2)), np.zeros(len(y)), 4)
    params = {"hidden": 8, "lr": 1e-2, "dropout": 0.0}
    settings = SequenceSettings(window=4, max_epochs=1)
    model, rows = fit_rows("gru", params, windows, y, pool, seed=0, max_rows=1000,
                           min_class_rows=30, sequence=settings)
    assert_array_equal(rows, kept)
    raw = make_sequence("gru", params, settings=settings, seed=0).fit(windows[rows], y[rows])
    some = windows[np.arange(0, len(y), 50)]
    ratio = np.array([np.mean(y == c) / np.mean(y[rows] == c) for c in (0, 1)])
    expected = raw.predict_proba(some) * ratio
    assert_allclose(model.predict_proba(some), expected / expected.sum(axis=1, keepdims=True),
                    rtol=1e-5, atol=1e-7)


def _switch_table(n: int, horizon: int = 1) -> pd.DataFrame:
    """Regimes of about 40 bars and a switch within the next ``horizon`` bars as the
    target (2.5% of bars at one bar): the first three quarters train, the rest test."""
    bars = make_market(n, n_regimes=2, dwell="gamma", mean_dwell=40.0, dwell_shape=400.0,
                       random_state=1)
    states = bars["regime"].to_numpy()
    table = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
                          "symbol": "SYN", "segment": 0,
                          "split": np.where(np.arange(n) < int(0.75 * n), "train", "test")})
    table.loc[table["split"] == "test", "segment"] = 1
    for k in range(2):
        table[f"p_filter_{k}"] = (states == k).astype(float)
    table["regime_age"] = regime_age(states, table["segment"].to_numpy()) / 40.0
    table[f"switch_h{horizon}"] = switch_within(states, table,
                                                ahead_index(table, horizon, STEP))
    table[f"target_time_h{horizon}"] = table["timestamp"] + horizon * STEP
    return table


def test_the_folds_choose_the_class_floor_and_the_refit_uses_it(tmp_path: Path) -> None:
    table = _switch_table(2000)
    pre = (table["split"] == "train").to_numpy()
    folds = walk_forward_folds(table.loc[pre, "timestamp"], n_folds=2, embargo=STEP)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    settings = Settings(models=("persistence", "gru"), n_trials=2, n_estimators=10,
                        max_train_rows=None, storage=storage, seed=0, importance_repeats=1,
                        sequence=SequenceSettings(window=4, max_epochs=2, patience=1,
                                                  batch_size=64, max_train_rows=200),
                        sequence_min_class_rows=40)

    def tuned() -> dict[str, object]:
        result = run_task(table, kind="switch", horizon=1, inputs=["p_filter_0", "regime_age"],
                          n_states=2, transmat=np.full((2, 2), 0.5), folds=folds,
                          settings=settings)
        return dict(result.report["tuning"]["gru"])

    report = tuned()
    study = optuna.load_study(study_name=str(report["study"]), storage=storage)
    trials = study.get_trials(deepcopy=False)
    # Both floors ran, at the same other parameters, and scored differently on the folds.
    assert [t.params[FLOOR_PARAM] for t in trials] == [0, 40]
    assert all({k: t.params[k] for k in SEQUENCE_START} == SEQUENCE_START for t in trials)
    losses = [t.value for t in trials]
    assert losses[0] != losses[1]
    best = int(np.argmin(losses))
    assert report["class_floor"] == [0, 40][best]
    assert report["fold_log_loss"] == losses[best]
    # The refit on train + val thinned with the chosen floor, not the other one.
    y_pre = table.loc[pre & table["switch_h1"].notna().to_numpy(), "switch_h1"].to_numpy()
    pool = np.arange(len(y_pre))
    rows = {floor: len(thin(pool, 200, y_pre.astype(np.int64), floor)) for floor in (0, 40)}
    assert rows[0] != rows[40]
    assert report["train_rows"] == rows[[0, 40][best]]
    # A rerun resumes the study: no trial enqueued or run again, the same choice.
    again = tuned()
    assert len(study.get_trials(deepcopy=False)) == 2
    assert again == report


@pytest.mark.parametrize("winner", [0, 40])
def test_the_refit_thins_with_the_floor_the_folds_scored_best(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, winner: int) -> None:
    # The fold score is replaced by one that prefers ``winner``: whichever floor wins on
    # the folds, the final fit thins train + val with it.
    def fold_score(*args: object, min_class_rows: int, **kwargs: object) -> float:
        return 0.5 if min_class_rows == winner else 1.0

    monkeypatch.setattr(tuning, "fit_score", fold_score)
    table = _switch_table(2000)
    pre = (table["split"] == "train").to_numpy()
    folds = walk_forward_folds(table.loc[pre, "timestamp"], n_folds=2, embargo=STEP)
    settings = Settings(models=("persistence", "gru"), n_trials=2, n_estimators=10,
                        max_train_rows=None, storage=f"sqlite:///{tmp_path / 'study.db'}",
                        seed=0, importance_repeats=1,
                        sequence=SequenceSettings(window=4, max_epochs=1, patience=1,
                                                  batch_size=64, max_train_rows=200),
                        sequence_min_class_rows=40)
    result = run_task(table, kind="switch", horizon=1, inputs=["p_filter_0", "regime_age"],
                      n_states=2, transmat=np.full((2, 2), 0.5), folds=folds,
                      settings=settings)
    report = result.report["tuning"]["gru"]
    y_pre = table.loc[pre & table["switch_h1"].notna().to_numpy(), "switch_h1"].to_numpy()
    rows = {floor: len(thin(np.arange(len(y_pre)), 200, y_pre.astype(np.int64), floor))
            for floor in (0, 40)}
    assert rows[0] != rows[40]
    assert (report["class_floor"], report["fold_log_loss"]) == (winner, 0.5)
    assert report["train_rows"] == rows[winner]


def test_the_floor_is_tried_only_where_it_changes_a_folds_rows() -> None:
    y = np.zeros(1000, dtype=np.int64)
    fold = Fold(train=np.arange(1000), val=np.arange(0))
    y[::100] = 1  # every 10th row is kept: all ten of class 1 are among them
    assert not floor_binds([fold], y, 100, 5)
    y[:] = 0
    y[5::100] = 1  # none of them is kept without the floor
    assert floor_binds([fold], y, 100, 5)
    assert not floor_binds([fold], y, 100, 0)
    assert not floor_binds([fold], y, None, 5)  # nothing thinned


def test_the_first_sequence_trials_start_inside_the_search_space() -> None:
    point = suggest_params(optuna.trial.FixedTrial(SEQUENCE_START), "gru", n_estimators=1)
    assert point == SEQUENCE_START
    defaults = SequenceClassifier("gru", window=4).get_params()
    assert {k: defaults[k] for k in SEQUENCE_START} == SEQUENCE_START


def test_bad_sequence_params_are_named() -> None:
    with pytest.raises(ParamsError, match="sequence_window"):
        ForecastParams(sequence_window=0)
    with pytest.raises(ParamsError, match="sequence_max_train_rows"):
        ForecastParams(sequence_max_train_rows=10)
    with pytest.raises(ParamsError, match="sequence_min_class_rows"):
        ForecastParams(sequence_min_class_rows=-1)
    assert set(SEQUENCE_MODELS) <= set(ForecastParams().models)
    assert ForecastParams(models=("persistence", "lstm")).models == ("persistence", "lstm")
