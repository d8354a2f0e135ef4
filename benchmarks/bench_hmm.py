"""select-states against the naive loop a researcher would write with hmmlearn.

Both search the same grid (params.yaml's select.grid, 2..8 states x diag and
full by default) on the same scaled training split of the default data (v1
features, about 50k hourly bars), with the same number of restarts
(hmm.n_init). The naive loop runs each restart with hmmlearn's defaults as a
user would: ``GaussianHMM(n_iter=200, tol=1e-3)`` (an absolute tolerance),
``implementation="log"``, its own k-means initialisation per restart, one
candidate after another, keeping the best log-likelihood per candidate and
choosing the lowest BIC. regimelab's select-states runs as the stage does.

The script prints both wall times, their ratio, the chosen state counts, and
how far the chosen model's training log-likelihood is from the naive best for
the same candidate.

Usage::

    .venv/bin/python benchmarks/bench_hmm.py            # full grid: about 30 minutes
    .venv/bin/python benchmarks/bench_hmm.py --quick    # 2..4 states, diag: a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from hmmlearn.hmm import GaussianHMM

from regimelab.data import ingest
from regimelab.features import build_features
from regimelab.params import GridParams, load_section, parse_timeframe
from regimelab.scaling import fit_scaler
from regimelab.selection import fresh_sqlite_storage, run_selection
from regimelab.sequences import to_sequences
from regimelab.split import split_features

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


def scaled_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The default data through scale, as the stages do it."""
    params = {s: load_section(s, ROOT / "params.yaml")
              for s in ("ingest", "features", "split", "scale")}
    bars = ingest(str(ROOT / params["ingest"].path)).bars
    feats = build_features(bars, params=params["features"])
    split = split_features(feats.table, params=params["split"],
                           lookback_bars=feats.spec["lookback_bars"],
                           base=parse_timeframe(feats.spec["base_timeframe"]))
    columns = feats.spec["columns"]
    scaler = fit_scaler(split.frames["train"], columns=columns,
                        method=params["scale"].method, clip=params["scale"].clip)
    X, lengths = to_sequences(scaler.transform(split.frames["train"]), columns)
    X_val, lengths_val = to_sequences(scaler.transform(split.frames["val"]), columns)
    return X, lengths, X_val, lengths_val, columns


def naive(X: np.ndarray, lengths: np.ndarray, X_val: np.ndarray, lengths_val: np.ndarray,
          grid: GridParams, n_init: int) -> dict[str, Any]:
    """The plain hmmlearn loop: every restart to hmmlearn's convergence, in sequence."""
    rows = {}
    start = time.perf_counter()
    for k in grid.n_states:
        for cov in grid.covariance_type:
            t0 = time.perf_counter()
            best, iters = None, []
            for seed in range(n_init):
                model = GaussianHMM(k, covariance_type=cov, n_iter=200, tol=1e-3,
                                    random_state=seed)
                try:
                    model.fit(X, lengths)
                    ll = model.score(X, lengths)
                except ValueError:
                    continue
                iters.append(model.monitor_.iter)
                if np.isfinite(ll) and (best is None or ll > best[0]):
                    best = (ll, model)
            seconds = time.perf_counter() - t0
            if best is None:
                rows[f"k{k}_{cov}"] = {"failed": True, "seconds": seconds}
                continue
            ll, model = best
            rows[f"k{k}_{cov}"] = {
                "n_states": k, "covariance_type": cov, "train_ll": ll,
                "bic": model.bic(X, lengths), "val_ll_per_bar":
                model.score(X_val, lengths_val) / len(X_val),
                "iterations": iters, "seconds": seconds}
            print(f"  naive K={k} {cov:4s}: {seconds:6.1f} s, iterations {iters}", flush=True)
    total = time.perf_counter() - start
    done = [r for r in rows.values() if not r.get("failed")]
    choice = min(done, key=lambda r: r["bic"])
    return {"seconds": total, "candidates": rows,
            "choice": {"n_states": choice["n_states"],
                       "covariance_type": choice["covariance_type"]}}


def ours(X: np.ndarray, lengths: np.ndarray, X_val: np.ndarray, lengths_val: np.ndarray,
         columns: list[str], grid: GridParams) -> dict[str, Any]:
    select = replace(load_section("select", ROOT / "params.yaml"), grid=grid)
    hmm = load_section("hmm", ROOT / "params.yaml")
    seed = load_section("model", ROOT / "params.yaml").seed
    start = time.perf_counter()
    result = run_selection(X, lengths, X_val, lengths_val, select=select, hmm=hmm, seed=seed,
                           storage=fresh_sqlite_storage(OUT / "bench_hmm_study.db"),
                           name="bench", feature_names=columns)
    result["seconds"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2..4 states, diag only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    OUT.mkdir(parents=True, exist_ok=True)

    X, lengths, X_val, lengths_val, columns = scaled_data()
    grid = (GridParams(n_states=(2, 3, 4), covariance_type=("diag",)) if args.quick
            else load_section("select", ROOT / "params.yaml").grid)
    n_init = load_section("hmm", ROOT / "params.yaml").n_init
    print(f"data: {len(X)} train bars x {X.shape[1]} features, {len(lengths)} segments; "
          f"grid {list(grid.n_states)} x {list(grid.covariance_type)}, {n_init} restarts")

    print("regimelab select-states ...", flush=True)
    mine = ours(X, lengths, X_val, lengths_val, columns, grid)
    print("naive hmmlearn loop ...", flush=True)
    base = naive(X, lengths, X_val, lengths_val, grid, n_init)

    key = f"k{mine['choice']['n_states']}_{mine['choice']['covariance_type']}"
    our_ll = mine["candidates"][key]["train_ll_per_bar"] * len(X)
    naive_ll = base["candidates"][key]["train_ll"]
    rel = (naive_ll - our_ll) / abs(naive_ll)
    report = {
        "train_bars": len(X), "features": X.shape[1], "restarts": n_init,
        "grid": {"n_states": list(grid.n_states), "covariance_type": list(grid.covariance_type)},
        "regimelab_seconds": mine["seconds"], "naive_seconds": base["seconds"],
        "speedup": base["seconds"] / mine["seconds"],
        "regimelab_choice": mine["choice"], "naive_choice": base["choice"],
        "chosen_train_ll_regimelab": our_ll, "chosen_train_ll_naive": naive_ll,
        "chosen_ll_shortfall_relative": rel,
        "naive_candidates": base["candidates"], "regimelab_candidates": mine["candidates"],
    }
    (OUT / "bench_hmm.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print()
    print(f"regimelab select-states: {mine['seconds']:8.1f} s   choice {mine['choice']}")
    print(f"naive hmmlearn loop:     {base['seconds']:8.1f} s   choice {base['choice']}")
    print(f"speed-up: {report['speedup']:.1f}x (target >= 10x)")
    print(f"chosen model's train log-likelihood: regimelab {our_ll:.1f}, naive best "
          f"{naive_ll:.1f} nats; shortfall {100 * rel:.4f}% (target within 0.1%)")
    same = all(mine["choice"][k] == base["choice"][k] for k in ("n_states", "covariance_type"))
    report["same_choice"] = same
    (OUT / "bench_hmm.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"same choice: {same}")


if __name__ == "__main__":
    main()
