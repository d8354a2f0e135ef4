"""featurize, split and scale: each stage's main() on a small synthetic market."""

from __future__ import annotations

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

from regimelab.synth import make_market, write_market
from tests.stages.conftest import run_data_stages

STAGES = Path(__file__).resolve().parents[2] / "stages"


@pytest.fixture
def workdir(tmp_path: Path, stage: Callable[[str], ModuleType]) -> Path:
    """A folder with a synthetic CSV, its params.yaml and the ingest stage already run."""
    write_market(make_market(2000, n_regimes=3, n_gaps=2, random_state=3), tmp_path / "m.csv")
    params = {
        "ingest": {"path": str(tmp_path / "m.csv")},
        "features": {"timeframes": ["1h", "4h"], "window": 10},
        "split": {"folds": 3},
        "scale": {"method": "standard"},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage("ingest").main(["--params", str(tmp_path / "params.yaml"),
                          "--bars", str(tmp_path / "bars.parquet"),
                          "--gaps", str(tmp_path / "gaps.csv"),
                          "--metrics", str(tmp_path / "ingest.json")])
    return tmp_path


def test_featurize_split_scale(workdir: Path, stage: Callable[[str], ModuleType]) -> None:
    run_data_stages(workdir)
    spec = json.loads((workdir / "spec.json").read_text())
    assert len(spec["columns"]) == 16 and spec["timeframes"] == ["1h", "4h"]
    features = pd.read_parquet(workdir / "features.parquet")
    assert list(features.columns[:4]) == ["timestamp", "symbol", "segment", "regime"]
    assert list(features.columns[4:]) == spec["columns"]
    assert str(features["timestamp"].dtype) == "datetime64[ns, UTC]"
    split = json.loads((workdir / "split.json").read_text())
    assert split["train"]["rows"] + split["val"]["rows"] + split["test"]["rows"] \
        + split["embargoed_rows"] == len(features)
    folds = json.loads((workdir / "split" / "folds.json").read_text())
    assert len(folds) == 3
    scaler = json.loads((workdir / "scaled" / "scaler.json").read_text())
    assert scaler["columns"] == spec["columns"]
    train = pd.read_parquet(workdir / "scaled" / "train.parquet")
    np.testing.assert_allclose(train[spec["columns"]].mean().to_numpy(), 0.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(train[spec["columns"]].std(ddof=0).to_numpy(), 1.0, rtol=1e-9,
                               atol=0)
    test = pd.read_parquet(workdir / "scaled" / "test.parquet")
    assert np.isfinite(test[spec["columns"]].to_numpy()).all()


def test_regime_set_through_scale_records_collinear_pairs(
        workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The regime set with a near-duplicate added by name: scale warns of the pair and
    writes it into scaler.json."""
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["features"] = {"set": "columns", "max_gap": 6,
                          "columns": ["ewm_return_3_1h", "ewm_downside_3_1h", "ewm_vol_3_1h",
                                      "ewm_sortino_8_1h", "log_close_vwap_10_1h",
                                      "close_vwap_ratio_10_1h"]}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    with caplog.at_level("WARNING", logger="regimelab.scaling"):
        run_data_stages(workdir)
    spec = json.loads((workdir / "spec.json").read_text())
    assert spec["max_gap"] == 6
    scaler = json.loads((workdir / "scaled" / "scaler.json").read_text())
    pairs = [(a, b) for a, b, _ in scaler["collinear"]]
    assert ("log_close_vwap_10_1h", "close_vwap_ratio_10_1h") in pairs
    assert "log_close_vwap_10_1h ~ close_vwap_ratio_10_1h" in caplog.text


def test_regime_set_spec(workdir: Path) -> None:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["features"] = {"set": "regime", "halflives": [3, 8], "volume": True}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    run_data_stages(workdir)
    spec = json.loads((workdir / "spec.json").read_text())
    assert spec["halflives"] == {"1h": [3, 8]} and spec["max_gap"] == 6
    assert spec["columns"][:2] == ["ewm_return_3_1h", "ewm_return_8_1h"]
    assert len(spec["columns"]) == 8
    scaler = json.loads((workdir / "scaled" / "scaler.json").read_text())
    assert scaler["columns"] == spec["columns"] and "collinear" in scaler


def test_outputs_are_byte_identical_on_rerun(workdir: Path,
                                             stage: Callable[[str], ModuleType]) -> None:
    run_data_stages(workdir)
    names = ["features.parquet", "spec.json", "split.json", "split/train.parquet",
             "scaled/test.parquet", "scaled/scaler.json", "bars.parquet", "ingest.json"]
    first = {n: (workdir / n).read_bytes() for n in names}
    stage("ingest").main(["--params", str(workdir / "params.yaml"),
                          "--bars", str(workdir / "bars.parquet"),
                          "--gaps", str(workdir / "gaps.csv"),
                          "--metrics", str(workdir / "ingest.json")])
    run_data_stages(workdir)
    assert {n: (workdir / n).read_bytes() for n in names} == first


def test_bad_param_is_one_line_and_exit_2(workdir: Path) -> None:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["features"]["timeframes"] = ["1h", "3x"]
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run(
        [sys.executable, str(STAGES / "featurize.py"), "--params", str(workdir / "params.yaml"),
         "--bars", str(workdir / "bars.parquet"), "--features", str(workdir / "f.parquet"),
         "--spec", str(workdir / "s.json"), "--metrics", str(workdir / "m.json")],
        capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: features.timeframes: '3x' is not a timeframe; expected a positive count and a "
        "unit, e.g. 15m, 1h, 4h, 1d"]
    assert not (workdir / "f.parquet").exists()
