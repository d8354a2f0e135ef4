"""Stage evaluate: one metrics file comparing the HMM, the DSSM and a one-Gaussian baseline."""

from __future__ import annotations

import regimelab.canonical  # noqa: F401  first: pins numeric kernels before numpy loads

# isort: split
import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq

from regimelab.evaluate import evaluate
from regimelab.io import read_json, read_parquet, write_json
from regimelab.models import load_model
from regimelab.params import load_section, parse_timeframe
from regimelab.split import read_splits
from regimelab.stage import run

log = logging.getLogger("stages.evaluate")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--scaled", required=True, help="folder with the scaled splits")
    parser.add_argument("--spec", required=True, help="feature spec (JSON)")
    parser.add_argument("--bars", required=True, help="clean bars (Parquet): forward returns")
    parser.add_argument("--features", required=True,
                        help="feature table (Parquet): its regime column, if any, is the truth")
    parser.add_argument("--model", nargs=3, action="append", required=True,
                        metavar=("NAME", "FOLDER", "REGIMES"),
                        help="a model's name, folder and regimes table; once per model")
    parser.add_argument("--metrics", required=True, help="metrics file (JSON)")
    args = parser.parse_args(argv)

    params = load_section("evaluate", args.params)
    seed = load_section("model", args.params).seed
    spec = read_json(args.spec)
    scaled = Path(args.scaled)
    has_truth = "regime" in pq.read_schema(args.features).names
    report = evaluate(
        regimes={name: read_parquet(table) for name, _, table in args.model},
        models={name: load_model(folder) for name, folder, _ in args.model},
        frames=read_splits(scaled),
        columns=spec["columns"], bars=read_parquet(args.bars),
        step=parse_timeframe(spec["base_timeframe"]), params=params, seed=seed,
        truth=(read_parquet(args.features, columns=["symbol", "timestamp", "regime"])
               if has_truth else None))
    write_json(report, args.metrics)
    for name, _, _ in args.model:
        block = report[name]
        ll = block["ll_per_bar"]
        # A family without a likelihood (the jump model) reports None for both.
        fit = ("no likelihood" if ll["test"] is None else
               f"test {ll['test']:.4f} nats/bar (held out), val {ll['val']:.4f} (used for "
               "model choice)")
        log.info("%s: K=%d, %s, largest share %.2f, mean dwell %.1f bars", name,
                 block["n_states"], fit, block["largest_share"], block["dwell_mean_bars"])


if __name__ == "__main__":
    sys.exit(run(main))
