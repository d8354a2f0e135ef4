"""Stage ingest: raw OHLCV files -> clean bars, a gap table and a validation report."""

from __future__ import annotations

import regimelab.canonical  # noqa: F401  first: pins numeric kernels before numpy loads

# isort: split
import argparse
import logging
import sys
from collections.abc import Sequence

from regimelab.data import ingest
from regimelab.io import write_csv, write_json, write_parquet
from regimelab.params import load_section
from regimelab.stage import run

log = logging.getLogger("stages.ingest")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--bars", required=True, help="clean bars (Parquet)")
    parser.add_argument("--gaps", required=True, help="one row per gap (CSV)")
    parser.add_argument("--metrics", required=True, help="validation report (JSON)")
    args = parser.parse_args(argv)

    params = load_section("ingest", args.params)
    result = ingest(params.path, symbol=params.symbol, freq=params.freq,
                    max_invalid_fraction=params.max_invalid_fraction)
    write_parquet(result.bars, args.bars)
    write_csv(result.gaps, args.gaps)
    write_json(result.report, args.metrics)
    log.info("wrote %d bars to %s", len(result.bars), args.bars)


if __name__ == "__main__":
    sys.exit(run(main))
