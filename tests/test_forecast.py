"""The forecasting layer: dating, targets, causal inputs, walk-forward folds, tuning,
pickle-free model folders, on synthetic markets with a known truth."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal
from sklearn.ensemble import HistGradientBoostingClassifier

from regimelab.exceptions import ParamsError
from regimelab.families.jump.model import RegimeJump
from regimelab.forecast.baselines import markov_proba, markov_switch_proba
from regimelab.forecast.dataset import label_dataset
from regimelab.forecast.inputs import input_columns, regime_age
from regimelab.forecast.labels import (
    BEAR,
    BULL,
    UNKNOWN,
    date_bull_bear,
    hindsight_regimes,
    read_labelled_params,
    write_labelled,
)
from regimelab.forecast.run import Settings, run_task
from regimelab.forecast.targets import ahead_index, switch_within
from regimelab.forecast.trees import load_estimator, save_estimator
from regimelab.forecast.tuning import fold_rows
from regimelab.split import walk_forward_folds
from regimelab.synth import make_market

STEP = pd.Timedelta(1, unit="h")


# --- labels -------------------------------------------------------------------------------

def test_the_dating_matches_a_hand_worked_price_path() -> None:
    # Up 15% from 100 to 115 (peak, bar 2: not yet a bull); 90 at bar 4 is -22% from the
    # peak, which confirms a bear from bar 3 and bars 0-2 as bull. 120 at bar 6 is +33% from
    # the trough of 90: bars 3-4 bear, a bull from bar 5; peak 130 (bar 7); 100 is -23%:
    # a bear from bar 8 to the end.
    close = np.array([100, 110, 115, 100, 90, 95, 120, 130, 100], dtype=float)
    dating = date_bull_bear(close, bull_threshold=0.2, bear_threshold=0.2)
    assert_array_equal(dating.labels, [BULL, BULL, BULL, BEAR, BEAR, BULL, BULL, BULL, BEAR])
    # As known at each close: nothing until bar 4 confirms the bear, bar 6 the bull, bar 8
    # the bear again.
    assert_array_equal(dating.known, [UNKNOWN] * 4 + [BEAR, BEAR, BULL, BULL, BEAR])
    # The causal distance from the running trough (bear) or peak (bull): 95 is 5.6% above
    # the trough of 90; 130 is the bull's new peak.
    np.testing.assert_allclose(dating.move, [0, 0, 0, 0, 0, np.log(95 / 90), 0, 0, 0],
                               rtol=0, atol=1e-12)


def test_the_dating_uses_its_thresholds() -> None:
    close = np.array([100, 110, 115, 100, 90, 95, 120, 130, 100], dtype=float)
    loose = date_bull_bear(close, bull_threshold=0.5, bear_threshold=0.3)
    assert_array_equal(loose.labels, [UNKNOWN] * 9)  # no 30% fall, no 50% rise
    with pytest.raises(ParamsError, match="forecast.bear_threshold"):
        date_bull_bear(close, bull_threshold=0.2, bear_threshold=1.5)


def test_a_labelled_dataset_carries_its_labellers_params(tmp_path: Path) -> None:
    table = pd.DataFrame({"state": [0, 1], "x": [0.5, 1.5]})
    write_labelled(table, tmp_path / "labels.parquet", params={"bear_threshold": 0.2})
    assert read_labelled_params(tmp_path / "labels.parquet") == {"bear_threshold": 0.2}
    assert pd.read_parquet(tmp_path / "labels.parquet").equals(table)


# --- targets -------------------------------------------------------------------------------

def _table(n: int, *, split: str = "train", segment: np.ndarray | None = None) -> pd.DataFrame:
    return pd.DataFrame({
        "timestamp": pd.date_range("2021-01-01", periods=n, freq="h", tz="UTC"),
        "symbol": "SYN", "split": split,
        "segment": np.zeros(n, dtype=np.int64) if segment is None else segment})


def test_targets_look_h_bars_ahead_inside_a_segment() -> None:
    table = _table(8, segment=np.array([0, 0, 0, 0, 0, 1, 1, 1]))
    ahead = ahead_index(table, 2, STEP)
    assert_array_equal(ahead, [2, 3, 4, -1, -1, 7, -1, -1])
    states = np.array([0, 0, 1, 1, 1, 0, 0, 0])
    switch = switch_within(states, table, ahead)
    assert_array_equal(switch[[0, 1, 2, 5]], [1.0, 1.0, 0.0, 0.0])
    assert np.isnan(switch[[3, 4, 6, 7]]).all()


def test_regime_age_counts_bars_since_the_last_switch() -> None:
    live = np.array([0, 0, 0, 1, 1, 0, 0, 0])
    runs = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    assert_array_equal(regime_age(live, runs), [0, 1, 2, 0, 1, 0, 0, 1])


def test_the_markov_chain_propagates_the_filter() -> None:
    A = np.array([[0.9, 0.1], [0.2, 0.8]])
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    np.testing.assert_allclose(markov_proba(p, A, 2), p @ A @ A, rtol=1e-12, atol=0)
    np.testing.assert_allclose(markov_switch_proba(p, A, 2),
                               [1 - 0.81, 1 - 0.5 * 0.81 - 0.5 * 0.64], rtol=1e-12, atol=0)


# --- causal inputs -------------------------------------------------------------------------

def _frames(bars: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One scaled feature (the bar's log range, standardised by fixed numbers), split at
    bars 900 and 1200: appended bars all go to test."""
    x = np.log(bars["high"] / bars["low"]).to_numpy()
    frame = pd.DataFrame({"timestamp": bars["timestamp"].array, "symbol": bars["symbol"].array,
                          "segment": np.zeros(len(bars), dtype=np.int64),
                          "log_range_1h": (x - 0.01) / 0.01})
    cuts = [0, 900, 1200, len(frame)]
    return {name: frame.iloc[a:b].reset_index(drop=True)
            for name, a, b in zip(("train", "val", "test"), cuts[:-1], cuts[1:], strict=True)}


