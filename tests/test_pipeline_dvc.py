"""The DVC pipeline end to end, in a temporary git copy of the project, on a short slice."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SLICE_ROWS = 2500


def sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository holding the project's files and a 2,500-bar slice of the BTC data."""
    dest = tmp_path_factory.mktemp("project")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in listed:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    raw = dest / "data" / "raw"
    with gzip.open(ROOT / "data" / "raw" / "btcusdt_1h.csv.gz", "rt") as fh:
        lines = [next(fh) for _ in range(SLICE_ROWS + 1)]
    (raw / "btcusdt_1h.csv.gz").unlink()  # keep the copy small
    (raw / "btc_slice_1h.csv").write_text("".join(lines))
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["ingest"]["path"] = "data/raw/btc_slice_1h.csv"
    params["split"]["folds"] = 2
    params["select"]["grid"] = {"n_states": [2, 3], "covariance_type": ["diag"]}
    params["hmm"]["n_init"] = 2
    params["dssm"].update(hidden=8, window=64, stride=48, burn_in=8, max_epochs=1)
    params["backtest"].update(min_train=1500, refit=500, n_boot=100)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        sh(cmd, dest)
    return dest


def test_dvc_repro_builds_everything_and_then_does_nothing(repo: Path) -> None:
    out = sh(["dvc", "repro"], repo)
    for stage in ("ingest", "featurize", "split", "scale", "select-states", "train-hmm",
                  "train-dssm", "evaluate", "diagnose", "backtest"):
        assert f"Running stage '{stage}'" in out
    bars = pd.read_parquet(repo / "data" / "clean" / "bars.parquet")
    assert len(bars) == SLICE_ROWS and bars["symbol"].unique().tolist() == ["BTC_SLICE"]
    for name in ("train", "val", "test"):
        assert len(pd.read_parquet(repo / "data" / "scaled" / f"{name}.parquet")) > 100
    regimes = pd.read_parquet(repo / "data" / "regimes" / "hmm.parquet")
    assert set(regimes["split"]) == {"train", "val", "test"}
    assert (repo / "models" / "hmm" / "params.npz").is_file()
    dssm = pd.read_parquet(repo / "data" / "regimes" / "dssm.parquet")
    assert len(dssm) == len(regimes)
    assert (repo / "models" / "dssm" / "weights.safetensors").is_file()
    report = json.loads((repo / "metrics" / "evaluate.json").read_text())
    assert {"hmm", "dssm", "baseline", "agreement"} <= set(report)
    assert (repo / "plots" / "diagnose" / "hmm_transmat.png").is_file()
    assert (repo / "reports" / "diagnostics.csv").is_file()
    backtest = json.loads((repo / "metrics" / "backtest.json").read_text())
    assert backtest["symbols"]["BTC_SLICE"]["period"]["refits"] == 2  # rows 1500 and 2000
    assert (repo / "plots" / "backtest" / "equity.csv").is_file()
    lock = (repo / "dvc.lock").read_text()

    again = sh(["dvc", "repro"], repo)
    assert "Running stage" not in again
    assert "Data and pipelines are up to date" in again
    assert (repo / "dvc.lock").read_text() == lock
    assert "up to date" in sh(["dvc", "status"], repo).lower()

    # Forcing every stage to run again rewrites the same bytes: dvc.lock does not move.
    sh(["dvc", "repro", "--force"], repo)
    assert (repo / "dvc.lock").read_text() == lock


