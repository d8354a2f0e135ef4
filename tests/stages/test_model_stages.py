"""select-states and train-hmm: each stage's main() after the data stages, on a tmp folder."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import multivariate_normal

from regimelab.synth import make_market, write_market
from tests.stages.conftest import load_stage, run_data_stages

STAGES = Path(__file__).resolve().parents[2] / "stages"
Stage = Callable[[str], ModuleType]

PARAMS = {
    "features": {"window": 10},
    "split": {"folds": 0},
    "model": {"n_states": "auto", "covariance_type": "auto", "seed": 0},
    "select": {"grid": {"n_states": [2, 3, 4], "covariance_type": ["diag"]}, "n_jobs": 2,
               "resamples": 1, "penalties": [1, 5, 20]},
    "hmm": {"n_init": 2},
    "dssm": {"hidden": 8, "window": 64, "stride": 48, "burn_in": 8, "batch_size": 8,
             "max_epochs": 2},
    "jump": {"n_init": 4},
}
# What select-states and train-hmm write, relative to the work folder.
OUTPUTS = ["metrics/select_states.json", "plots/select_states/bic.csv",
           "plots/select_states/scan.csv", "plots/select_states/persistence.csv",
           "plots/select_states/aic.csv", "plots/select_states/val_ll.csv",
           "models/hmm/params.npz", "models/hmm/manifest.json", "data/regimes/hmm.parquet",
           "metrics/train_hmm.json", "plots/train_hmm/loglik.csv",
           "models/dssm/weights.safetensors", "models/dssm/manifest.json",
           "data/regimes/dssm.parquet", "metrics/train_dssm.json",
           "models/jump/params.npz", "models/jump/manifest.json", "data/regimes/jump.parquet",
           "metrics/train_jump.json",
           "plots/train_dssm/plots/metrics/train/loss.tsv",
           "plots/train_dssm/plots/metrics/val/loss.tsv", "metrics/evaluate.json",
           "plots/diagnose/hmm_transmat.png", "plots/diagnose/dssm_regimes.png",
           "plots/diagnose/hmm_pairs.csv", "reports/diagnostics.csv", "metrics/monitor.json"]
FIGURES = ["transmat", "regimes", "regimes_zoom", "posteriors_zoom", "dwell", "feature_means",
           "importance"]


def write_params(d: Path, **changes: dict) -> None:
    params = {**PARAMS, "ingest": {"path": str(d / "m.csv")}}
    for section, values in changes.items():
        params[section] = {**params[section], **values}
    (d / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ingest → featurize → split → scale on a 3-regime market with two outages."""
    d = tmp_path_factory.mktemp("pipeline")
    write_market(make_market(2400, n_regimes=3, n_gaps=2, random_state=5), d / "m.csv")
    write_params(d)
    p = ["--params", str(d / "params.yaml")]
    load_stage("ingest").main([*p, "--bars", str(d / "bars.parquet"),
                               "--gaps", str(d / "gaps.csv"), "--metrics", str(d / "ingest.json")])
    run_data_stages(d)
    return d


