"""The forecast stage's models applied to new bars: ``regimelab forecast``, ``now`` and the
REST answer, on a small synthetic pipeline whose forecast stage has run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from regimelab.cli import main
from regimelab.data import ingest
from regimelab.families.jump.model import RegimeJump
from regimelab.forecast import folders
from regimelab.forecast.apply import (
    forecast_inputs,
    full_proba,
    last_inputs,
    learned_columns,
    load_forecaster,
)
from regimelab.forecast.baselines import markov_proba, markov_switch_proba
from regimelab.forecast.sequence import SEQUENCE_MODELS
from regimelab.forecast.targets import run_ids
from regimelab.inference import observations, regimes
from regimelab.io import read_json
from regimelab.models import load_model, read_manifest
from regimelab.serve import create_app
from regimelab.split import read_splits
from regimelab.store import PredictionStore
from regimelab.synth import make_market
from tests import core_install
from tests.stages.conftest import load_stage
from tests.stages.test_forecast_stage import FORECAST, jump_pipeline
from tests.test_serve import bars_json, call, running


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ingest → featurize → split → scale, a jump model saved as train-jump saves it, and
    the forecast stage on its regimes."""
    d = jump_pipeline(tmp_path_factory.mktemp("forecast_cli"),
                      models=[*FORECAST["models"], "gru"], sequence_window=6,
                      sequence_max_epochs=2, sequence_max_train_rows=300)
    load_stage("forecast").main([
        "--params", str(d / "params.yaml"), "--scaled", str(d / "scaled"),
        "--spec", str(d / "spec.json"), "--bars", str(d / "bars.parquet"),
        "--folds", str(d / "split/folds.json"), "--model", str(d / "models/jump"),
        "--labels", str(d / "labels.parquet"), "--models-out", str(d / "models/forecast"),
        "--study-dir", str(d / "study"), "--metrics", str(d / "forecast.json"),
        "--plots", str(d / "plots")])
    return d


def forecast(d: Path, bars: Path, out: Path, *extra: str) -> pd.DataFrame:
    assert main(["forecast", "--model", str(d / "models/jump"), "--forecast-model",
                 str(d / "models/forecast"), "--input", str(bars), "--output", str(out),
                 *extra]) == 0
    return pd.read_parquet(out)


def stage_proba(folder: Path, rows: pd.DataFrame) -> np.ndarray:
    """The stage's model in ``folder`` (loaded by the stage's own code) on the labelled
    ``rows``: a tree on each row, a sequence model on the windows the stage builds."""
    model, meta = folders.load_forecaster(folder)
    X = folders.forecaster_inputs(meta, rows[meta["inputs"]].to_numpy(), run_ids(rows))
    return np.asarray(model.predict_proba(X))


def test_forecast_on_the_training_bars_is_the_stages_models(pipeline: Path,
                                                            tmp_path: Path) -> None:
    """On the bars up to the end of the train split (which starts the series, so that the
    filter, the feature means, the regime age and the dating all start where the stage's
    did) every input row and forecast is the stage's: its headline learned model's
    predict_proba on its labelled rows (a tree's on each row, the GRU's on each row's
    window), and the chain's p_filter A^h."""
    d = pipeline
    labels = pd.read_parquet(d / "labels.parquet")
    train = labels.loc[labels["split"] == "train"].reset_index(drop=True)
    bars = pd.read_parquet(d / "bars.parquet")
    bars.loc[bars["timestamp"] <= train["timestamp"].iloc[-1]].to_parquet(tmp_path / "b.parquet")
    out = forecast(d, tmp_path / "b.parquet", tmp_path / "f.parquet", "--inputs")
    assert len(out) == len(train)
    pd.testing.assert_series_equal(out["timestamp"], train["timestamp"])
    inputs = read_json(d / "forecast.json")["inputs"]
    assert "regime_age" in inputs and "bull_bear_known" in inputs
    np.testing.assert_array_equal(out[[f"input_{c}" for c in inputs]].to_numpy(),
                                  train[inputs].to_numpy())
    headline = read_json(d / "models/forecast/headline.json")
    transmat = load_model(d / "models/jump").transmat_
    filtered = train[["p_filter_0", "p_filter_1"]].to_numpy()
    chosen = {task: block["learned"]["model"] for task, block in headline.items()}
    # The folds chose the GRU for one task on this market, trees for the others.
    assert "gru" in chosen.values() and set(chosen.values()) - {"gru"}, chosen
    for h in (1, 6):
        for kind, columns in (("state", [f"p_state_h{h}_0", f"p_state_h{h}_1"]),
                              ("switch", [f"p_switch_h{h}"]), ("bull_bear", [f"p_bull_h{h}"])):
            model = chosen[f"{kind}_h{h}"]
            assert set(out[f"model_{kind}_h{h}"]) == {model}
            expected = stage_proba(d / f"models/forecast/{kind}_h{h}/{model}", train)
            np.testing.assert_allclose(out[columns].to_numpy(), expected[:, -len(columns):],
                                       rtol=0, atol=1e-12)
        np.testing.assert_allclose(out[[f"p_markov_h{h}_0", f"p_markov_h{h}_1"]].to_numpy(),
                                   markov_proba(filtered, transmat, h), rtol=0, atol=1e-12)
        np.testing.assert_allclose(out[f"p_switch_markov_h{h}"],
                                   markov_switch_proba(filtered, transmat, h), rtol=0,
                                   atol=1e-12)


