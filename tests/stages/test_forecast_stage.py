"""The forecast stage's main() on a small synthetic pipeline: outputs, reruns, bad params."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from regimelab.families.base import manifest
from regimelab.families.jump.model import RegimeJump
from regimelab.forecast.labels import read_labelled_params
from regimelab.io import read_json, sha256_file
from regimelab.split import read_splits
from regimelab.stage import EXIT_USER_ERROR, run
from regimelab.synth import make_market, write_market
from tests.stages.conftest import load_stage, run_data_stages

FORECAST = {"horizons": [1, 6], "n_trials": 1, "n_estimators": 10, "max_train_rows": 500,
            "importance_repeats": 1, "bull_threshold": 0.05, "bear_threshold": 0.05,
            "models": ["persistence", "markov", "random_forest", "hist_gradient_boosting"]}


def write_params(d: Path, **forecast: object) -> None:
    params = {"ingest": {"path": str(d / "m.csv")}, "features": {"window": 10},
              "split": {"folds": 3}, "forecast": {**FORECAST, **forecast}}
    (d / "params.yaml").write_text(yaml.safe_dump(params))


def jump_pipeline(d: Path, **forecast: object) -> Path:
    """ingest → featurize → split → scale on a synthetic market in ``d`` (the forecast
    params overridden by ``forecast``), and a jump model fitted on the train split and
    saved as train-jump saves it (models/jump)."""
    write_market(make_market(2400, n_regimes=2, n_gaps=1, random_state=5), d / "m.csv")
    write_params(d, **forecast)
    load_stage("ingest").main(["--params", str(d / "params.yaml"),
                               "--bars", str(d / "bars.parquet"),
                               "--gaps", str(d / "gaps.csv"), "--metrics", str(d / "ingest.json")])
    run_data_stages(d)
    spec = read_json(d / "spec.json")
    train = read_splits(d / "scaled")["train"]
    model = RegimeJump(2, jump_penalty=10.0, n_init=2, random_state=0)
    lengths = train.groupby("segment", sort=False).size().to_numpy()
    model.fit(train[spec["columns"]].to_numpy(), lengths, feature_names=spec["columns"])
    model.save(d / "models/jump", manifest=manifest(
        spec=spec, scaler=read_json(d / "scaled/scaler.json"),
        train_sha256=sha256_file(d / "scaled/train.parquet"), resolved={"n_states": 2},
        seed=0, libraries=[]))
    return d


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data stages and a jump model (:func:`jump_pipeline`)."""
    return jump_pipeline(tmp_path_factory.mktemp("forecast"))


def args(d: Path, out: Path) -> list[str]:
    return ["--params", str(d / "params.yaml"), "--scaled", str(d / "scaled"),
            "--spec", str(d / "spec.json"), "--bars", str(d / "bars.parquet"),
            "--folds", str(d / "split/folds.json"), "--model", str(d / "models/jump"),
            "--labels", str(out / "labels.parquet"), "--models-out", str(out / "models"),
            "--study-dir", str(out / "study"), "--metrics", str(out / "forecast.json"),
            "--plots", str(out / "plots")]


def outputs(out: Path) -> dict[str, bytes]:
    files = [out / "labels.parquet", out / "forecast.json",
             *sorted((out / "models").rglob("*")), *sorted((out / "plots").rglob("*"))]
    return {str(p.relative_to(out)): p.read_bytes() for p in files if p.is_file()}


def test_forecast_writes_every_output_and_reruns_byte_identical(pipeline: Path,
                                                                tmp_path: Path) -> None:
    stage = load_stage("forecast")
    stage.main(args(pipeline, tmp_path / "a"))
    metrics = json.loads((tmp_path / "a/forecast.json").read_text())
    for task in ("state_h1", "state_h6", "switch_h6", "bull_bear_h6"):
        assert set(metrics[task]["models"]) >= {"persistence", "random_forest",
                                                "hist_gradient_boosting"}
    assert "markov" in metrics["state_h6"]["models"]
    assert "markov" not in metrics["bull_bear_h6"]["models"]
    assert {"roc_auc", "log_loss", "brier"} <= set(metrics["switch_h6"]["models"]["markov"])
    assert read_labelled_params(tmp_path / "a/labels.parquet")["bear_threshold"] == 0.05
    for name in ("state_h6/random_forest/model.skops", "best_params.json",
                 "switch_h1/hist_gradient_boosting/manifest.json"):
        assert (tmp_path / "a/models" / name).is_file()
    for name in ("confusion/state_h6/persistence.csv", "confusion/state_h6/learned.csv",
                 "reliability/switch_h6.csv", "importance/bull_bear_h6.csv"):
        assert (tmp_path / "a/plots" / name).is_file()
    # Confusion rows of persistence and the learned headline model only, per task.
    assert sorted(p.name for p in (tmp_path / "a/plots/confusion/switch_h1").iterdir()) == [
        "learned.csv", "persistence.csv"]
    assert not any(p.suffix in (".pkl", ".pickle", ".joblib")
                   for p in (tmp_path / "a/models").rglob("*"))
    stage.main(args(pipeline, tmp_path / "b"))
    first, second = outputs(tmp_path / "a"), outputs(tmp_path / "b")
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    assert np.isfinite(metrics["state_h6"]["models"]["random_forest"]["log_loss"])


def test_a_bad_forecast_param_is_one_line_and_exit_2(pipeline: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    params = yaml.safe_load((pipeline / "params.yaml").read_text())
    params["forecast"]["targets"] = ["state", "regime"]
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    argv = args(pipeline, tmp_path / "out")
    argv[1] = str(d / "params.yaml")
    assert run(load_stage("forecast").main, argv) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and "forecast.targets" in err[0]


def test_a_sequence_forecaster_is_saved_without_pickle_and_reruns_byte_identical(
        pipeline: Path, tmp_path: Path) -> None:
    d = tmp_path / "seq"
    d.mkdir()
    params = yaml.safe_load((pipeline / "params.yaml").read_text())
    params["forecast"].update({"models": ["persistence", "gru"], "targets": ["switch"],
                               "horizons": [6], "sequence_window": 4,
                               "sequence_max_epochs": 2, "sequence_max_train_rows": 300})
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    stage = load_stage("forecast")
    for run_name in ("a", "b"):
        argv = args(pipeline, tmp_path / run_name)
        argv[1] = str(d / "params.yaml")
        stage.main(argv)
    folder = tmp_path / "a/models/switch_h6/gru"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json",
                                                         "weights.safetensors"]
    assert read_json(folder / "manifest.json")["settings"]["window"] == 4
    first, second = outputs(tmp_path / "a"), outputs(tmp_path / "b")
    assert [k for k in first if first[k] != second.get(k)] == []
    metrics = json.loads((tmp_path / "a/forecast.json").read_text())
    assert metrics["switch_h6"]["tuning"]["gru"]["n_trials"] == 1
    assert set(metrics["switch_h6"]["importance"]["gru"]) == set(metrics["inputs"])
    assert "gru" in (tmp_path / "a/plots/importance/switch_h6.csv").read_text().splitlines()[0]
