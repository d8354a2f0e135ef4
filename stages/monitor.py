"""Stage monitor: drift of the test split against the training split, for each model."""

from __future__ import annotations

import regimelab.canonical  # noqa: F401  first: pins numeric kernels before numpy loads

# isort: split
import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from regimelab.drift import drift_report
from regimelab.io import read_parquet, write_json
from regimelab.models import load_model, read_manifest
from regimelab.stage import run

log = logging.getLogger("stages.monitor")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scaled", required=True, help="folder with the scaled splits")
    parser.add_argument("--model", nargs=2, action="append", required=True,
                        metavar=("NAME", "FOLDER"), help="a model's name and folder")
    parser.add_argument("--metrics", required=True, help="drift report (JSON)")
    args = parser.parse_args(argv)

    scaled = Path(args.scaled)
    train, test = (read_parquet(scaled / f"{name}.parquet") for name in ("train", "test"))
    report = {}
    for name, folder in args.model:
        report[name] = drift_report(load_model(folder), train, test,
                                    columns=read_manifest(folder)["features"])
        log.info("%s: %s", name, "; ".join(report[name]["breaches"]) or "no drift")
    write_json(report, args.metrics)


if __name__ == "__main__":
    sys.exit(run(main))
