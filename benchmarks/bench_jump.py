"""RegimeJump against the reference implementation, jumpmodels, on the default data.

Both fit the same array: jumpmodels' example features (EWM return, log EWM
downside deviation and EWM Sortino ratio of the hourly log returns, at
half-lives of 24, 72 and 240 hours, pandas ``ewm`` as in jumpmodels'
``examples/nasdaq/feature.py``) of ``data/raw/btcusdt_1h.csv.gz``, clipped at
three standard deviations and standardised on the first 70% of the bars (the
training part, about 51k bars), which is what both models see. jumpmodels has
no notion of gaps, so the training part is passed to RegimeJump as one
sequence too (the raw file has 27 short outages).

For the discrete model (K=2, lambda=200) and the continuous one (K=2,
lambda=200, grid 0.05), both with 10 restarts and random_state 0, the script
times ``jumpmodels.JumpModel(...).fit`` and ``RegimeJump(...).fit`` in the same
process (the median of two jumpmodels fits and of five RegimeJump fits, after
untimed small fits that load numba's compiled kernels), prints both
objectives, their relative difference (target below 1e-6) and the agreement of
the two partitions, and writes the raw figures to
``benchmarks/out/bench_jump.json``.

Usage::

    .venv/bin/python benchmarks/bench_jump.py            # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/bench_jump.py --quick    # 10,000 bars, one repeat: 30 s
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jumpmodels.jump import JumpModel
from sklearn.metrics import adjusted_rand_score

from regimelab.families.jump.model import RegimeJump

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
DATA = ROOT / "data" / "raw" / "btcusdt_1h.csv.gz"
HALFLIVES = (24, 72, 240)
TRAIN_SHARE = 0.7
CASES = {
    "discrete": {"n_states": 2, "jump_penalty": 200.0, "cont": False},
    "continuous": {"n_states": 2, "jump_penalty": 200.0, "cont": True, "grid_size": 0.05},
}


def features(path: Path) -> np.ndarray:
    """Clipped, standardised training features, shape (n_train, 9)."""
    close = pd.read_csv(path, usecols=["timestamp", "close"])["close"]
    ret = np.log(close).diff().iloc[1:].reset_index(drop=True)
    columns = {}
    for hl in HALFLIVES:
        ewm_ret = ret.ewm(halflife=hl).mean()
        dd = np.sqrt(np.minimum(ret, 0.0).pow(2).ewm(halflife=hl).mean())
        columns[f"ret_{hl}"] = ewm_ret
        with np.errstate(divide="ignore"):  # a zero downside deviation before the first loss
            columns[f"dd_log_{hl}"] = np.log(dd)
        columns[f"sortino_{hl}"] = ewm_ret / dd
    X = pd.DataFrame(columns).to_numpy()
    X = X[np.isfinite(X).all(axis=1).argmax():]  # drop the warm-up rows that are not finite
    train = X[:int(TRAIN_SHARE * len(X))]
    # jumpmodels' DataClipperStd(mul=3) then StandardScalerPD, both fitted on train.
    mean, std = train.mean(axis=0), train.std(axis=0)
    train = np.clip(train, mean - 3 * std, mean + 3 * std)
    return np.ascontiguousarray((train - train.mean(axis=0)) / train.std(axis=0))


def timed(fit: Any, repeats: int) -> tuple[list[float], Any]:
    seconds, model = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        model = fit()
        seconds.append(time.perf_counter() - start)
    return seconds, model


def partition(proba: np.ndarray) -> np.ndarray:
    """Each bar's probability vector as an id (the partition, up to renaming states)."""
    return np.unique(proba, axis=0, return_inverse=True)[1].ravel()


def run_case(X: np.ndarray, settings: dict[str, Any], ref_repeats: int, our_repeats: int
             ) -> dict[str, Any]:
    common = {k: v for k, v in settings.items() if k != "n_states"}
    k = settings["n_states"]
    lengths = np.array([len(X)])
    ref_seconds, ref = timed(
        lambda: JumpModel(n_components=k, n_init=10, random_state=0, **common).fit(X),
        ref_repeats)
    our_seconds, ours = timed(
        lambda: RegimeJump(k, n_init=10, random_state=0, **common).fit(X, lengths),
        our_repeats)
    ref_median, our_median = statistics.median(ref_seconds), statistics.median(our_seconds)
    return {
        "settings": {**settings, "n_init": 10, "random_state": 0},
        "jumpmodels_seconds": ref_seconds, "regimelab_seconds": our_seconds,
        "jumpmodels_median": ref_median, "regimelab_median": our_median,
        "speedup": ref_median / our_median,
        "jumpmodels_objective": float(ref.val_), "regimelab_objective": ours.objective_,
        "objective_relative_difference": float(abs(ours.objective_ - ref.val_) / abs(ref.val_)),
        "partition_ari": float(adjusted_rand_score(
            partition(np.asarray(ref.proba_)), partition(ours.predict_proba(X, lengths)))),
        "regimelab_restart_objectives": [r.objective for r in ours.restarts_],
        "regimelab_n_iter": ours.n_iter_,
        "switches": int((np.diff(ours.predict(X, lengths)) != 0).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="the first 10,000 training bars, one jumpmodels repeat")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    X = features(DATA)
    if args.quick:
        X = X[:10_000]
    ref_repeats, our_repeats = (1, 3) if args.quick else (2, 5)
    print(f"data: {len(X)} training bars x {X.shape[1]} features; repeats: jumpmodels "
          f"{ref_repeats}, regimelab {our_repeats}", flush=True)
    start = time.perf_counter()
    RegimeJump(2, n_init=1).fit(X[:2000], [2000])
    RegimeJump(2, cont=True, n_init=1).fit(X[:2000], [2000])
    warm_up = time.perf_counter() - start
    print(f"numba kernels loaded (or compiled) and a small fit: {warm_up:.2f} s", flush=True)

    report: dict[str, Any] = {"train_bars": len(X), "features": X.shape[1],
                              "quick": args.quick, "warm_up_seconds": warm_up, "cases": {}}
    for name, settings in CASES.items():
        print(f"{name} ...", flush=True)
        row = run_case(X, settings, ref_repeats, our_repeats)
        report["cases"][name] = row
        print(f"  jumpmodels: median {row['jumpmodels_median']:7.2f} s  "
              f"objective {row['jumpmodels_objective']:.10g}")
        print(f"  regimelab:  median {row['regimelab_median']:7.3f} s  "
              f"objective {row['regimelab_objective']:.10g}")
        print(f"  speed-up {row['speedup']:.0f}x (target >= 20x); objective relative "
              f"difference {row['objective_relative_difference']:.2e} (target < 1e-6); "
              f"partition ARI {row['partition_ari']:.6f}", flush=True)
    (OUT / "bench_jump.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"raw figures: {(OUT / 'bench_jump.json').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