def model_args(d: Path, out: Path) -> tuple[list[str], ...]:
    """The command lines dvc.yaml gives select-states, train-hmm, train-dssm, evaluate,
    diagnose and monitor, outputs under ``out``."""
    common = ["--params", str(d / "params.yaml"), "--scaled", str(d / "scaled"),
              "--spec", str(d / "spec.json")]
    select = [*common, "--study-dir", str(out / "data/select"),
              "--metrics", str(out / "metrics/select_states.json"),
              "--plots", str(out / "plots/select_states")]
    bars = ["--bars", str(d / "bars.parquet")]
    train = [*common, *bars, "--selection", str(out / "metrics/select_states.json"),
             "--model", str(out / "models/hmm"), "--regimes", str(out / "data/regimes/hmm.parquet"),
             "--metrics", str(out / "metrics/train_hmm.json"),
             "--history", str(out / "plots/train_hmm/loglik.csv")]
    dssm = [*common, *bars, "--selection", str(out / "metrics/select_states.json"),
            "--hmm", str(out / "models/hmm"),
            "--hmm-regimes", str(out / "data/regimes/hmm.parquet"),
            "--model", str(out / "models/dssm"),
            "--regimes", str(out / "data/regimes/dssm.parquet"),
            "--metrics", str(out / "metrics/train_dssm.json"),
            "--curves", str(out / "plots/train_dssm")]
    jump = [*common, *bars, "--selection", str(out / "metrics/select_states.json"),
            "--model", str(out / "models/jump"),
            "--regimes", str(out / "data/regimes/jump.parquet"),
            "--metrics", str(out / "metrics/train_jump.json")]
    models = ["--model", "hmm", str(out / "models/hmm"), str(out / "data/regimes/hmm.parquet"),
              "--model", "dssm", str(out / "models/dssm"),
              str(out / "data/regimes/dssm.parquet"),
              "--model", "jump", str(out / "models/jump"),
              str(out / "data/regimes/jump.parquet")]
    evaluate = [*common, *bars, "--features", str(d / "features.parquet"), *models,
                "--metrics", str(out / "metrics/evaluate.json")]
    diagnose = [*common, *bars, "--selection", str(out / "metrics/select_states.json"), *models,
                "--plots", str(out / "plots/diagnose"),
                "--report", str(out / "reports/diagnostics.csv")]
    monitor = ["--scaled", str(d / "scaled"), "--model", "hmm", str(out / "models/hmm"),
               "--model", "dssm", str(out / "models/dssm"),
               "--model", "jump", str(out / "models/jump"),
               "--metrics", str(out / "metrics/monitor.json")]
    return select, train, dssm, jump, evaluate, diagnose, monitor


def run_model_stages(stage: Stage, d: Path, out: Path) -> None:
    for name, args in zip(("select_states", "train_hmm", "train_dssm", "train_jump", "evaluate",
                           "diagnose", "monitor"), model_args(d, out)):
        stage(name).main(args)


@pytest.fixture(scope="module")
def outputs(scaled: Path) -> Path:
    out = scaled / "run1"
    run_model_stages(load_stage, scaled, out)
    return out


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_select_states_writes_the_choice_and_the_table(outputs: Path) -> None:
    result = read(outputs / "metrics/select_states.json")
    assert result["choice"]["n_states"] in (2, 3, 4)
    assert result["choice"]["covariance_type"] == "diag"
    candidates = result["candidates"]
    assert list(candidates) == ["k2_diag", "k3_diag", "k4_diag"]
    for c in candidates.values():
        assert c["status"] == "complete"
        for key in ("aic", "bic", "val_ll_per_bar", "train_ll_per_bar"):
            assert np.isfinite(c[key])
        assert c["restart_ari"] is None or 0.0 <= c["restart_ari"] <= 1.0
    # The choice is the scan's: the largest count whose regimes are reproducible and
    # distinct (or the fewest when none is), whatever BIC says.
    scan = result["scan"]
    assert list(scan) == ["k2", "k3", "k4"] and result["criterion"] == "stability"
    passing = [r["n_states"] for r in scan.values()
               if r["stability"] >= 0.9 and r["separation"] >= 1.0]
    assert result["choice"]["n_states"] == max(passing, default=2)
    assert result["choice"]["at_grid_edge"] == (max(passing, default=0) == 4)
    bic = {c["n_states"]: c["bic"] for c in candidates.values()}
    assert result["bic_optimum_n_states"] == min(bic, key=bic.get)
    for r in scan.values():
        assert set(r["penalties"]) == {"1", "5", "20"}
        assert r["jump_penalty"] in (1.0, 5.0, 20.0)
    table = pd.read_csv(outputs / "plots/select_states/scan.csv")
    np.testing.assert_array_equal(table["n_states"], [2, 3, 4])
    persistence = pd.read_csv(outputs / "plots/select_states/persistence.csv")
    assert list(persistence.columns) == ["penalty", "k2", "k3", "k4", "min_dwell"]
    for name, key in (("bic", "bic"), ("aic", "aic"), ("val_ll", "val_ll_per_bar")):
        table = pd.read_csv(outputs / f"plots/select_states/{name}.csv")
        # Every covariance type has a column, so dvc.yaml's plot definitions always hold;
        # those outside the grid are empty.
        assert list(table.columns) == ["n_states", "diag", "full", "spherical", "tied"]
        assert table[["full", "spherical", "tied"]].isna().all().all()
        np.testing.assert_array_equal(table["n_states"], [2, 3, 4])
        expected = [candidates[f"k{k}_diag"][key] for k in (2, 3, 4)]
        np.testing.assert_allclose(table["diag"], expected, rtol=1e-12, atol=0)


