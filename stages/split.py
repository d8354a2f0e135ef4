"""Stage split: features -> chronological train/val/test with an embargo, and folds."""

from __future__ import annotations

import regimelab.canonical  # noqa: F401  first: pins numeric kernels before numpy loads

# isort: split
import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from regimelab.io import read_json, read_parquet, write_json, write_parquet
from regimelab.params import load_section, parse_timeframe
from regimelab.split import split_features
from regimelab.stage import run

log = logging.getLogger("stages.split")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", required=True, help="feature table (Parquet)")
    parser.add_argument("--spec", required=True, help="feature spec (JSON)")
    parser.add_argument("--out", required=True, help="folder for train/val/test and folds")
    parser.add_argument("--metrics", required=True, help="split summary (JSON)")
    args = parser.parse_args(argv)

    params = load_section("split", args.params)
    spec = read_json(args.spec)
    result = split_features(read_parquet(args.features), params=params,
                            lookback_bars=spec["lookback_bars"],
                            base=parse_timeframe(spec["base_timeframe"]))
    out = Path(args.out)
    for name, frame in result.frames.items():
        write_parquet(frame, out / f"{name}.parquet")
    write_json(result.folds, out / "folds.json")
    write_json(result.report, args.metrics)
    log.info("wrote splits and %d folds to %s", len(result.folds), out)


if __name__ == "__main__":
    sys.exit(run(main))