@pytest.fixture(scope="module")
def jump_market() -> tuple[pd.DataFrame, RegimeJump]:
    bars = make_market(1500, n_regimes=2, random_state=3)
    frames = _frames(bars)
    X = frames["train"][["log_range_1h"]].to_numpy()
    model = RegimeJump(2, jump_penalty=20.0, n_init=3, random_state=0)
    model.fit(X, np.array([len(X)]), feature_names=["log_range_1h"])
    return bars, model


def _dataset(bars: pd.DataFrame, model: RegimeJump) -> pd.DataFrame:
    frames = _frames(bars)
    return label_dataset(hindsight_regimes(model, frames, ["log_range_1h"]),
                         pd.concat(frames.values(), ignore_index=True), bars,
                         columns=["log_range_1h"], n_states=2, horizons=[1, 24],
                         windows=[24], step=STEP, bull_threshold=0.1, bear_threshold=0.1)


def test_no_input_changes_when_the_future_does(jump_market: tuple[pd.DataFrame, RegimeJump]
                                               ) -> None:
    bars, model = jump_market
    before = _dataset(bars, model)
    # Alter every bar from `cut` on (a crash and a rally), and append 50 bars.
    cut = len(bars) - 200
    later = make_market(250, n_regimes=2, random_state=99, start_price=50.0)
    later["timestamp"] = bars["timestamp"].iloc[cut] + STEP * np.arange(250)
    later["symbol"] = bars["symbol"].iloc[0]
    changed = pd.concat([bars.iloc[:cut], later], ignore_index=True)
    after = _dataset(changed, model)
    inputs = input_columns(["log_range_1h"], 2, [24])
    assert_array_equal(after[inputs].to_numpy()[:cut], before[inputs].to_numpy()[:cut])
    assert not np.array_equal(after[inputs].to_numpy()[cut:len(bars)],
                              before[inputs].to_numpy()[cut:])
    # The hindsight labels of earlier bars may change: they are targets, never inputs.
    assert not np.array_equal(after["bull_bear"].to_numpy()[:cut],
                              before["bull_bear"].to_numpy()[:cut])


# --- walk-forward folds --------------------------------------------------------------------

def test_walk_forward_folds_never_train_on_a_bar_they_score() -> None:
    ts = pd.Series(pd.date_range("2021-01-01", periods=3000, freq="h", tz="UTC"))
    folds = walk_forward_folds(ts, n_folds=4, embargo=5 * STEP)
    h = 24
    times = ts.to_numpy(dtype="datetime64[ns]")
    target_times = times + np.timedelta64(h, "h")
    sets = fold_rows(times, target_times, folds)
    assert len(sets) == 4
    for fold, rows in zip(folds, sets, strict=True):
        assert len(rows.train) and len(rows.val)
        assert not set(rows.train) & set(rows.val)
        # Neither a training bar nor the bar its target looks at lies in the scored chunk.
        assert target_times[rows.train].max() < times[rows.val].min()
        # The bars whose targets reach into the chunk were purged, not kept.
        inside = times <= np.datetime64(pd.Timestamp(fold["train_end"]).tz_localize(None))
        assert inside.sum() > len(rows.train)


