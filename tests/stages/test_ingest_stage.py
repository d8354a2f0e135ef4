"""Stage ingest: main() on a tmp params.yaml, the script as DVC runs it, and the real data."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import yaml

from regimelab.data import BARS_COLUMNS
from regimelab.exceptions import ParamsError
from regimelab.io import read_json, sha256_file

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "stages" / "ingest.py"
RAW = ROOT / "data" / "raw" / "btcusdt_1h.csv.gz"


def load_stage() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stage_ingest", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_params(tmp_path: Path, ingest: dict[str, object]) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"ingest": ingest}), encoding="utf-8")
    return path


def outputs(tmp_path: Path) -> dict[str, Path]:
    out = tmp_path / "out"
    return {"bars": out / "clean" / "bars.parquet", "gaps": out / "clean" / "gaps.csv",
            "metrics": out / "metrics" / "ingest.json"}


def argv(params: Path, outs: dict[str, Path]) -> list[str]:
    return ["--params", str(params), "--bars", str(outs["bars"]), "--gaps", str(outs["gaps"]),
            "--metrics", str(outs["metrics"])]


def test_main_writes_bars_gaps_and_metrics(tmp_path: Path) -> None:
    # Hourly ETH bars, newest first, with 03:00-04:00 missing and one exact duplicate.
    t0 = pd.Timestamp("2024-03-01T00:00:00Z")
    offsets = [0, 1, 2, 5, 6, 7]
    lines = ["Date,Open,High,Low,Close,Volume"]
    for h in reversed(offsets):
        stamp = (t0 + pd.Timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{stamp},{3000 + h},{3010 + h},{2990 + h},{3005 + h},{1.5 * h}")
    lines.append(lines[1])
    raw = tmp_path / "ethusdt_1h.csv"
    raw.write_text("\n".join(lines) + "\n", encoding="utf-8")
    params = write_params(tmp_path, {"path": str(raw), "symbol": None, "freq": "auto",
                                     "max_invalid_fraction": 0.01})
    outs = outputs(tmp_path)

    load_stage().main(argv(params, outs))

    bars = pd.read_parquet(outs["bars"])
    assert list(bars.columns) == list(BARS_COLUMNS)
    assert isinstance(bars["timestamp"].dtype, pd.DatetimeTZDtype)
    assert str(bars["timestamp"].dt.tz) == "UTC"
    assert pd.api.types.is_string_dtype(bars["symbol"])
    for col in ("open", "high", "low", "close", "volume"):
        assert bars[col].dtype == np.float64, col
    assert bars["symbol"].tolist() == ["ETHUSDT"] * len(offsets)
    expected_times = [t0 + pd.Timedelta(hours=h) for h in offsets]
    assert bars["timestamp"].tolist() == expected_times
    np.testing.assert_allclose(bars["close"].to_numpy(), [3005 + h for h in offsets],
                               rtol=0, atol=0)
    np.testing.assert_allclose(bars["volume"].to_numpy(), [1.5 * h for h in offsets],
                               rtol=0, atol=0)

    gaps = pd.read_csv(outs["gaps"])
    assert len(gaps) == 1
    assert gaps.loc[0, "symbol"] == "ETHUSDT"
    assert gaps.loc[0, "missing_bars"] == 2
    assert pd.Timestamp(gaps.loc[0, "first_missing"]) == t0 + pd.Timedelta(hours=3)
    assert pd.Timestamp(gaps.loc[0, "last_missing"]) == t0 + pd.Timedelta(hours=4)

    metrics = read_json(outs["metrics"])
    assert metrics["rows_in"] == 7
    assert metrics["rows_out"] == 6
    assert metrics["duplicate_rows"] == 1
    assert metrics["gaps"] == 1
    assert metrics["missing_bars"] == 2
    assert sum(metrics["dropped"].values()) == 0
    assert metrics["symbols"]["ETHUSDT"]["largest_gap_start"] == "2024-03-01T03:00:00+00:00"


def test_unknown_ingest_key_names_the_key(tmp_path: Path) -> None:
    params = write_params(tmp_path, {"path": str(RAW), "max_invalid_fractoin": 0.5})
    outs = outputs(tmp_path)
    with pytest.raises(ParamsError, match=r"ingest\.max_invalid_fractoin: unknown key"):
        load_stage().main(argv(params, outs))
    assert not (tmp_path / "out").exists()


def test_script_on_a_bad_file_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "header_only.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n", encoding="utf-8")
    params = write_params(tmp_path, {"path": str(bad)})
    outs = outputs(tmp_path)
    proc = subprocess.run([sys.executable, "stages/ingest.py", *argv(params, outs)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert str(bad) in lines[0]
    assert "no rows" in lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert not any(p.exists() for p in outs.values())
    assert not (tmp_path / "out").exists()


def test_committed_raw_data(tmp_path: Path) -> None:
    sha_before = sha256_file(RAW)
    params = write_params(tmp_path, {"path": str(RAW)})
    outs = outputs(tmp_path)

    load_stage().main(argv(params, outs))

    metrics = read_json(outs["metrics"])
    assert metrics["rows_in"] == 72_866
    assert metrics["rows_out"] == 72_866
    assert metrics["gaps"] == 27
    assert metrics["missing_bars"] == 122
    assert metrics["zero_volume_flat_bars"] == 3
    btc = metrics["symbols"]["BTCUSDT"]
    assert btc["freq"] == "1h"
    assert btc["largest_gap_bars"] == 33
    assert btc["largest_gap_start"] == "2018-02-08T01:00:00+00:00"
    assert metrics["files"][0]["sha256"] == sha_before == sha256_file(RAW)

    bars = pd.read_parquet(outs["bars"])
    assert len(bars) == 72_866
    assert bars["timestamp"].is_monotonic_increasing and bars["timestamp"].is_unique
    gaps = pd.read_csv(outs["gaps"])
    assert len(gaps) == 27 and gaps["missing_bars"].sum() == 122