def test_train_hmm_writes_model_regimes_and_metrics(scaled: Path, outputs: Path) -> None:
    k = read(outputs / "metrics/select_states.json")["choice"]["n_states"]
    spec = read(scaled / "spec.json")

    with np.load(outputs / "models/hmm/params.npz", allow_pickle=False) as arrays:
        assert arrays["transmat"].shape == (k, k)
        assert arrays["means"].shape == (k, len(spec["columns"]))
    manifest = read(outputs / "models/hmm/manifest.json")
    assert manifest["features"] == spec["columns"]
    assert manifest["feature_spec"] == spec
    assert manifest["scaler"] == read(scaled / "scaled/scaler.json")
    train_bytes = (scaled / "scaled/train.parquet").read_bytes()
    assert manifest["training_data_sha256"] == hashlib.sha256(train_bytes).hexdigest()
    assert manifest["state_order"]["statistic"] == "variance"
    assert manifest["state_order"]["feature"] == "log_return_1h"
    assert manifest["n_states"] == k

    regimes = pd.read_parquet(outputs / "data/regimes/hmm.parquet")
    assert list(regimes.columns) == [
        "timestamp", "symbol", "split", "segment", "state", "regime",
        *[f"p_smooth_{i}" for i in range(k)], *[f"p_filter_{i}" for i in range(k)]]
    splits = {name: pd.read_parquet(scaled / f"scaled/{name}.parquet")
              for name in ("train", "val", "test")}
    assert regimes["split"].tolist() == [n for n, f in splits.items() for _ in range(len(f))]
    pd.testing.assert_series_equal(
        regimes["timestamp"], pd.concat([f["timestamp"] for f in splits.values()],
                                        ignore_index=True))
    assert not regimes.isna().any().any()
    assert set(regimes["state"]) <= set(range(k))
    for kind in ("smooth", "filter"):
        p = regimes[[f"p_{kind}_{i}" for i in range(k)]].to_numpy()
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-10)

    metrics = read(outputs / "metrics/train_hmm.json")
    assert set(metrics["log_likelihood_per_bar"]) == {"train", "val", "test"}
    assert all(np.isfinite(v) for v in metrics["log_likelihood_per_bar"].values())
    for key in ("aic", "bic", "n_iter", "converged", "transmat", "stationary",
                "expected_duration_bars"):
        assert key in metrics
    transmat = np.array([[metrics["transmat"][str(i)][str(j)] for j in range(k)]
                         for i in range(k)])
    np.testing.assert_allclose(transmat.sum(axis=1), 1.0, rtol=0, atol=1e-10)
    durations = [metrics["expected_duration_bars"][str(i)] for i in range(k)]
    np.testing.assert_allclose(durations, 1.0 / (1.0 - np.diag(transmat)), rtol=1e-12, atol=0)
    stationary = np.array([metrics["stationary"][str(i)] for i in range(k)])
    np.testing.assert_allclose(stationary @ transmat, stationary, rtol=0, atol=1e-10)
    history = pd.read_csv(outputs / "plots/train_hmm/loglik.csv")
    assert list(history.columns) == ["iteration", "log_likelihood_per_bar"]
    np.testing.assert_allclose(history["log_likelihood_per_bar"].iloc[-1],
                               metrics["log_likelihood_per_bar"]["train"], rtol=1e-9, atol=0)


def test_reruns_are_byte_identical(scaled: Path, outputs: Path, stage: Stage) -> None:
    again = scaled / "run2"
    run_model_stages(stage, scaled, again)
    for name in OUTPUTS:
        assert (again / name).read_bytes() == (outputs / name).read_bytes(), name