# --- a semi-Markov market: the regime's age beats the Markov chain -------------------------

def _semi_markov_table(n: int, seed: int) -> pd.DataFrame:
    """Regimes that last 40 bars almost exactly (gamma dwell, shape 400), filtered
    perfectly: a Markov chain sees the same switch risk on every bar; the age does not."""
    bars = make_market(n, n_regimes=2, dwell="gamma", mean_dwell=40.0, dwell_shape=400.0,
                       random_state=seed)
    states = bars["regime"].to_numpy()
    table = _table(n)
    table["split"] = np.where(np.arange(n) < int(0.75 * n), "train", "test")
    table.loc[table["split"] == "test", "segment"] = 1
    for k in range(2):
        table[f"p_filter_{k}"] = (states == k).astype(float)
    runs = table["segment"].to_numpy()
    table["regime_age"] = regime_age(states, runs)
    h = 10
    table[f"switch_h{h}"] = switch_within(states, table, ahead_index(table, h, STEP))
    table[f"target_time_h{h}"] = table["timestamp"] + h * STEP
    return table


def test_regime_age_beats_the_markov_chain_on_a_semi_markov_market(tmp_path: Path) -> None:
    table = _semi_markov_table(4000, seed=1)
    states = table["p_filter_1"].to_numpy().astype(int)
    counts = np.zeros((2, 2))
    np.add.at(counts, (states[:-1], states[1:]), 1)
    transmat = counts / counts.sum(axis=1, keepdims=True)
    pre = table["split"] == "train"
    folds = walk_forward_folds(table.loc[pre, "timestamp"], n_folds=2, embargo=STEP)
    settings = Settings(models=("persistence", "markov", "hist_gradient_boosting"), n_trials=1,
                        n_estimators=30, max_train_rows=None,
                        storage=f"sqlite:///{tmp_path / 'study.db'}", seed=0,
                        importance_repeats=1)
    result = run_task(table, kind="switch", horizon=10,
                      inputs=["p_filter_0", "p_filter_1", "regime_age"], n_states=2,
                      transmat=transmat, folds=folds, settings=settings)
    scores = result.report["models"]
    assert scores["markov"]["roc_auc"] < 0.6
    assert scores["hist_gradient_boosting"]["roc_auc"] > scores["markov"]["roc_auc"] + 0.3
    assert result.report["importance"]["hist_gradient_boosting"]["regime_age"] > 0.1
    assert result.report["tuning"]["hist_gradient_boosting"]["n_trials"] == 1
    with pytest.raises(ParamsError, match="split.folds"):
        run_task(table, kind="switch", horizon=10, inputs=["regime_age"], n_states=2,
                 transmat=transmat, folds=[], settings=settings)
    # The study is resumable: a second run finds its trial and runs none.
    again = run_task(table, kind="switch", horizon=10,
                     inputs=["p_filter_0", "p_filter_1", "regime_age"], n_states=2,
                     transmat=transmat, folds=folds, settings=settings)
    assert again.report == result.report


# --- model folders -------------------------------------------------------------------------

def test_a_model_folder_has_no_pickle_and_loads_to_the_same_predictions(tmp_path: Path
                                                                        ) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=300) > 0).astype(int)

    def fitted() -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, y)

    save_estimator(fitted(), tmp_path / "a", manifest={"inputs": ["x0", "x1", "x2"]})
    save_estimator(fitted(), tmp_path / "b", manifest={"inputs": ["x0", "x1", "x2"]})
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["manifest.json",
                                                                  "model.skops"]
    with zipfile.ZipFile(tmp_path / "a" / "model.skops") as zf:
        for name in zf.namelist():
            assert name == "schema.json" or name.endswith(".npy")
            if name.endswith(".npy"):
                with zf.open(name) as fh:
                    np.load(fh, allow_pickle=False)  # raises on an object (pickled) array
    # Two fits of the same model give the same bytes.
    assert ((tmp_path / "a" / "model.skops").read_bytes()
            == (tmp_path / "b" / "model.skops").read_bytes())
    loaded, manifest = load_estimator(tmp_path / "a")
    assert manifest["inputs"] == ["x0", "x1", "x2"]
    assert_array_equal(loaded.predict_proba(X), fitted().predict_proba(X))
