"""Stage diagnose: figures and tables of each model for `dvc plots show`, and a diagnostics CSV."""

from __future__ import annotations

import regimelab.canonical  # noqa: F401  first: pins numeric kernels before numpy loads

# isort: split
import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from regimelab.diagnose import diagnose
from regimelab.io import read_json, read_parquet, replace_dir, write_csv
from regimelab.models import load_model
from regimelab.params import load_section
from regimelab.split import read_splits
from regimelab.stage import run

log = logging.getLogger("stages.diagnose")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--scaled", required=True, help="folder with the scaled splits")
    parser.add_argument("--spec", required=True, help="feature spec (JSON)")
    parser.add_argument("--bars", required=True, help="clean bars (Parquet)")
    parser.add_argument("--selection", help="select-states metrics (JSON): selection curves")
    parser.add_argument("--model", nargs=3, action="append", required=True,
                        metavar=("NAME", "FOLDER", "REGIMES"),
                        help="a model's name, folder and regimes table; once per model")
    parser.add_argument("--plots", required=True, help="folder for the figures and pairs")
    parser.add_argument("--report", required=True, help="diagnostics table (CSV)")
    args = parser.parse_args(argv)

    split = load_section("evaluate", args.params).split
    scaled = Path(args.scaled)
    plots = Path(args.plots)
    staging = plots.with_name(f".{plots.name}.tmp")
    table = diagnose(
        regimes={name: read_parquet(path) for name, _, path in args.model},
        models={name: load_model(folder) for name, folder, _ in args.model},
        frames=read_splits(scaled),
        columns=read_json(args.spec)["columns"], bars=read_parquet(args.bars), split=split,
        selection=read_json(args.selection) if args.selection else None, out=staging)
    replace_dir(staging, plots)
    write_csv(table, args.report)
    log.info("wrote %d figures to %s and %d rows to %s",
             len(list(plots.glob("*.png"))), plots, len(table), args.report)


if __name__ == "__main__":
    sys.exit(run(main))
