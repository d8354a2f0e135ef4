"""Stage outputs are the same bytes whatever SIMD kernels the machine offers."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from regimelab import canonical
from regimelab.synth import make_market, write_market

ROOT = Path(__file__).resolve().parents[1]
STAGES = sorted((ROOT / "stages").glob("*.py"))
# Run a stage script after numpy has loaded, so that regimelab.canonical cannot pin anything:
# the kernels are then whatever the environment given to the process says.
UNPINNED = ("import sys, runpy, numpy, torch; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")


def first_import(path: Path) -> str:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, ast.Import):
            return node.names[0].name
        if isinstance(node, ast.ImportFrom):
            return str(node.module)
    return ""


@pytest.mark.parametrize("script", STAGES, ids=lambda p: p.stem)
def test_every_stage_pins_the_kernels_before_anything_else(script: Path) -> None:
    assert first_import(script) == "regimelab.canonical"


def test_a_stage_process_runs_the_pinned_kernels() -> None:
    probe = ("import regimelab.canonical as c, json, numpy, torch, threadpoolctl\n"
             "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
             "print(json.dumps({'pinned': c.PINNED, 'numpy': [k for k in ('X86_V3', 'X86_V4',"
             " 'AVX512_ICL', 'AVX512_SPR') if f[k]], 'torch': torch.backends.cpu."
             "get_cpu_capability(), 'blas': sorted({i.get('architecture') or '' for i in "
             "threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas'})}))")
    # A shell that asks for the widest kernels is overridden.
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": "", "ATEN_CPU_CAPABILITY": "avx512"}
    seen = json.loads(subprocess.run([sys.executable, "-c", probe], env=env, check=True,
                                     capture_output=True, text=True).stdout)
    assert seen["pinned"] is True
    assert seen["numpy"] == []
    assert seen["torch"] in ("AVX2", "DEFAULT")
    if {"avx2", "fma"} <= canonical._cpu_flags():
        assert seen["blas"] == ["Haswell"]


def test_importing_the_library_leaves_a_users_kernels_alone() -> None:
    probe = ("import os, numpy, regimelab.canonical as c; "
             "print(c.PINNED, os.environ.get('NPY_DISABLE_CPU_FEATURES'))")
    env = {k: v for k, v in os.environ.items() if k != "NPY_DISABLE_CPU_FEATURES"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == ["False", "None"]


def test_openblas_is_pinned_only_where_the_cpu_has_its_kernels() -> None:
    assert canonical.pins({"avx2", "fma", "sse2"})["OPENBLAS_CORETYPE"] == "Haswell"
    assert "OPENBLAS_CORETYPE" not in canonical.pins({"sse2"})


def unpinned() -> dict[str, str]:
    """This process's environment without the pins (this process may have set them)."""
    return {k: v for k, v in os.environ.items() if k not in canonical.pins()}


def run_data_stages(d: Path, *, unpinned_env: dict[str, str] | None) -> dict[str, bytes]:
    """ingest, featurize, split and scale on ``d`` as subprocesses; every output's bytes."""
    out = d / ("unpinned" if unpinned_env is not None else "pinned")
    p = ["--params", str(d / "params.yaml")]
    commands = [
        ("ingest", ["--bars", f"{out}/bars.parquet", "--gaps", f"{out}/gaps.csv",
                    "--metrics", f"{out}/ingest.json"]),
        ("featurize", ["--bars", f"{out}/bars.parquet", "--features", f"{out}/features.parquet",
                       "--spec", f"{out}/spec.json", "--metrics", f"{out}/featurize.json"]),
        ("split", ["--features", f"{out}/features.parquet", "--spec", f"{out}/spec.json",
                   "--out", f"{out}/split", "--metrics", f"{out}/split.json"]),
        ("scale", ["--splits", f"{out}/split", "--spec", f"{out}/spec.json",
                   "--out", f"{out}/scaled"]),
    ]
    for name, args in commands:
        script = str(ROOT / "stages" / f"{name}.py")
        if unpinned_env is None:
            # The stage pins itself, over a shell that asks for numpy's widest kernels.
            cmd, env = [sys.executable, script, *p, *args], {**unpinned(),
                                                              "NPY_DISABLE_CPU_FEATURES": ""}
        else:
            cmd, env = [sys.executable, "-c", UNPINNED, script, *p, *args], unpinned_env
        subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=d)
    return {str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*"))
            if f.is_file()}


def test_data_stages_give_numpys_simd_free_bytes(tmp_path: Path) -> None:
    """The stages' outputs equal a run with every numpy SIMD feature off, OpenBLAS on its Haswell
    kernels and torch on AVX2: the answer any x86-64 machine computes, whatever it offers."""
    write_market(make_market(3000, n_regimes=3, n_gaps=2, random_state=11), tmp_path / "m.csv")
    params = {"ingest": {"path": str(tmp_path / "m.csv")},
              "features": {"set": "range"}, "split": {"folds": 3}, "scale": {"clip": 4.0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    pinned = run_data_stages(tmp_path, unpinned_env=None)
    simd_free = run_data_stages(tmp_path, unpinned_env={**unpinned(), **canonical.pins()})
    assert "scaled/train.parquet" in pinned and "features.parquet" in pinned
    assert pinned.keys() == simd_free.keys()
    assert [k for k in pinned if pinned[k] != simd_free[k]] == []
