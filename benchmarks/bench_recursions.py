"""The DSSM's recursions: the project's numba kernels against the plain-library way.

``regimelab.families.dssm.recursions`` runs forward, smooth (forward-backward)
and Viterbi in numba kernels of its own. Before, a transition matrix that is the
same every bar went to hmmlearn's private compiled ``_hmmc`` and one per bar to
a numpy loop over the bars. This script times all three ways on one chain and
checks that they agree:

- ``constant``: one (K, K) matrix: the kernels against ``hmmlearn._hmmc``;
- ``per-bar``: a (T, K, K) matrix a bar: the kernels against the numpy loop.

Figures are medians of ``--repeats`` runs (the kernels compiled beforehand);
output goes to ``benchmarks/out/recursions.json``.

Usage::

    .venv/bin/python benchmarks/bench_recursions.py              # 20,000 bars, 4 states
    .venv/bin/python benchmarks/bench_recursions.py --bars 200000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from hmmlearn import _hmmc
from scipy.special import log_softmax

from regimelab.families.dssm import recursions

OUT = Path(__file__).resolve().parent / "out" / "recursions.json"


def numpy_loop(log_start: np.ndarray, log_trans: np.ndarray, log_emit: np.ndarray
               ) -> tuple[float, np.ndarray, np.ndarray]:
    """Forward, backward and Viterbi with a numpy step a bar (the code before the kernels)."""
    shift = log_emit.max(axis=1, keepdims=True)
    emit, start, trans = np.exp(log_emit - shift), np.exp(log_start), np.exp(log_trans)
    n, k = emit.shape
    filtered, norm = np.empty((n, k)), np.empty(n)
    alpha = start * emit[0]
    for t in range(n):
        if t:
            alpha = (alpha @ trans[t]) * emit[t]
        norm[t] = alpha.sum()
        alpha = alpha / norm[t]
        filtered[t] = alpha
    beta = np.empty((n, k))
    beta[-1] = 1.0
    for t in range(n - 2, -1, -1):
        beta[t] = trans[t + 1] @ (emit[t + 1] * beta[t + 1]) / norm[t + 1]
    post = filtered * beta
    back = np.empty((n, k), dtype=np.int64)
    delta = log_start + log_emit[0]
    for t in range(1, n):
        scores = delta[:, None] + log_trans[t]
        back[t] = scores.argmax(axis=0)
        delta = scores[back[t], np.arange(k)] + log_emit[t]
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(delta.argmax())
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return (float(np.log(norm).sum() + shift.sum()), post / post.sum(axis=1, keepdims=True),
            path)


def hmmlearn_private(log_start: np.ndarray, log_trans: np.ndarray, log_emit: np.ndarray
                     ) -> tuple[float, np.ndarray, np.ndarray]:
    """The same with hmmlearn's private compiled recursions (one matrix only)."""
    shift = log_emit.max(axis=1, keepdims=True)
    emit, start, trans = np.exp(log_emit - shift), np.exp(log_start), np.exp(log_trans)
    log_prob, fwd, scaling = _hmmc.forward_scaling(start, trans, emit)
    bwd = _hmmc.backward_scaling(start, trans, emit, scaling)
    post = fwd * bwd
    path = _hmmc.viterbi(start, trans, log_emit)[1]
    return float(log_prob + shift.sum()), post / post.sum(axis=1, keepdims=True), path


def kernels(log_start: np.ndarray, log_trans: np.ndarray, log_emit: np.ndarray
            ) -> tuple[float, np.ndarray, np.ndarray]:
    fwd = recursions.forward(log_start, log_trans, log_emit)
    return (fwd.log_likelihood, recursions.smooth(fwd),
            recursions.viterbi(log_start, log_trans, log_emit))


def median_seconds(fn: Any, args: tuple, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--states", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, k = args.bars, args.states
    log_start = log_softmax(rng.normal(size=k))
    log_emit = rng.normal(scale=3.0, size=(n, k)) - 40.0
    per_bar = log_softmax(rng.normal(size=(n, k, k)) + 2.0 * np.eye(k), axis=-1)
    cases = {"constant": (per_bar[1], hmmlearn_private, "hmmlearn._hmmc"),
             "per-bar": (per_bar, numpy_loop, "numpy loop")}
    report: dict[str, Any] = {"bars": n, "states": k, "repeats": args.repeats}
    for case, (log_trans, baseline, name) in cases.items():
        inputs = (log_start, log_trans, log_emit)
        ours, theirs = kernels(*inputs), baseline(*inputs)  # also compiles the kernels
        row = {
            "baseline": name,
            "kernels_s": median_seconds(kernels, inputs, args.repeats),
            "baseline_s": median_seconds(baseline, inputs, args.repeats),
            "log_likelihood_rel_diff": abs(ours[0] - theirs[0]) / abs(theirs[0]),
            "smoothed_max_abs_diff": float(np.abs(ours[1] - theirs[1]).max()),
            "viterbi_paths_equal": bool(np.array_equal(ours[2], theirs[2])),
        }
        row["speedup"] = row["baseline_s"] / row["kernels_s"]
        report[case] = row
        print(f"{case:9s} kernels {row['kernels_s'] * 1e3:8.1f} ms   {name:15s} "
              f"{row['baseline_s'] * 1e3:8.1f} ms   x{row['speedup']:.1f}   "
              f"LL rel. diff {row['log_likelihood_rel_diff']:.1e}, smoothed max diff "
              f"{row['smoothed_max_abs_diff']:.1e}, same Viterbi path: "
              f"{row['viterbi_paths_equal']}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