def test_exp_run_with_a_fixed_state_count(repo: Path) -> None:
    sh(["dvc", "repro"], repo)
    before = json.loads((repo / "metrics" / "train_hmm.json").read_text())
    out = sh(["dvc", "exp", "run", "-S", "model.n_states=4"], repo)
    assert "Running stage 'train-hmm'" in out and "Running stage 'train-dssm'" in out
    assert "Running stage 'featurize'" not in out
    assert "Running stage 'select-states'" not in out
    after = json.loads((repo / "metrics" / "train_hmm.json").read_text())
    assert after["n_states"] == 4 != before["n_states"]
    regimes = pd.read_parquet(repo / "data" / "regimes" / "hmm.parquet")
    assert "p_filter_3" in regimes.columns and "p_filter_4" not in regimes.columns
    assert json.loads((repo / "metrics" / "train_dssm.json").read_text())["n_states"] == 4
    diff = sh(["dvc", "metrics", "diff"], repo)
    changed = [line for line in diff.splitlines() if "n_states" in line]
    assert any("metrics/evaluate.json" in line and "hmm.n_states" in line for line in changed)
    assert any("4" in line.split() for line in changed), diff


def test_plots_show_draws_the_transition_matrices(repo: Path) -> None:
    sh(["dvc", "repro"], repo)
    out = repo / "plots_html"
    sh(["dvc", "plots", "show", "-o", str(out)], repo)
    html = (out / "index.html").read_text()
    for needle in ("HMM transitions between consecutive bars", "DSSM training loss",
                   "hmm_transmat.png", "BIC against the number of states",
                   "Walk-forward equity"):
        assert needle in html, needle


def test_a_registered_model_is_fetched_by_version_and_stage_and_rolled_back(
        repo: Path, tmp_path: Path) -> None:
    """The registry as docs/serving.md describes it: GTO tags, the files in a DVC remote,
    `dvc artifacts get` by version and by stage, and a rollback of the stage."""
    import dvc.api

    sh(["dvc", "repro"], repo)
    for key, value in (("user.name", "t"), ("user.email", "t@t")):
        sh(["git", "config", key, value], repo)  # GTO's tags are annotated
    sh(["dvc", "remote", "add", "-f", "-d", "local", str(tmp_path / "remote")], repo)
    sh(["dvc", "push"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "models", "--allow-empty"], repo)
    first = sh(["git", "rev-parse", "HEAD"], repo).strip()
    sh(["gto", "register", "regime-hmm", "--version", "v1.0.0"], repo)
    sh(["gto", "assign", "regime-hmm", "--version", "v1.0.0", "--stage", "prod"], repo)

    got = tmp_path / "by_version"
    sh(["dvc", "artifacts", "get", str(repo), "regime-hmm", "--rev", "v1.0.0", "-o", str(got)],
       tmp_path)
    for name in ("manifest.json", "params.npz"):
        assert (got / name).read_bytes() == (repo / "models" / "hmm" / name).read_bytes()
    prod = tmp_path / "prod"
    sh(["dvc", "artifacts", "get", str(repo), "regime-hmm", "--stage", "prod", "-o", str(prod)],
       tmp_path)
    assert (prod / "params.npz").read_bytes() == (got / "params.npz").read_bytes()
    # The fetched folder is a model: it answers for the bars it was trained on.
    out = sh([str(Path(sys.executable).with_name("regimelab")), "now", "--model", str(prod),
              "--input", str(repo / "data" / "raw" / "btc_slice_1h.csv"), "--no-store"], tmp_path)
    assert "BTC_SLICE" in out and " state " in out

    # A later version goes to prod, then prod is rolled back to v1.0.0 by a new
    # assignment. Tags carry whole seconds and the newest wins: one second apart.
    sh(["git", "commit", "-qm", "next", "--allow-empty"], repo)
    sh(["gto", "register", "regime-hmm", "--version", "v1.1.0"], repo)
    time.sleep(1.1)
    sh(["gto", "assign", "regime-hmm", "--version", "v1.1.0", "--stage", "prod"], repo)
    assert dvc.api.artifacts_show("regime-hmm", stage="prod", repo=str(repo))["rev"] != first
    time.sleep(1.1)
    sh(["gto", "assign", "regime-hmm", "--version", "v1.0.0", "--stage", "prod", "--force"],
       repo)
    assert dvc.api.artifacts_show("regime-hmm", stage="prod", repo=str(repo))["rev"] == first
    assert "prod" in sh(["gto", "show", "regime-hmm@v1.0.0"], repo)