def test_a_fixed_state_count_overrides_the_choice(scaled: Path, outputs: Path,
                                                  stage: Stage, tmp_path: Path) -> None:
    chosen = read(outputs / "metrics/select_states.json")["choice"]["n_states"]
    fixed = 3 if chosen != 3 else 2
    d = tmp_path
    write_params(d, model={"n_states": fixed})
    train = model_args(scaled, outputs)[1]
    train[1] = str(d / "params.yaml")
    train[train.index("--model") + 1] = str(d / "hmm")
    train[train.index("--regimes") + 1] = str(d / "hmm.parquet")
    train[train.index("--metrics") + 1] = str(d / "train_hmm.json")
    train[train.index("--history") + 1] = str(d / "loglik.csv")
    stage("train_hmm").main(train)
    assert read(d / "train_hmm.json")["n_states"] == fixed
    assert read(d / "hmm/manifest.json")["n_states"] == fixed
    assert f"p_filter_{fixed - 1}" in pd.read_parquet(d / "hmm.parquet").columns


def test_an_invalid_state_count_is_one_line_and_exit_2(scaled: Path, tmp_path: Path) -> None:
    write_params(tmp_path, model={"n_states": 1})
    train = model_args(scaled, tmp_path)[1]
    train[1] = str(tmp_path / "params.yaml")
    proc = subprocess.run([sys.executable, str(STAGES / "train_hmm.py"), *train],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: model.n_states: got 1; expected 'auto' or an integer >= 2"]
    assert not (tmp_path / "metrics/train_hmm.json").exists()


def test_train_dssm_writes_model_regimes_curves_and_metrics(scaled: Path, outputs: Path
                                                            ) -> None:
    k = read(outputs / "metrics/select_states.json")["choice"]["n_states"]
    spec = read(scaled / "spec.json")
    manifest = read(outputs / "models/dssm/manifest.json")
    assert manifest["model"] == "dssm" and manifest["n_states"] == k
    assert manifest["features"] == spec["columns"] and manifest["feature_spec"] == spec
    assert manifest["scaler"] == read(scaled / "scaled/scaler.json")
    train_bytes = (scaled / "scaled/train.parquet").read_bytes()
    assert manifest["training_data_sha256"] == hashlib.sha256(train_bytes).hexdigest()
    assert "torch_version" in manifest and "hmmlearn_version" not in manifest
    assert manifest["state_order"]["reference"] == "hmm"

    dssm = pd.read_parquet(outputs / "data/regimes/dssm.parquet")
    hmm = pd.read_parquet(outputs / "data/regimes/hmm.parquet")
    assert list(dssm.columns) == list(hmm.columns)  # the same contract, the same K
    pd.testing.assert_frame_equal(dssm[["timestamp", "symbol", "split", "segment"]],
                                  hmm[["timestamp", "symbol", "split", "segment"]])
    assert not dssm.isna().any().any()
    for kind in ("smooth", "filter"):
        p = dssm[[f"p_{kind}_{i}" for i in range(k)]].to_numpy()
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-10)
    # Two epochs from the HMM's start: numbered like the HMM's, state for state.
    train = dssm["split"] == "train"
    assert (dssm.loc[train, "state"] == hmm.loc[train, "state"]).mean() > 0.9

    metrics = read(outputs / "metrics/train_dssm.json")
    assert metrics["n_states"] == k and metrics["epochs"] == 2
    assert set(metrics["log_likelihood_per_bar"]) == {"train", "val", "test"}
    hmm_metrics = read(outputs / "metrics/train_hmm.json")
    np.testing.assert_allclose(metrics["init_log_likelihood_per_bar"],
                               hmm_metrics["log_likelihood_per_bar"]["train"], rtol=1e-9, atol=0)
    assert metrics["log_likelihood_per_bar"]["train"] > metrics["init_log_likelihood_per_bar"]
    for key in ("best_epoch", "best_val_loss", "occupancy", "min_occupancy_train",
                "collapsed_states", "transmat", "stationary", "expected_duration_bars"):
        assert key in metrics
    curve = pd.read_csv(outputs / "plots/train_dssm/plots/metrics/val/loss.tsv", sep="\t")
    assert list(curve.columns) == ["step", "loss"] and len(curve) == 2
    np.testing.assert_allclose(curve["loss"].min(), metrics["best_val_loss"], rtol=1e-12, atol=0)


