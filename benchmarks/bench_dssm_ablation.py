"""Where the DSSM's lead over the HMM comes from: an ablation on the default BTC data.

One table of log-likelihood per bar (nats, exact), the Gaussian HMM (no context)
against the DSSM started from it (params.yaml's ``dssm`` section: a GRU context
that scales each regime's spread, ``emission: scale``), over:

- **the covariance floor**: ``min_covar`` 1e-3 for both families (like with
  like, the defaults), about none for both (1e-9), and the comparison as it was
  published before the DSSM had a floor (HMM 1e-3, DSSM 0);
- **the redundant feature**: the v1 set (eight columns, with
  ``close_open_pct``, correlation 0.9994 with ``log_return`` on train) and v1
  without it;
- **feature groups** of v1 without ``close_open_pct``: the per-bar features
  (``log_return``, ``log_volume_change``, ``hl_range_pct``) and the 20-bar
  rolling ones (``parkinson``, ``return_zscore``, ``relative_volume``,
  ``log_close_vwap``).

Every variant scores the same bars (v1's rows, split and scaled as the stages do:
``featurize``, ``split``, ``scale``, built in this process from data/raw, so
the pipeline's outputs are not touched). Figures of different feature sets have
different dimensions and are not comparable with each other; the DSSM - HMM
gap within a row is. Test is the held-out split; validation chose the DSSM's
early stopping and best epoch, so it is used for model choice, not held out.

For each DSSM it also records, on the test bars, the share of bars whose
context log-scale ``s`` is within 10% of its bound (``|s| > 0.9
max_log_scale``) on each whitened coordinate (coordinate j is feature j given
the features before it): a coordinate pinned at the bound on almost every bar
is a constant variance cut, not volatility clustering.

K = 7 states, full covariances, as the published figures. The DSSM trains at
most ``--epochs`` epochs (default 15, the stage's is 40; patience 5 as the
stage), so its figures are if anything below the stage's.

Usage::

    .venv/bin/python benchmarks/bench_dssm_ablation.py     # about 35 minutes on 2 busy cores
    .venv/bin/python benchmarks/bench_dssm_ablation.py --only v1 --epochs 2   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline_data import scaled_splits
from regimelab.families.dssm.model import RegimeDSSM
from regimelab.families.hmm.fit import make_hmm
from regimelab.families.hmm.model import RegimeHMM
from regimelab.params import load_section
from regimelab.sequences import to_sequences

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "dssm_ablation"
N_STATES = 7
REDUNDANT = "close_open_pct_1h"
PER_BAR = ["log_return_1h", "log_volume_change_1h", "hl_range_pct_1h"]
ROLLING = ["parkinson_20_1h", "return_zscore_20_1h", "relative_volume_20_1h",
           "log_close_vwap_20_1h"]
SPLITS = ("train", "val", "test")
# At the bound: |s| above this share of max_log_scale.
NEAR_BOUND = 0.9

log = logging.getLogger("bench_dssm_ablation")


def variants(v1: list[str]) -> dict[str, dict[str, Any]]:
    """name -> the columns and the floors of the HMM and of the DSSM."""
    without = [c for c in v1 if c != REDUNDANT]
    return {
        "v1, floors as published": {"columns": v1, "hmm_floor": 1e-3, "dssm_floor": 0.0},
        "v1": {"columns": v1, "hmm_floor": 1e-3, "dssm_floor": 1e-3},
        "v1, no floor": {"columns": v1, "hmm_floor": 1e-9, "dssm_floor": 1e-9},
        "v1 - close_open": {"columns": without, "hmm_floor": 1e-3, "dssm_floor": 1e-3},
        "v1 - close_open, no floor": {"columns": without, "hmm_floor": 1e-9,
                                      "dssm_floor": 1e-9},
        "per-bar only": {"columns": PER_BAR, "hmm_floor": 1e-3, "dssm_floor": 1e-3},
        "20-bar rolling only": {"columns": ROLLING, "hmm_floor": 1e-3, "dssm_floor": 1e-3},
    }


def scaled_v1() -> tuple[dict[str, Any], list[str], float]:
    """The default data with the v1 features, through scale, as the stages do it, and the
    correlation of log_return and close_open_pct on the (unscaled) training split."""
    unscaled, frames, columns = scaled_splits("v1")
    train = unscaled["train"]
    corr = float(np.corrcoef(train["log_return_1h"], train[REDUNDANT])[0, 1])
    return frames, columns, corr


def per_bar(model: Any, data: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    return {name: model.score(X, lengths) / len(X) for name, (X, lengths) in data.items()}


def scale_at_bound(model: RegimeDSSM, X: np.ndarray, lengths: np.ndarray,
                   columns: list[str]) -> dict[str, float]:
    """Share of bars whose context log-scale is near its bound, per whitened coordinate."""
    net = model.net_
    if net.scale_head is None:
        return {}
    outputs: list[torch.Tensor] = []
    hook = net.scale_head.register_forward_hook(lambda mod, inp, out: outputs.append(out))
    try:
        with torch.no_grad():
            start = 0
            for n in lengths:
                seq = torch.from_numpy(np.ascontiguousarray(X[start:start + n]))[None]
                net.forward_pass(seq, torch.ones(1, int(n), dtype=torch.bool))
                start += int(n)
    finally:
        hook.remove()
    bound = net.max_log_scale
    s = bound * torch.tanh(torch.cat([o[0:1] for o in outputs]) / bound).numpy()  # (T, D)
    near = np.abs(s) > NEAR_BOUND * bound
    return {name: float(near[:, j].mean()) for j, name in enumerate(columns)}


def run_group(names: list[str], specs: dict[str, dict[str, Any]], frames: dict[str, Any],
              epochs: int) -> dict[str, dict[str, Any]]:
    """Variants that share one HMM, in one worker process (torch on one thread)."""
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    for noisy in ("pytorch_lightning", "lightning", "lightning.pytorch", "regimelab"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(1)
    hmms: dict[tuple, RegimeHMM] = {}
    return {name: run_variant(name, specs[name], frames, epochs=epochs, hmms=hmms)
            for name in names}


def run_variant(name: str, spec: dict[str, Any], frames: dict[str, Any], *,
                epochs: int, hmms: dict[tuple, RegimeHMM]) -> dict[str, Any]:
    columns = spec["columns"]
    data = {split: to_sequences(frames[split], columns) for split in SPLITS}
    hmm_params = replace(load_section("hmm", ROOT / "params.yaml"), min_covar=spec["hmm_floor"])
    seed = load_section("model", ROOT / "params.yaml").seed
    key = (tuple(columns), spec["hmm_floor"])
    t0 = time.perf_counter()
    if key not in hmms:
        hmms[key] = make_hmm(N_STATES, "full", hmm=hmm_params, seed=seed).fit(
            *data["train"], feature_names=columns)
    hmm = hmms[key]
    hmm_seconds = time.perf_counter() - t0
    dssm_params = load_section("dssm", ROOT / "params.yaml")
    settings = {k: v for k, v in asdict(dssm_params).items() if k != "init"}
    settings.update(min_covar=spec["dssm_floor"], max_epochs=epochs)
    t0 = time.perf_counter()
    dssm = RegimeDSSM(N_STATES, random_state=seed, **settings).fit(
        *data["train"], X_val=data["val"][0], lengths_val=data["val"][1], init=hmm,
        feature_names=columns)
    dssm_seconds = time.perf_counter() - t0
    hmm_ll, dssm_ll = per_bar(hmm, data), per_bar(dssm, data)
    at_bound = scale_at_bound(dssm, *data["test"], columns)
    row = {
        "columns": columns, "hmm_min_covar": spec["hmm_floor"],
        "dssm_min_covar": spec["dssm_floor"], "n_states": N_STATES,
        "bars": {split: len(data[split][0]) for split in SPLITS},
        "hmm_ll_per_bar": hmm_ll, "dssm_ll_per_bar": dssm_ll,
        "dssm_start_ll_per_bar_train": dssm.init_log_likelihood_ / len(data["train"][0]),
        "gap": {split: dssm_ll[split] - hmm_ll[split] for split in SPLITS},
        "dssm_epochs": dssm.epochs_, "dssm_best_epoch": dssm.best_epoch_,
        "hmm_min_eigenvalue": float(np.linalg.eigvalsh(hmm.covars_).min()),
        "dssm_min_eigenvalue": float(np.linalg.eigvalsh(dssm.covars_).min()),
        "test_share_scale_at_bound": at_bound,
        "hmm_seconds": hmm_seconds, "dssm_seconds": dssm_seconds,
    }
    worst = max(at_bound, key=at_bound.get) if at_bound else None
    log.info("%s: test HMM %.3f, DSSM %.3f (gap %+.3f); val gap %+.3f; %d epochs (best %d), "
             "%.0f s; scale at its bound on %.0f%% of test bars on %s", name, hmm_ll["test"],
             dssm_ll["test"], row["gap"]["test"], row["gap"]["val"], dssm.epochs_,
             dssm.best_epoch_, dssm_seconds, 100 * (at_bound.get(worst, 0.0)), worst)
    return row


def table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| variant | D | floor HMM / DSSM | test HMM | test DSSM | **test gap** | "
             "val gap (model choice) | scale at bound, test (worst coordinate) |",
             "|---|---:|---|---:|---:|---:|---:|---|"]
    for name, r in rows.items():
        bound = r["test_share_scale_at_bound"]
        worst = max(bound, key=bound.get) if bound else None
        shown = f"{100 * bound[worst]:.0f}% ({worst})" if worst else "n/a"
        lines.append(
            f"| {name} | {len(r['columns'])} | {r['hmm_min_covar']:g} / {r['dssm_min_covar']:g} "
            f"| {r['hmm_ll_per_bar']['test']:.3f} | {r['dssm_ll_per_bar']['test']:.3f} "
            f"| **{r['gap']['test']:+.3f}** | {r['gap']['val']:+.3f} | {shown} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15, help="most DSSM epochs per variant")
    parser.add_argument("--only", action="append", default=None,
                        help="run only this variant (repeatable)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="worker processes, one torch thread each (default 2: two cores)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    OUT.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    frames, v1, corr = scaled_v1()
    specs = variants(v1)
    unknown = set(args.only or []) - set(specs)
    if unknown:
        parser.error(f"--only: unknown variant(s) {sorted(unknown)}; choose from {list(specs)}")
    print(f"v1: {len(frames['train'])} train, {len(frames['val'])} val, {len(frames['test'])} "
          f"test bars; corr(log_return, close_open_pct) on train {corr:.4f}", flush=True)
    # Variants that share an HMM (the same columns and floor) run in one worker.
    groups: dict[tuple, list[str]] = {}
    for name, spec in specs.items():
        if not args.only or name in args.only:
            groups.setdefault((tuple(spec["columns"]), spec["hmm_floor"]), []).append(name)
    ordered = sorted(groups.values(), key=len, reverse=True)
    found: dict[str, dict[str, Any]] = {}
    with ProcessPoolExecutor(max_workers=args.jobs,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_group, names, specs, frames, args.epochs)
                   for names in ordered]
        for future in futures:
            found.update(future.result())
            # Written after every group: a long run that stops keeps what it measured.
            rows = {name: found[name] for name in specs if name in found}
            (OUT / "ablation.json").write_text(json.dumps(
                {"n_states": N_STATES, "max_epochs": args.epochs,
                 "corr_return_close_open": corr, "near_bound": NEAR_BOUND,
                 "variants": rows}, indent=2) + "\n")
    print()
    print(table(rows))
    print(f"\n{time.perf_counter() - start:.0f} s in all; raw figures: "
          f"{(OUT / 'ablation.json').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
