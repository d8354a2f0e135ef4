"""Stage forecast-vol: realised volatility over the next h bars, HAR-RV and GARCH(1,1)
with and without the regimes' filtered posteriors, fitted on train (+ val), scored on test;
the fitted models saved as JSON for ``regimelab forecast --vol-model``."""

from __future__ import annotations

import regimelab.canonical  # noqa: F401  first: pins numeric kernels before numpy loads

# isort: split
import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from regimelab.forecast.vol_apply import write_vol_models
from regimelab.forecast.volatility import filtered_posteriors, forecast_volatility, plot_tables
from regimelab.io import read_json, read_parquet, write_csv, write_json
from regimelab.models import load_model, model_version, read_manifest
from regimelab.params import load_section, parse_timeframe
from regimelab.split import read_splits
from regimelab.stage import run

log = logging.getLogger("stages.forecast_vol")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--bars", required=True, help="clean bars (Parquet)")
    parser.add_argument("--scaled", required=True, help="folder with the scaled splits")
    parser.add_argument("--spec", required=True, help="feature spec (JSON)")
    parser.add_argument("--models", required=True,
                        help="folder of model folders; forecast_vol.family picks one")
    parser.add_argument("--metrics", required=True, help="metrics file (JSON)")
    parser.add_argument("--plots", required=True, help="folder for the forecast-vs-actual CSVs")
    parser.add_argument("--models-out", required=True,
                        help="folder for the fitted models (JSON, for regimelab forecast)")
    args = parser.parse_args(argv)

    params = load_section("forecast_vol", args.params)
    spec = read_json(args.spec)
    folder = Path(args.models) / params.family
    posteriors = filtered_posteriors(load_model(folder), read_splits(args.scaled),
                                     columns=read_manifest(folder)["feature_spec"]["columns"])
    result = forecast_volatility(read_parquet(args.bars), posteriors, params=params,
                                 step=parse_timeframe(spec["base_timeframe"]))
    write_json({"family": params.family, **result.report}, args.metrics)
    write_vol_models(result.models, args.models_out, family=params.family,
                     model_version=model_version(folder))
    for name, table in plot_tables(result.forecasts).items():
        write_csv(table, Path(args.plots) / f"{name}.csv")
    for h, block in result.report["horizons"].items():
        log.info("%s: test QLIKE %s; best %s; %s", h,
                 ", ".join(f"{m} {v['qlike']:.4f}" for m, v in block["models"].items()),
                 block["best_qlike"],
                 ", ".join(f"{k} p={v['p_value']:.3g}"
                           for k, v in block["diebold_mariano"].items()))


if __name__ == "__main__":
    sys.exit(run(main))
