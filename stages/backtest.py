"""Stage backtest: walk every family forward, trade its causal labels, report the result."""

from __future__ import annotations

import regimelab.canonical  # noqa: F401  first: pins numeric kernels before numpy loads

# isort: split
import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from regimelab.backtest.report import run_backtest
from regimelab.backtest.walkforward import settings_for
from regimelab.choice import min_dwell_bars, resolve_model
from regimelab.io import read_json, read_parquet, write_csv, write_json
from regimelab.params import load_section, parse_timeframe
from regimelab.stage import run

log = logging.getLogger("stages.backtest")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", required=True, help="feature table (Parquet), unscaled")
    parser.add_argument("--spec", required=True, help="feature spec (JSON)")
    parser.add_argument("--bars", required=True, help="clean bars (Parquet): the returns")
    parser.add_argument("--selection", required=True,
                        help="select-states metrics (JSON): read with backtest.settings pipeline")
    parser.add_argument("--metrics", required=True, help="backtest metrics (JSON)")
    parser.add_argument("--plots", required=True, help="folder for the plot tables (CSV)")
    args = parser.parse_args(argv)

    params = load_section("backtest", args.params)
    model = load_section("model", args.params)
    resolved = (resolve_model(read_json(args.selection), model)
                if params.settings == "pipeline" else None)
    select = load_section("select", args.params)
    spec = read_json(args.spec)
    base = parse_timeframe(spec["base_timeframe"])
    settings = settings_for(params, resolved, select=select,
                            min_dwell=min_dwell_bars(select, base))
    result = run_backtest(
        read_parquet(args.features), read_parquet(args.bars), columns=spec["columns"],
        base_timeframe=base, params=params, settings=settings,
        scale=load_section("scale", args.params),
        hmm=load_section("hmm", args.params), jump=load_section("jump", args.params),
        dssm=load_section("dssm", args.params), seed=model.seed)
    write_json(result.metrics, args.metrics)
    for name, table in result.plots.items():
        write_csv(table, Path(args.plots) / f"{name}.csv")
    log.info("wrote %s and %d plot tables to %s", args.metrics, len(result.plots), args.plots)


if __name__ == "__main__":
    sys.exit(run(main))
