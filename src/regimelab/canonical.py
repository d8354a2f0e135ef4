"""Pin a stage process's numeric kernels, so that its outputs are the same bytes on any machine.

numpy, OpenBLAS and PyTorch choose their SIMD kernels when they load, from the
CPU's features, and kernels of different widths round differently: numpy's
AVX-512 ``log``/``exp``/``power`` differ from the C library's in the last bit,
its AVX-512 sort orders ties differently, and OpenBLAS's SkylakeX and Haswell
kernels sum in different orders. A ``dvc.lock`` written on one machine was
therefore not reproduced on another with other CPU features, and a shared DVC
cache was never hit.

Importing this module, before anything imports numpy or torch, pins them:

- numpy runs its baseline (X86-64-v2) loops only, whatever the CPU offers:
  transcendental functions then come from the C library, which every
  x86-64 machine of one OS image shares;
- OpenBLAS uses its Haswell kernels (AVX2 and FMA, present on every x86-64
  machine since 2013; left alone on a CPU without them);
- PyTorch's ATen kernels use AVX2 at most, oneDNN likewise, and MKL its
  conditional-numerical-reproducibility branch that gives the same results on
  Intel and AMD processors.

Every stage script imports it first (``tests/test_canonical.py`` checks). The
price is speed where wider kernels would help (see benchmarks/README.md); the
pins apply to stage processes only: importing regimelab as a library never
changes a user's kernels. Values already in the environment are overridden,
so a shell's settings cannot make one machine's outputs differ from another's.
numba is not pinned: it compiles for the host CPU but without fast-math, so it
neither reassociates nor fuses floating-point operations, and it calls the same
C library for transcendental functions.

It also checks, without importing them, that the pipeline's dependencies are
installed (see :mod:`regimelab.extras`): a stage started on an inference-only
install ends with one ``error:`` line and exit status 2 before any of its
imports fail.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from regimelab.exceptions import MissingDependencyError
from regimelab.extras import require_pipeline

# Every feature group numpy 2.x dispatches to above its X86-64-v2 baseline. An
# absent feature is ignored; a name this numpy does not know only warns.
NUMPY_DISABLED = "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
_PINNED_MODULES = ("numpy", "torch", "scipy", "sklearn")


def _cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def pins(flags: set[str] | None = None) -> dict[str, str]:
    """The environment variables that pin the kernels on a CPU with these flags."""
    flags = _cpu_flags() if flags is None else flags
    env = {
        "NPY_DISABLE_CPU_FEATURES": NUMPY_DISABLED,
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "COMPATIBLE",
    }
    if {"avx2", "fma"} <= flags:
        env["OPENBLAS_CORETYPE"] = "Haswell"
    return env


def pin() -> bool:
    """Set the pins in this process's environment; False where a library has already loaded."""
    if any(name in sys.modules for name in _PINNED_MODULES):
        return False
    os.environ.update(pins())
    return True


PINNED = pin()


def check_pipeline() -> None:
    """End this (stage) process with one line if the pipeline extra is missing."""
    try:
        require_pipeline(sys.argv[0] or "this stage")
    except MissingDependencyError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None  # a user's mistake, as regimelab.stage exits


check_pipeline()
