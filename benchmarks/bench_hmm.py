"""select-states' HMM grid against the naive hmmlearn loop, at equal answers.

Both sides search the same grid (params.yaml's select.grid, 2..8 states x diag
and full by default) on the same scaled training split (v1 features by
default, about 51k hourly bars of the sample data), with the same restarts
(hmm.n_init), the same iteration cap (hmm.n_iter) and the same stopping rule:
EM stops when it gains less than hmm.tol nats per bar. hmmlearn's ``tol`` is
the gain of the total log-likelihood, so the naive loop gets
``tol = hmm.tol * n_bars``. Both fit the same regularised model: hmmlearn uses
``min_covar`` only to start the covariances, so the naive loop adds it to the
diagonal after every M-step (a four-line subclass, what scikit-learn's
``reg_covar`` does), as regimelab does; without that floor full covariances
collapse onto the v1 set's near-duplicate pair (close_open_pct and log_return
correlate at 0.9994) and their likelihoods are not those of the same model.

- **regimelab**: :func:`regimelab.selection.search_grid` as select-states runs
  it (restarts run hmm.short_iter EM iterations and the hmm.n_continue best
  go on; the scaling E-step; smoothed and single-bar k-means starts; two
  candidates at a time in threads through Optuna). Only the grid is timed:
  the regime scan that select-states runs after it has no naive counterpart.
  Full covariances over the collinear pair are fitted as with
  ``hmm.allow_collinear: true`` (the stage refuses them by default).
- **naive**: for each candidate, hmm.n_init restarts of ``GaussianHMM`` with
  hmmlearn's ``log`` E-step and its own k-means start, one after another,
  every restart to convergence; the best log-likelihood per candidate, then
  the lowest BIC.

For every candidate the script prints the training log-likelihood gap
(regimelab minus naive) in nats per bar and in BIC units (twice the total
gap: positive means regimelab found the better optimum), both sides' restart
spreads (best minus worst converged restart, BIC units), and the decision each
side takes by BIC. Wall and CPU seconds are both reported: on a shared machine
the wall time depends on the load, the CPU time much less.

Usage::

    .venv/bin/python benchmarks/bench_hmm.py                 # the full default grid
    .venv/bin/python benchmarks/bench_hmm.py --covariance diag --states 2 3 4 5 6
    .venv/bin/python benchmarks/bench_hmm.py --quick         # 2..4 states, diag: a smoke run
    .venv/bin/python benchmarks/bench_hmm.py --naive-total-tol 0.01   # and hmmlearn's default
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from hmmlearn.hmm import GaussianHMM

from pipeline_data import scaled_splits
from regimelab.choice import choose
from regimelab.params import GridParams, HMMParams, load_section
from regimelab.selection import decision_noise, fresh_sqlite_storage, search_grid
from regimelab.sequences import to_sequences

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


class FlooredGaussianHMM(GaussianHMM):
    """hmmlearn's GaussianHMM with ``min_covar`` added after every M-step (sklearn's reg_covar)."""

    def _do_mstep(self, stats: dict[str, Any]) -> None:
        super()._do_mstep(stats)
        if self.covariance_type in ("full", "tied"):
            self._covars_ = self._covars_ + self.min_covar * np.eye(self._covars_.shape[-1])
        else:
            self._covars_ = self._covars_ + self.min_covar


def scaled_data(feature_set: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                           list[str]]:
    """The sample data through scale, as the stages do it, with ``feature_set``."""
    _, frames, columns = scaled_splits(feature_set)
    X, lengths = to_sequences(frames["train"], columns)
    X_val, lengths_val = to_sequences(frames["val"], columns)
    return X, lengths, X_val, lengths_val, columns


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def naive(X: np.ndarray, lengths: np.ndarray, X_val: np.ndarray, lengths_val: np.ndarray, *,
          grid: GridParams, hmm: HMMParams, tol_total: float) -> dict[str, Any]:
    """The plain hmmlearn loop: every restart to convergence at ``tol_total``, in sequence."""
    rows: dict[str, dict[str, Any]] = {}
    wall0, cpu0 = clocks()
    for k in grid.n_states:
        for cov in grid.covariance_type:
            t0 = time.perf_counter()
            lls, iters, best = [], [], None
            for seed in range(hmm.n_init):
                model = FlooredGaussianHMM(k, covariance_type=cov, n_iter=hmm.n_iter,
                                           tol=tol_total, min_covar=hmm.min_covar,
                                           random_state=seed)
                try:
                    model.fit(X, lengths)
                    ll = model.score(X, lengths)
                except (ValueError, np.linalg.LinAlgError):
                    continue
                if not np.isfinite(ll):
                    continue
                lls.append(ll)
                iters.append(model.monitor_.iter)
                if best is None or ll > best[0]:
                    best = (ll, model)
            seconds = time.perf_counter() - t0
            key = f"k{k}_{cov}"
            if best is None:
                rows[key] = {"status": "failed", "n_states": k, "covariance_type": cov,
                             "seconds": seconds}
                continue
            ll, model = best
            rows[key] = {
                "status": "complete", "n_states": k, "covariance_type": cov,
                "train_ll_per_bar": ll / len(X), "bic": model.bic(X, lengths),
                "val_ll_per_bar": model.score(X_val, lengths_val) / len(X_val),
                "restart_bic_spread": 2.0 * (max(lls) - min(lls)),
                "restarts_converged": len(lls), "iterations": iters,
                "hit_cap": sum(i >= hmm.n_iter for i in iters), "seconds": seconds}
            print(f"  naive K={k} {cov:4s}: {seconds:6.1f} s, iterations {iters}, train "
                  f"{ll / len(X):.5f} nats/bar, BIC {rows[key]['bic']:.1f}", flush=True)
    wall1, cpu1 = clocks()
    done = [r for r in rows.values() if r["status"] == "complete"]
    best_bic = min(done, key=lambda r: r["bic"])
    return {"wall_seconds": wall1 - wall0, "cpu_seconds": cpu1 - cpu0, "tol_total": tol_total,
            "candidates": rows, "lowest_bic": best_bic_key(best_bic)}


def best_bic_key(row: dict[str, Any]) -> str:
    return f"k{row['n_states']}_{row['covariance_type']}"


def ours(X: np.ndarray, lengths: np.ndarray, X_val: np.ndarray, lengths_val: np.ndarray,
         columns: list[str], *, grid: GridParams, hmm: HMMParams) -> dict[str, Any]:
    select = replace(load_section("select", ROOT / "params.yaml"), grid=grid)
    seed = load_section("model", ROOT / "params.yaml").seed
    wall0, cpu0 = clocks()
    candidates = search_grid(X, lengths, X_val, lengths_val, select=select, hmm=hmm, seed=seed,
                             storage=fresh_sqlite_storage(OUT / "bench_hmm_study.db"),
                             name="bench", feature_names=columns)
    wall1, cpu1 = clocks()
    rows = list(candidates.values())
    done = [r for r in rows if r["status"] == "complete"]
    lowest = min(done, key=lambda r: r["bic"])
    tied = choose(rows, criterion="bic", tie_tolerance=select.tie_tolerance, n_train=len(X))
    return {"wall_seconds": wall1 - wall0, "cpu_seconds": cpu1 - cpu0,
            "candidates": candidates, "lowest_bic": best_bic_key(lowest),
            "bic_choice_with_tie_rule": best_bic_key(tied),
            "tie_tolerance": select.tie_tolerance,
            "noise_at_lowest_bic": decision_noise(rows, chosen=lowest, criterion="bic",
                                                  n_train=len(X))}


def compare(mine: dict[str, Any], base: dict[str, Any], n: int) -> dict[str, dict[str, Any]]:
    """Per candidate: the training log-likelihood gap (regimelab - naive) and both spreads."""
    table = {}
    for key, r in mine["candidates"].items():
        b = base["candidates"].get(key, {})
        if r["status"] != "complete" or b.get("status") != "complete":
            table[key] = {"regimelab": r["status"], "naive": b.get("status")}
            continue
        gap = r["train_ll_per_bar"] - b["train_ll_per_bar"]
        table[key] = {
            "ll_gap_per_bar": gap, "ll_gap_bic_units": 2.0 * n * gap,
            "regimelab_restart_bic_spread": 2.0 * n * r["restart_ll_spread_per_bar"],
            "naive_restart_bic_spread": b["restart_bic_spread"],
            "val_ll_gap_per_bar": r["val_ll_per_bar"] - b["val_ll_per_bar"],
            "regimelab_iterations": r["n_iter"], "naive_iterations": b["iterations"]}
    return table


def print_table(table: dict[str, dict[str, Any]], mine: dict[str, Any],
                base: dict[str, Any]) -> None:
    print(f"{'candidate':10s} {'LL gap nats/bar':>16s} {'BIC units':>10s} "
          f"{'spread ours':>11s} {'spread naive':>12s}  BIC ours / naive")
    for key, row in table.items():
        if "ll_gap_per_bar" not in row:
            print(f"{key:10s} not comparable: {row}")
            continue
        print(f"{key:10s} {row['ll_gap_per_bar']:+16.5f} {row['ll_gap_bic_units']:+10.1f} "
              f"{row['regimelab_restart_bic_spread']:11.1f} "
              f"{row['naive_restart_bic_spread']:12.1f}  "
              f"{mine['candidates'][key]['bic']:.1f} / {base['candidates'][key]['bic']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2..4 states, diag only")
    parser.add_argument("--features", default="v1", help="features.set (default v1)")
    parser.add_argument("--states", type=int, nargs="+", help="state counts (default: params)")
    parser.add_argument("--covariance", nargs="+", help="covariance types (default: params)")
    parser.add_argument("--naive-total-tol", type=float, default=None,
                        help="also run the naive loop at this total tolerance "
                             "(hmmlearn's default is 0.01)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    OUT.mkdir(parents=True, exist_ok=True)

    X, lengths, X_val, lengths_val, columns = scaled_data(args.features)
    grid = load_section("select", ROOT / "params.yaml").grid
    if args.quick:
        grid = GridParams(n_states=(2, 3, 4), covariance_type=("diag",))
    grid = GridParams(n_states=tuple(args.states or grid.n_states),
                      covariance_type=tuple(args.covariance or grid.covariance_type))
    hmm = replace(load_section("hmm", ROOT / "params.yaml"), allow_collinear=True)
    n = len(X)
    tol_total = hmm.tol * n
    print(f"data: {n} train bars x {X.shape[1]} features ({args.features}), {len(lengths)} "
          f"segments; grid {list(grid.n_states)} x {list(grid.covariance_type)}, "
          f"{hmm.n_init} restarts; tol {hmm.tol:g} nats/bar = {tol_total:.3f} nats total; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)

    print("regimelab search_grid ...", flush=True)
    mine = ours(X, lengths, X_val, lengths_val, columns, grid=grid, hmm=hmm)
    print(f"naive hmmlearn loop at tol {tol_total:.3f} nats total ...", flush=True)
    base = naive(X, lengths, X_val, lengths_val, grid=grid, hmm=hmm, tol_total=tol_total)
    table = compare(mine, base, n)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "features": args.features,
        "train_bars": n, "n_features": X.shape[1], "restarts": hmm.n_init,
        "tol_per_bar": hmm.tol, "tol_total": tol_total, "min_covar": hmm.min_covar,
        "grid": {"n_states": list(grid.n_states), "covariance_type": list(grid.covariance_type)},
        "load_average_end": None, "regimelab": mine, "naive": base, "per_candidate": table,
        "wall_ratio": base["wall_seconds"] / mine["wall_seconds"],
        "cpu_ratio": base["cpu_seconds"] / mine["cpu_seconds"],
    }
    if args.naive_total_tol is not None:
        print(f"naive hmmlearn loop at tol {args.naive_total_tol:g} nats total ...", flush=True)
        loose = naive(X, lengths, X_val, lengths_val, grid=grid, hmm=hmm,
                      tol_total=args.naive_total_tol)
        report["naive_total_tol"] = loose
        report["per_candidate_total_tol"] = compare(mine, loose, n)
    report["load_average_end"] = os.getloadavg()[0]
    (OUT / "bench_hmm.json").write_text(json.dumps(report, indent=2, default=str) + "\n")

    print()
    print_table(table, mine, base)
    print(f"regimelab: {mine['wall_seconds']:7.1f} s wall, {mine['cpu_seconds']:7.1f} s CPU; "
          f"lowest BIC {mine['lowest_bic']}, with the tie rule {mine['bic_choice_with_tie_rule']}")
    print(f"naive:     {base['wall_seconds']:7.1f} s wall, {base['cpu_seconds']:7.1f} s CPU; "
          f"lowest BIC {base['lowest_bic']}")
    print(f"ratio naive / regimelab: {report['wall_ratio']:.1f}x wall, "
          f"{report['cpu_ratio']:.1f}x CPU")
    noise = mine["noise_at_lowest_bic"]
    print(f"regimelab's lowest BIC {noise['chosen']} beats {noise['runner_up']} by "
          f"{noise['gap']:.1f} BIC; restart spreads {noise['restart_spread']:.1f} and "
          f"{noise['runner_up_restart_spread']:.1f}: within optimiser noise "
          f"{noise['within_optimiser_noise']}")
    if args.naive_total_tol is not None:
        loose = report["naive_total_tol"]
        print(f"naive at tol {args.naive_total_tol:g}: {loose['wall_seconds']:.1f} s wall, "
              f"{loose['cpu_seconds']:.1f} s CPU, lowest BIC {loose['lowest_bic']}")
        print_table(report["per_candidate_total_tol"], mine, loose)


if __name__ == "__main__":
    main()