def test_train_dssm_without_an_hmm_fits_its_own_start(scaled: Path, outputs: Path,
                                                      stage: Stage, tmp_path: Path) -> None:
    dssm = model_args(scaled, outputs)[2]
    for flag in ("--hmm", "--hmm-regimes"):
        del dssm[dssm.index(flag):dssm.index(flag) + 2]
    for flag, name in (("--model", "dssm"), ("--regimes", "dssm.parquet"),
                       ("--metrics", "train_dssm.json"), ("--curves", "curves")):
        dssm[dssm.index(flag) + 1] = str(tmp_path / name)
    stage("train_dssm").main(dssm)
    order = read(tmp_path / "dssm/manifest.json")["state_order"]
    assert order["rule"] == "ascending volatility" and "reference" not in order
    assert order["values"] == sorted(order["values"])


@pytest.mark.parametrize("family", ["hmm", "dssm", "jump"])
def test_every_family_names_its_regimes(outputs: Path, family: str) -> None:
    manifest = read(outputs / f"models/{family}/manifest.json")
    names = manifest["regime_names"]
    assert len(names) == manifest["n_states"] == len(set(names))
    assert manifest["regime_naming"]["names"] == names
    regimes = pd.read_parquet(outputs / f"data/regimes/{family}.parquet")
    np.testing.assert_array_equal(regimes["regime"], np.asarray(names)[regimes["state"]])
    metrics = read(outputs / f"metrics/train_{family}.json")
    assert metrics["regime_names"] == {str(k): n for k, n in enumerate(names)}
    # The synthetic market's calmest regime drifts up and its most volatile one crashes.
    assert "calm" in names[0] and names[-1] in ("crash", "volatile bear", "volatile flat")


def test_train_jump_writes_model_regimes_and_metrics(scaled: Path, outputs: Path) -> None:
    k = read(outputs / "metrics/select_states.json")["choice"]["n_states"]
    spec = read(scaled / "spec.json")
    manifest = read(outputs / "models/jump/manifest.json")
    assert manifest["model"] == "jump" and manifest["n_states"] == k
    assert manifest["features"] == spec["columns"] and manifest["feature_spec"] == spec
    assert manifest["scaler"] == read(scaled / "scaled/scaler.json")
    selection = read(outputs / "metrics/select_states.json")
    assert manifest["resolved"]["jump_penalty"] == selection["scan"][f"k{k}"]["jump_penalty"]
    assert "numba_version" in manifest and "torch_version" not in manifest
    assert manifest["state_order"]["rule"] == "ascending volatility"

    jump = pd.read_parquet(outputs / "data/regimes/jump.parquet")
    hmm = pd.read_parquet(outputs / "data/regimes/hmm.parquet")
    assert list(jump.columns) == list(hmm.columns)  # the same contract
    pd.testing.assert_frame_equal(jump[["timestamp", "symbol", "split", "segment"]],
                                  hmm[["timestamp", "symbol", "split", "segment"]])
    # Hard labels: the smoothed rows are one-hot on the hindsight path.
    smooth = jump[[f"p_smooth_{i}" for i in range(k)]].to_numpy()
    np.testing.assert_array_equal(smooth.argmax(axis=1), jump["state"])
    assert set(np.unique(smooth)) <= {0.0, 1.0}

    metrics = read(outputs / "metrics/train_jump.json")
    assert metrics["n_states"] == k
    assert metrics["jump_penalty"] == manifest["resolved"]["jump_penalty"]
    assert "log_likelihood_per_bar" not in metrics
    assert set(metrics["objective_per_bar"]) == {"train", "val", "test"}
    assert all(v > 0 for v in metrics["objective_per_bar"].values())
    for key in ("transmat", "stationary", "expected_duration_bars", "occupancy"):
        assert key in metrics


