"""Artifacts: atomic, reproducible, readable by others, and free of pickle."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from regimelab.io import atomic_path, read_npz, write_csv, write_json, write_npz, write_parquet


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("stage killed")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_rewrite_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json({"a": 1}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("stage killed")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_outputs_get_the_usual_file_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_json({"a": 1}, tmp_path / "m.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644


@pytest.mark.parametrize("name", ["t.parquet", "t.csv", "t.csv.gz", "a.npz", "m.json"])
def test_same_data_same_bytes(tmp_path: Path, name: str) -> None:
    frame = pd.DataFrame({"timestamp": pd.date_range("2024", periods=50, freq="1h", tz="UTC"),
                          "x": np.linspace(0.0, 1.0, 50)})
    writers = {".parquet": lambda p: write_parquet(frame, p), ".csv": lambda p: write_csv(frame, p),
               ".gz": lambda p: write_csv(frame, p),
               ".npz": lambda p: write_npz({"x": frame["x"].to_numpy(), "y": np.eye(3)}, p),
               ".json": lambda p: write_json({"x": frame["x"].tolist()}, p)}
    write = writers[Path(name).suffix]
    write(tmp_path / "1" / name)
    write(tmp_path / "2" / name)
    assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes()


def test_npz_round_trip_refuses_objects(tmp_path: Path) -> None:
    arrays = {"transmat": np.array([[0.9, 0.1], [0.2, 0.8]]), "means": np.zeros((2, 3))}
    write_npz(arrays, tmp_path / "p.npz")
    back = read_npz(tmp_path / "p.npz")
    assert set(back) == set(arrays)
    np.testing.assert_array_equal(back["transmat"], arrays["transmat"])
    with pytest.raises(TypeError, match="object arrays"):
        write_npz({"bad": np.array([{"a": 1}], dtype=object)}, tmp_path / "q.npz")
    assert not (tmp_path / "q.npz").exists()
