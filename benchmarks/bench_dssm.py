"""train-dssm on the default data: stage time, epoch time, Lightning's overhead, and quality.

Four measurements, in one run:

1. **The stage**, as ``dvc repro`` runs it: ``python stages/train_dssm.py`` in a
   fresh process with params.yaml's ``dssm`` section, on the pipeline's own
   ``data/scaled``, ``models/hmm`` and ``data/regimes/hmm.parquet`` (run
   ``dvc repro train-hmm`` first). Wall time, epochs and the time per epoch
   (from the stage's log), and the log-likelihood per bar against the HMM's in
   ``metrics/train_hmm.json``, the same data and the same units: on test, held
   out, and on validation, which chose the DSSM's epoch and so is not.
2. **Lightning against a plain PyTorch loop**: the same net, windows, batches,
   Adam and gradient clipping, a few epochs each, in this process; seconds per
   epoch and their ratio.
3. **Truth recovery** on synthetic markets whose volatility clusters inside
   each regime (``make_market(3000, n_regimes=3, vol_clustering=0.95)``): ARI
   against the true regimes and test log-likelihood per bar, the HMM (3
   states, full covariance, 3 restarts) and the DSSM started from it.

Usage::

    .venv/bin/python benchmarks/bench_dssm.py            # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/bench_dssm.py --quick    # one synthetic seed, 2 loop epochs
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from regimelab.families.dssm.data import WindowDataModule, make_windows
from regimelab.families.dssm.model import RegimeDSSM, torch_threads
from regimelab.families.dssm.module import DSSMModule
from regimelab.families.hmm.model import RegimeHMM
from regimelab.io import read_json, read_parquet
from regimelab.models import load_model
from regimelab.params import load_section
from regimelab.sequences import to_sequences
from regimelab.synth import make_market

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "dssm"
log = logging.getLogger("bench_dssm")


def run_stage() -> dict[str, Any]:
    """The stage in its own process, outputs under benchmarks/out/dssm."""
    for needed in ("data/scaled/train.parquet", "models/hmm/manifest.json",
                   "data/regimes/hmm.parquet", "metrics/select_states.json"):
        if not (ROOT / needed).is_file():
            sys.exit(f"error: {needed} is missing: run `dvc repro train-hmm` first")
    cmd = [sys.executable, "stages/train_dssm.py", "--scaled", "data/scaled",
           "--spec", "data/features/spec.json", "--selection", "metrics/select_states.json",
           "--hmm", "models/hmm", "--hmm-regimes", "data/regimes/hmm.parquet",
           "--model", str(OUT / "model"), "--regimes", str(OUT / "dssm.parquet"),
           "--metrics", str(OUT / "train_dssm.json"), "--curves", str(OUT / "curves")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"error: the stage failed:\n{proc.stderr}")
    found = re.search(r"trained (\d+) epochs in ([\d.]+) s \(([\d.]+) s per epoch\)", proc.stderr)
    metrics = read_json(OUT / "train_dssm.json")
    hmm = read_json(ROOT / "metrics/train_hmm.json")
    return {"wall_seconds": wall, "fit_seconds": float(found[2]),
            "seconds_per_epoch": float(found[3]), "epochs": metrics["epochs"],
            "best_epoch": metrics["best_epoch"], "n_states": metrics["n_states"],
            "dssm_ll_per_bar": metrics["log_likelihood_per_bar"],
            "hmm_ll_per_bar": hmm["log_likelihood_per_bar"],
            "collapsed_states": metrics["collapsed_states"]}


def plain_loop(module: DSSMModule, data: WindowDataModule, *, epochs: int, clip: float
               ) -> float:
    """Seconds per epoch of the loop a researcher would write without Lightning."""
    optimizer = module.configure_optimizers()
    net = module.net
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for x, mask, count in data.train_dataloader():
            loss = -net.log_likelihood(x, mask, count)[0] / count.sum()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            optimizer.step()
        net.eval()
        with torch.no_grad():
            for x, mask, count in data.val_dataloader():
                net.log_likelihood(x, mask, count)
    return (time.perf_counter() - start) / epochs


def lightning_overhead(epochs: int) -> dict[str, float]:
    """The same epochs through RegimeDSSM.fit (Lightning) and through a plain loop."""
    dssm = load_section("dssm", ROOT / "params.yaml")
    columns = read_json(ROOT / "data/features/spec.json")["columns"]
    X, lengths = to_sequences(read_parquet(ROOT / "data/scaled/train.parquet"), columns)
    X_val, lengths_val = to_sequences(read_parquet(ROOT / "data/scaled/val.parquet"), columns)
    hmm = load_model(ROOT / "models/hmm")
    settings = {k: v for k, v in asdict(dssm).items() if k != "init"}
    settings.update(max_epochs=epochs, patience=epochs)
    model = RegimeDSSM(hmm.n_states, **settings).fit(
        X, lengths, X_val=X_val, lengths_val=lengths_val, init=hmm, feature_names=columns)
    lightning = float(np.mean([r["seconds"] for r in model.history_]))
    shape = {"window": dssm.window, "stride": dssm.stride, "burn_in": dssm.burn_in}
    data = WindowDataModule(make_windows(X, lengths, **shape),
                            make_windows(X_val, lengths_val, **shape),
                            batch_size=dssm.batch_size, seed=0)
    with torch_threads(dssm.num_threads):
        torch.manual_seed(0)
        net = model._new_net(X.shape[1]).double()
        net.init_from_hmm(hmm.startprob_, hmm.transmat_, hmm.means_, hmm.covars_)
        plain = plain_loop(DSSMModule(net, lr=dssm.lr), data, epochs=epochs,
                           clip=dssm.gradient_clip)
    return {"epochs": epochs, "lightning_seconds_per_epoch": lightning,
            "plain_seconds_per_epoch": plain, "ratio": lightning / plain}


def synthetic(seed: int) -> dict[str, float]:
    bars = make_market(3000, n_regimes=3, vol_clustering=0.95, random_state=seed)
    # Per-bar observations: log return, log of log(high/low), log volume, standardised.
    raw = np.column_stack([np.log(bars["close"] / bars["open"]),
                           np.log(np.log(bars["high"] / bars["low"])), np.log(bars["volume"])])
    X = (raw - raw.mean(axis=0)) / raw.std(axis=0)
    columns = ["log_return_1h", "parkinson_1_1h", "log_volume"]
    truth = bars["regime"].to_numpy()
    n_train, n_val = 2100, 2550
    hmm = RegimeHMM(3, covariance_type="full", n_init=3, random_state=0).fit(
        X[:n_train], np.array([n_train]), feature_names=columns)
    start = time.perf_counter()
    dssm = RegimeDSSM(3, hidden=16, window=128, stride=96, burn_in=16, batch_size=8,
                      max_epochs=15, patience=5, lr=1e-2).fit(
        X[:n_train], np.array([n_train]), X_val=X[n_train:n_val],
        lengths_val=np.array([n_val - n_train]), init=hmm, feature_names=columns)
    seconds = time.perf_counter() - start
    whole, test = np.array([len(X)]), np.array([len(X) - n_val])
    return {"seed": seed,
            "hmm_ari": adjusted_rand_score(truth, hmm.predict(X, whole)),
            "dssm_ari": adjusted_rand_score(truth, dssm.predict(X, whole)),
            "hmm_test_ll": hmm.score(X[n_val:], test) / test[0],
            "dssm_test_ll": dssm.score(X[n_val:], test) / test[0],
            "dssm_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed, two loop epochs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("pytorch_lightning", "lightning", "regimelab"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    OUT.mkdir(parents=True, exist_ok=True)

    report: dict[str, Any] = {"stage": run_stage()}
    s = report["stage"]
    log.info("stage: %.1f s wall, %d epochs (best %d), %.2f s per epoch; K=%d", s["wall_seconds"],
             s["epochs"], s["best_epoch"], s["seconds_per_epoch"], s["n_states"])
    for split, role in (("train", "fitted"), ("val", "chose the epoch"), ("test", "held out")):
        log.info("  %-5s (%s) log-likelihood per bar: DSSM %.4f, HMM %.4f", split, role,
                 s["dssm_ll_per_bar"][split], s["hmm_ll_per_bar"][split])
    report["lightning"] = lightning_overhead(2 if args.quick else 4)
    o = report["lightning"]
    log.info("Lightning %.2f s per epoch, plain loop %.2f s: ratio %.3f",
             o["lightning_seconds_per_epoch"], o["plain_seconds_per_epoch"], o["ratio"])
    report["synthetic"] = [synthetic(seed) for seed in ([0] if args.quick else range(5))]
    for r in report["synthetic"]:
        log.info("synthetic seed %d: ARI HMM %.3f, DSSM %.3f; test ll HMM %.3f, DSSM %.3f "
                 "(DSSM fit %.0f s)", r["seed"], r["hmm_ari"], r["dssm_ari"], r["hmm_test_ll"],
                 r["dssm_test_ll"], r["dssm_seconds"])
    (OUT / "bench_dssm.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