def test_evaluate_compares_both_models_and_the_baseline(scaled: Path, outputs: Path) -> None:
    report = read(outputs / "metrics/evaluate.json")
    k = read(outputs / "metrics/select_states.json")["choice"]["n_states"]
    assert report["split"] == "test" and report["bars"] > 100
    assert report["bars_per_year"] == pytest.approx(8766, rel=0.01)  # hourly, round the clock
    for name in ("hmm", "dssm"):
        block = report[name]
        assert block["n_states"] == k
        assert set(block["ll_per_bar"]) == {"val", "test"}
        np.testing.assert_allclose(
            block["ll_per_bar"]["test"],
            read(outputs / f"metrics/train_{name}.json")["log_likelihood_per_bar"]["test"],
            rtol=1e-12, atol=0)
        shares = list(block["occupancy"].values())
        assert sum(shares) == pytest.approx(1.0) and block["largest_share"] == max(shares)
        assert block["largest_share_ok"] == (max(shares) <= 0.4)
        assert 1 <= block["dwell_median_bars"] <= block["dwell_mean_bars"] * 5
        assert 0 <= block["entropy_filtered"] <= np.log(k)
        for h in ("h1", "h24"):
            forecast = block["forecast"][h]
            assert 0 <= forecast["accuracy"] <= 1 and 0 <= forecast["persistence"] <= 1
            returns = block["returns"][h]
            p_value = returns["kruskal"]["p_value"]
            # Every 24th bar of a short test split leaves too few returns for a test.
            assert (0 <= p_value <= 1) if h == "h1" else (p_value is None or 0 <= p_value <= 1)
            counted = sum(returns[str(s)]["n"] for s in range(k))
            assert counted == report["baseline"]["returns"][h]["0"]["n"]
        # The synthetic market's regimes are known: both models find them.
        assert block["truth"]["ari"] > 0.5 and block["truth"]["matched_accuracy"] > 0.7
    assert "aic" in report["hmm"] and "aic" not in report["dssm"]
    # A family without a likelihood leaves those rows empty and gives its objective.
    jump = report["jump"]
    assert jump["ll_per_bar"] == {"val": None, "test": None}
    np.testing.assert_allclose(
        jump["objective_per_bar"]["test"],
        read(outputs / "metrics/train_jump.json")["objective_per_bar"]["test"], rtol=1e-12, atol=0)
    assert jump["entropy_filtered"] == 0.0  # hard labels
    assert jump["truth"]["ari"] > 0.5
    assert set(report["agreement"]) == {"hmm_dssm", "hmm_jump", "dssm_jump"}
    baseline = report["baseline"]
    assert baseline["n_states"] == 1
    columns = read(scaled / "spec.json")["columns"]
    train, test = (pd.read_parquet(scaled / f"scaled/{n}.parquet")[columns].to_numpy()
                   for n in ("train", "test"))
    gaussian = multivariate_normal(train.mean(axis=0), np.cov(train, rowvar=False))
    np.testing.assert_allclose(baseline["ll_per_bar"]["test"], gaussian.logpdf(test).mean(),
                               rtol=1e-12, atol=0)
    assert 0.0 <= report["agreement"]["hmm_dssm"]["same_state_share"] <= 1.0