def test_now_and_the_rest_answer_carry_the_forecasts(pipeline: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    """``now`` and POST /regime give the last bar's chain and learned forecasts: those of
    ``regimelab forecast``'s last row when the lookback covers the input (a sequence
    model's to 1e-6: its float32 forward on one window and on a batch of them sum in
    another order)."""
    d = pipeline
    recent = make_market(300, n_regimes=2, random_state=8).assign(symbol="SYN")
    recent.to_parquet(tmp_path / "r.parquet")
    last = forecast(d, tmp_path / "r.parquet", tmp_path / "f.parquet").iloc[-1]
    assert main(["now", "--model", str(d / "models/jump"), "--forecast-model",
                 str(d / "models/forecast"), "--input", str(tmp_path / "r.parquet"),
                 "--lookback", "1000", "--json", "--no-store"]) == 0
    [answer] = json.loads(capsys.readouterr().out)
    with running(create_app(d / "models/jump", forecast_model=d / "models/forecast")) as url:
        status, served = call(f"{url}/regime", {"bars": bars_json(recent)})
    assert status == 200, served
    assert served["forecasts"] == answer["forecasts"]
    assert [f["horizon"] for f in answer["forecasts"]] == [1, 6]
    def tolerance(model: str) -> float:
        return 1e-6 if model in SEQUENCE_MODELS else 1e-9

    assert "gru" in {f["bull_model"] for f in answer["forecasts"]}
    for f in answer["forecasts"]:
        h = f["horizon"]
        np.testing.assert_allclose(f["markov"], last[[f"p_markov_h{h}_0", f"p_markov_h{h}_1"]]
                                   .astype(float), rtol=0, atol=1e-9)
        np.testing.assert_allclose(f["learned"], last[[f"p_state_h{h}_0", f"p_state_h{h}_1"]]
                                   .astype(float), rtol=0, atol=tolerance(f["learned_model"]))
        assert f["learned_model"] == last[f"model_state_h{h}"]
        assert f["switch"] == pytest.approx(last[f"p_switch_h{h}"],
                                            abs=tolerance(f["switch_model"]))
        assert f["bull_model"] == last[f"model_bull_bear_h{h}"]
        assert f["bull"] == pytest.approx(last[f"p_bull_h{h}"], abs=tolerance(f["bull_model"]))
    # Without a forecast model folder: the chain's forecasts alone.
    assert main(["now", "--model", str(d / "models/jump"), "--input",
                 str(tmp_path / "r.parquet"), "--lookback", "1000", "--json",
                 "--no-store"]) == 0
    [chain] = json.loads(capsys.readouterr().out)
    assert [set(f) for f in chain["forecasts"]] == [{"horizon", "markov", "markov_switch"}] * 2


def test_now_reads_what_the_service_reads_when_it_forecasts(
        pipeline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --lookback, ``now --forecast-model`` reads as many bars as the service (not
    500): the regime's age and the bull/bear dating start at the first bar read, so its
    learned forecasts are ``regimelab forecast``'s last row for an input of 1,200 bars."""
    from regimelab.cli import FORECAST_LOOKBACK, NOW_LOOKBACK
    from regimelab.serve_schema import MAX_BARS

    assert FORECAST_LOOKBACK == MAX_BARS and NOW_LOOKBACK < 1200
    d = pipeline
    recent = make_market(1200, n_regimes=2, random_state=9).assign(symbol="SYN")
    recent.to_parquet(tmp_path / "r.parquet")
    out = forecast(d, tmp_path / "r.parquet", tmp_path / "f.parquet")
    last = out.iloc[-1]
    args = ["now", "--model", str(d / "models/jump"), "--input", str(tmp_path / "r.parquet"),
            "--json", "--no-store"]
    assert main([*args, "--forecast-model", str(d / "models/forecast")]) == 0
    [answer] = json.loads(capsys.readouterr().out)
    # The filter read the last gap-free run whole, not its last 500 bars.
    assert answer["bars"] == int((out["segment"] == last["segment"]).sum()) > NOW_LOOKBACK
    for f in answer["forecasts"]:
        h = f["horizon"]
        np.testing.assert_allclose(f["learned"], last[[f"p_state_h{h}_0", f"p_state_h{h}_1"]]
                                   .astype(float), rtol=0, atol=1e-6)
        assert f["bull"] == pytest.approx(last[f"p_bull_h{h}"], abs=1e-6)
    # Without forecasters the filter reads the last 500 bars, as before.
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)[0]["bars"] == NOW_LOOKBACK


def test_now_and_the_service_store_their_forecasts(pipeline: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The prediction store keeps each answer's forecasts with its regime (to six
    decimals); ``regimelab history`` gives them back as JSON."""
    d = pipeline
    recent = make_market(300, n_regimes=2, random_state=8).assign(symbol="SYN")
    recent.to_parquet(tmp_path / "r.parquet")
    address = f"sqlite:///{tmp_path / 'p.db'}"
    assert main(["now", "--model", str(d / "models/jump"), "--forecast-model",
                 str(d / "models/forecast"), "--input", str(tmp_path / "r.parquet"),
                 "--lookback", "1000", "--json", "--store", address]) == 0
    [answer] = json.loads(capsys.readouterr().out)
    with running(create_app(d / "models/jump", store=PredictionStore(address),
                            forecast_model=d / "models/forecast")) as url:
        status, served = call(f"{url}/regime", {"bars": bars_json(recent)})
    assert status == 200, served
    assert main(["history", "--csv", "--store", address]) == 0
    stored = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(stored["source"]) == ["now", "serve"]
    for text in stored["forecasts"]:
        forecasts = json.loads(text)
        assert [f["horizon"] for f in forecasts] == [1, 6]
        assert "gru" in {f["bull_model"] for f in forecasts}
        for got, made in zip(forecasts, answer["forecasts"], strict=True):
            assert got.keys() == made.keys()
            for key, value in made.items():
                if isinstance(value, str | int):
                    assert got[key] == value
                else:
                    np.testing.assert_allclose(got[key], value, rtol=0, atol=5e-7)


def test_the_last_bars_inputs_on_arrays_are_the_batch_inputs_to_the_bit(
        pipeline: Path, tmp_path: Path) -> None:
    """``now`` and the service build the inputs of a run's last bars on arrays
    (:func:`last_inputs`); they are :func:`forecast_inputs`' rows for those bars, every
    bit, on a market whose gap starts a second run (the means, the regime's age and the
    windows restart there), and the forecasts from them are the same numbers."""
    d = pipeline
    make_market(700, n_regimes=2, n_gaps=1, random_state=3).assign(symbol="SYN").to_parquet(
        tmp_path / "r.parquet")
    bars = ingest(str(tmp_path / "r.parquet")).bars
    manifest, model = read_manifest(d / "models/jump"), load_model(d / "models/jump")
    columns = manifest["feature_spec"]["columns"]
    table = observations(bars, manifest)
    regime_rows = regimes(model, table, manifest["features"])
    forecaster = load_forecaster(d / "models/forecast")
    full = forecast_inputs(regime_rows, table, bars, columns=columns, n_states=2,
                           labeller=forecaster.labeller).to_numpy()
    run = np.flatnonzero(regime_rows["segment"] == regime_rows["segment"].iloc[-1])
    assert 0 < run[0] and len(run) > forecaster.history  # the last of two runs
    filtered = regime_rows.loc[run, ["p_filter_0", "p_filter_1"]].to_numpy()
    at = np.searchsorted(bars["timestamp"], regime_rows["timestamp"].iloc[run])
    for rows in (1, forecaster.history, len(run) + 5):
        got = last_inputs(filtered, {c: table[c].to_numpy()[run] for c in columns},
                          bars["close"].to_numpy(), columns=columns,
                          labeller=forecaster.labeller, rows=rows, at=at)
        np.testing.assert_array_equal(got, full[run][-rows:])
    history = last_inputs(filtered, {c: table[c].to_numpy()[run] for c in columns},
                          bars["close"].to_numpy(), columns=columns,
                          labeller=forecaster.labeller, rows=forecaster.history, at=at)
    last = learned_columns(forecaster, history, rows=1)
    batch = learned_columns(forecaster, full[run], rows=1)
    assert last.keys() == batch.keys()
    for key, value in last.items():
        np.testing.assert_array_equal(value, batch[key])


@pytest.mark.parametrize("case", ["no_folder", "not_a_forecast_folder", "other_regimes"])
def test_a_bad_forecast_model_is_one_line_and_exit_2(pipeline: Path, tmp_path: Path,
                                                     case: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    d = pipeline
    folder = {"no_folder": tmp_path / "missing", "not_a_forecast_folder": d / "models",
              "other_regimes": d / "models/forecast"}[case]
    model = d / "models/jump"
    if case == "other_regimes":
        other = RegimeJump(2, jump_penalty=5.0, n_init=1, random_state=1)
        train = read_splits(d / "scaled")["train"]
        columns = read_json(d / "spec.json")["columns"]
        other.fit(train[columns].to_numpy(), np.array([len(train)]), feature_names=columns)
        model = tmp_path / "other"
        other.save(model, manifest=read_json(d / "models/jump/manifest.json"))
    assert main(["forecast", "--model", str(model), "--forecast-model", str(folder),
                 "--input", str(d / "bars.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("error:") and "--forecast-model" in err[0]


CORE_FORECAST = """
import json, sys
from pathlib import Path

from regimelab.cli import main

d, out = map(Path, sys.argv[1:3])
common = ["--model", str(d / "models/jump"), "--forecast-model", str(d / "models/forecast"),
          "--input", str(d / "bars.parquet")]
assert main(["forecast", *common, "--output", str(out / "core.parquet")]) == 0
assert main(["now", *common, "--json", "--no-store"]) == 0
print(json.dumps(sorted(m for m in sys.modules if m.partition(".")[0] in
                        ("lightning", "optuna", "dvc", "dvclive", "matplotlib", "arch"))))
"""


def test_a_core_install_forecasts_as_a_full_one(pipeline: Path, tmp_path: Path) -> None:
    """skops, scikit-learn, torch and safetensors are core: the forecasters, trees and the
    GRU alike, load and give the same numbers without the pipeline extra (Optuna,
    Lightning, ...), which is never imported."""
    (tmp_path / "core.py").write_text(CORE_FORECAST)
    proc = subprocess.run([sys.executable, str(core_install.SCRIPT), str(tmp_path / "core.py"),
                           str(pipeline), str(tmp_path)], capture_output=True, text=True,
                          check=False, env=core_install.environment())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    core = pd.read_parquet(tmp_path / "core.parquet")
    assert set(core["model_bull_bear_h6"]) == {"gru"}
    pd.testing.assert_frame_equal(core, forecast(pipeline, pipeline / "bars.parquet",
                                                 tmp_path / "full.parquet"))


def test_a_forests_probabilities_are_scikit_learns() -> None:
    """The forest's probabilities, summed tree by tree without joblib, are predict_proba's
    to the bit, with a class the forest never saw as a zero column."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(400, 5)), rng.integers(0, 3, 400)
    y[y == 1] = 2  # classes 0 and 2 seen, 1 never
    forest = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0).fit(X, y)
    test = rng.normal(size=(50, 5))
    proba = full_proba(forest, test, np.array([0, 1, 2]))
    np.testing.assert_array_equal(proba[:, [0, 2]], forest.predict_proba(test))
    assert not proba[:, 1].any()


def test_each_task_applies_its_headline_learned_model() -> None:
    """A GRU chosen on the folds is applied, as a tree is; the best tree on the folds only
    where the chosen model's folder is missing, never an arbitrary one."""
    from regimelab.forecast.apply import _chosen

    headline = {"state_h24": {"learned": {"model": "gru"},
                              "tree": {"model": "random_forest"}}}
    saved = ["gru", "hist_gradient_boosting", "random_forest"]
    assert _chosen(headline, "state_h24", saved) == "gru"
    assert _chosen(headline, "state_h24", saved[1:]) == "random_forest"
    headline["state_h24"]["learned"] = {"model": "hist_gradient_boosting"}
    assert _chosen(headline, "state_h24", saved) == "hist_gradient_boosting"
    assert _chosen({}, "state_h24", saved) is None
