"""Does ``model.n_states: auto`` find the true state count on realistic markets?

For K in {3, 4, 5} and seeds 0-4, a synthetic hourly market from
``regimelab.synth.make_realistic_market`` (50,000 bars: semi-Markov regimes
lasting 3-10 days, GARCH clustering inside them, Student-t shocks, ten
outages) goes through the pipeline's own steps with params.yaml's settings:
``build_features``, the chronological split, the scaler fitted on train, then
select-states' regime scan (:func:`regimelab.selection.run_scan`) and its
choice (:func:`regimelab.scan.choose_n_states`). The HMM grid is left out: with
the ``stability`` criterion it only tabulates, it does not choose. At the
chosen count and calibrated penalty, the jump model (train-jump's fit) is
scored on the **test** split against the truth: the adjusted Rand index of its
hindsight path and of its filtered (causal) labels.

    .venv/bin/python benchmarks/bench_select.py            # 15 markets, about 15 minutes
    .venv/bin/python benchmarks/bench_select.py --quick    # K = 3 and 4, seed 0

Raw figures: benchmarks/out/bench_select.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from regimelab.choice import min_dwell_bars
from regimelab.families.jump import fit as jump_fit
from regimelab.features import build_features
from regimelab.params import load_section, parse_timeframe
from regimelab.scaling import fit_scaler
from regimelab.scan import choose_n_states
from regimelab.selection import run_scan
from regimelab.sequences import to_sequences
from regimelab.split import split_features
from regimelab.synth import make_realistic_market

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


def one_market(n_regimes: int, seed: int, params: str) -> dict:
    features = load_section("features", params)
    select = load_section("select", params)
    jump = load_section("jump", params)
    scale = load_section("scale", params)
    bars = make_realistic_market(50_000, n_regimes=n_regimes, random_state=seed)
    result = build_features(bars, params=features)
    columns = result.spec["columns"]
    splits = split_features(result.table, params=load_section("split", params),
                            lookback_bars=result.spec["lookback_bars"],
                            base=parse_timeframe(result.spec["base_timeframe"]))
    scaler = fit_scaler(splits.frames["train"], columns=columns, method=scale.method,
                        clip=scale.clip)
    frames = {name: scaler.transform(frame) for name, frame in splits.frames.items()}
    X, lengths = to_sequences(frames["train"], columns)
    X_val, lengths_val = to_sequences(frames["val"], columns)
    min_dwell = min_dwell_bars(select, parse_timeframe(result.spec["base_timeframe"]))
    start = time.perf_counter()
    scan = run_scan(X, lengths, X_val, lengths_val, select=select, jump=jump,
                    min_dwell=min_dwell, seed=0, feature_names=columns)
    rows = [r for r in scan.values() if r["status"] == "complete"]
    chosen, passed = choose_n_states(rows, min_stability=select.min_stability,
                                     min_separation=select.min_separation)
    seconds = time.perf_counter() - start
    penalty = scan[f"k{chosen}"]["jump_penalty"]
    model = jump_fit.make_jump(chosen, jump=jump, jump_penalty=penalty, seed=0).fit(
        X, lengths, feature_names=columns)
    X_test, lengths_test = to_sequences(frames["test"], columns)
    truth = frames["test"]["regime"].to_numpy()
    hindsight = adjusted_rand_score(truth, model.predict(X_test, lengths_test))
    filtered = adjusted_rand_score(truth, model.filter_proba(X_test, lengths_test).argmax(axis=1))
    return {"n_regimes": n_regimes, "seed": seed, "chosen": chosen, "passed": passed,
            "jump_penalty": penalty, "ari_hindsight": hindsight, "ari_filtered": filtered,
            "scan_seconds": seconds,
            "scan": {k: {key: r.get(key) for key in ("stability", "separation", "jump_penalty",
                                                     "median_dwell_val", "status")}
                     for k, r in scan.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cases = ([(3, 0), (4, 0)] if args.quick
             else [(k, s) for k in (3, 4, 5) for s in range(5)])
    results = []
    for k, s in cases:
        row = one_market(k, s, args.params)
        results.append(row)
        print(f"K={k} seed={s}: chose {row['chosen']} (lambda {row['jump_penalty']:g}), test ARI "
              f"hindsight {row['ari_hindsight']:.3f}, filtered {row['ari_filtered']:.3f}; "
              f"stability " + " ".join(f"{key}:{v['stability']:.2f}/{v['separation']:.2f}"
                                       for key, v in row["scan"].items()
                                       if v["status"] == "complete")
              + f"; scan {row['scan_seconds']:.0f} s", flush=True)
    print("\nK  right  mean ARI hindsight  mean ARI filtered  mean gap")
    for k in sorted({r["n_regimes"] for r in results}):
        rs = [r for r in results if r["n_regimes"] == k]
        right = sum(r["chosen"] == k for r in rs)
        h = np.mean([r["ari_hindsight"] for r in rs])
        f = np.mean([r["ari_filtered"] for r in rs])
        print(f"{k}  {right}/{len(rs)}    {h:.3f}               {f:.3f}              {h - f:.3f}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_select.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