def test_diagnose_writes_every_figure_and_the_tables(outputs: Path) -> None:
    folder = outputs / "plots/diagnose"
    for name in ("hmm", "dssm", "jump"):
        for figure in FIGURES:
            assert (folder / f"{name}_{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pairs = pd.read_csv(folder / f"{name}_pairs.csv")
        regimes = pd.read_parquet(outputs / f"data/regimes/{name}.parquet")
        test = regimes.loc[regimes["split"] == "test"]
        assert list(pairs.columns) == ["from", "to"]
        assert len(pairs) == len(test) - test["segment"].nunique()
    assert (folder / "select_states.png").is_file()
    report = pd.read_csv(outputs / "reports/diagnostics.csv", dtype={"row": str, "column": str})
    assert list(report.columns) == ["model", "table", "row", "column", "value"]
    assert set(report["table"]) == {"transmat", "stationary", "dwell", "feature_mean",
                                    "feature_f_statistic"}
    hmm = read(outputs / "metrics/train_hmm.json")
    transmat = report.query("model == 'hmm' and table == 'transmat'")
    assert transmat.query("row == '0' and column == '0'")["value"].item() == pytest.approx(
        hmm["transmat"]["0"]["0"], rel=1e-12)


def test_monitor_reports_drift_of_the_test_split(outputs: Path) -> None:
    report = read(outputs / "metrics/monitor.json")
    spec_columns = read(outputs / "models/hmm/manifest.json")["features"]
    for name in ("hmm", "dssm"):
        block = report[name]
        assert set(block["features"]) == set(spec_columns)
        assert all(v["psi"] >= 0 and 0 <= v["ks"] <= 1 for v in block["features"].values())
        np.testing.assert_allclose(
            block["fit"]["ll_per_bar_recent"],
            read(outputs / f"metrics/train_{name}.json")["log_likelihood_per_bar"]["test"],
            rtol=1e-12, atol=0)
        assert block["drift"] == bool(block["breaches"])
    # A family without a likelihood: no fit view, the features and the regimes still.
    jump = report["jump"]
    assert jump["fit"] is None
    assert set(jump["features"]) == set(spec_columns)
    assert 0 <= jump["regimes"]["occupancy_tv"] <= 1


def test_forecast_vol_writes_metrics_plots_and_models_reproducibly(scaled: Path,
                                                                   outputs: Path,
                                                                   stage: Stage) -> None:
    from regimelab.forecast.vol_apply import load_vol_models, vol_forecasts
    from regimelab.forecast.volatility import filtered_posteriors
    from regimelab.models import load_model, model_version
    from regimelab.split import read_splits

    params = scaled / "params_forecast_vol.yaml"
    params.write_text(yaml.safe_dump({**yaml.safe_load((scaled / "params.yaml").read_text()),
                                      "forecast_vol": {"family": "jump", "horizons": [1, 6]}}))
    args = ["--params", str(params), "--bars", str(scaled / "bars.parquet"),
            "--scaled", str(scaled / "scaled"), "--spec", str(scaled / "spec.json"),
            "--models", str(outputs / "models")]
    digests = []
    for run in ("a", "b"):
        out = scaled / f"forecast_vol_{run}"
        stage("forecast_vol").main([*args, "--metrics", str(out / "forecast_vol.json"),
                                    "--plots", str(out / "plots"),
                                    "--models-out", str(out / "models")])
        digests.append([hashlib.sha256((out / name).read_bytes()).hexdigest()
                        for name in ("forecast_vol.json", "plots/h1.csv", "plots/h6.csv",
                                     "models/vol_models.json")])
    assert digests[0] == digests[1]
    # The saved models, applied to the test bars, give the stage's test forecasts (the
    # plots' volatilities, written to full precision).
    jump = outputs / "models/jump"
    vol = load_vol_models(scaled / "forecast_vol_a/models", model_version=model_version(jump))
    assert vol.spec["family"] == "jump" and vol.horizons == (1, 6)
    test = read_splits(scaled / "scaled")["test"]
    test_posteriors = filtered_posteriors(load_model(jump), {"test": test},
                                          columns=read(jump / "manifest.json")["features"])
    applied = pd.concat([test_posteriors[["timestamp"]], vol_forecasts(
        vol, pd.read_parquet(scaled / "bars.parquet"), test_posteriors)], axis=1)
    applied["timestamp"] = applied["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    for h in (1, 6):
        plot = pd.read_csv(scaled / f"forecast_vol_a/plots/h{h}.csv").merge(applied,
                                                                            on="timestamp")
        assert len(plot) > 100
        for name in vol.names(h):
            np.testing.assert_allclose(plot[f"rv_{name}_h{h}"], plot[name], rtol=1e-10, atol=0)
    report = read(scaled / "forecast_vol_a/forecast_vol.json")
    assert report["family"] == "jump" and list(report["horizons"]) == ["h1", "h6"]
    block = report["horizons"]["h6"]
    assert set(block["models"]) == {"har", "har_regimes", "garch", "garch_mz", "garch_regimes"}
    assert set(block["diebold_mariano"]) == {"har_regimes_vs_har", "garch_regimes_vs_garch_mz"}
    plot = pd.read_csv(scaled / "forecast_vol_a/plots/h6.csv")
    assert list(plot.columns) == ["timestamp", "actual", "garch", "har", "har_regimes",
                                  "garch_mz", "garch_regimes"]
    assert len(plot) == block["n_test"]
