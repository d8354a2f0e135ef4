"""Stage scale: splits -> scaled splits and the scaler's parameters (fitted on train)."""

from __future__ import annotations

import regimelab.canonical  # noqa: F401  first: pins numeric kernels before numpy loads

# isort: split
import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from regimelab.io import read_json, write_json, write_parquet
from regimelab.params import load_section
from regimelab.scaling import fit_scaler
from regimelab.split import read_splits
from regimelab.stage import run

log = logging.getLogger("stages.scale")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--splits", required=True, help="folder with train/val/test.parquet")
    parser.add_argument("--spec", required=True, help="feature spec (JSON)")
    parser.add_argument("--out", required=True, help="folder for scaled splits and scaler.json")
    args = parser.parse_args(argv)

    params = load_section("scale", args.params)
    columns = read_json(args.spec)["columns"]
    frames = read_splits(args.splits)
    scaler = fit_scaler(frames["train"], columns=columns, method=params.method, clip=params.clip)
    out = Path(args.out)
    for name, frame in frames.items():
        write_parquet(scaler.transform(frame), out / f"{name}.parquet")
    write_json(scaler.to_dict(), out / "scaler.json")
    log.info("wrote scaled splits and scaler.json to %s", out)


if __name__ == "__main__":
    sys.exit(run(main))
