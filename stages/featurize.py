"""Stage featurize: clean bars -> the feature table and its spec."""

from __future__ import annotations

import regimelab.canonical  # noqa: F401  first: pins numeric kernels before numpy loads

# isort: split
import argparse
import logging
import sys
from collections.abc import Sequence

from regimelab.features import build_features
from regimelab.io import read_parquet, write_json, write_parquet
from regimelab.params import load_section
from regimelab.stage import run

log = logging.getLogger("stages.featurize")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--bars", required=True, help="clean bars (Parquet)")
    parser.add_argument("--features", required=True, help="feature table (Parquet)")
    parser.add_argument("--spec", required=True, help="feature spec (JSON)")
    parser.add_argument("--metrics", required=True, help="feature summary (JSON)")
    args = parser.parse_args(argv)

    params = load_section("features", args.params)
    result = build_features(read_parquet(args.bars), params=params)
    write_parquet(result.table, args.features)
    write_json(result.spec, args.spec)
    table = result.table
    write_json({
        "rows_in": result.spec["rows_in"],
        "rows_out": result.spec["rows_out"],
        "features": len(result.spec["columns"]),
        "segments": int(table["segment"].nunique()),
        "lookback_bars": result.spec["lookback_bars"],
    }, args.metrics)
    log.info("wrote %d rows x %d features to %s", len(table), len(result.spec["columns"]),
             args.features)


if __name__ == "__main__":
    sys.exit(run(main))
