"""Stage forecast: next-regime and switch forecasts from a family's regimes, against baselines."""

from __future__ import annotations

import regimelab.canonical  # noqa: F401  first: pins numeric kernels before numpy loads

# isort: split
import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from regimelab.forecast.dataset import label_dataset
from regimelab.forecast.inputs import input_columns
from regimelab.forecast.labels import hindsight_regimes, write_labelled
from regimelab.forecast.outputs import write_models, write_plots
from regimelab.forecast.run import Settings, run_forecast
from regimelab.forecast.sequence import SequenceSettings
from regimelab.io import read_json, read_parquet, write_json
from regimelab.models import load_model, model_version
from regimelab.params import load_section, parse_timeframe
from regimelab.selection import STORAGE_ENV
from regimelab.split import read_splits
from regimelab.stage import run

log = logging.getLogger("stages.forecast")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--scaled", required=True, help="folder with the scaled splits")
    parser.add_argument("--spec", required=True, help="feature spec (JSON)")
    parser.add_argument("--bars", required=True, help="clean bars (Parquet): the dating")
    parser.add_argument("--folds", required=True, help="the split stage's folds.json")
    parser.add_argument("--model", required=True, help="the family's model folder")
    parser.add_argument("--labels", required=True, help="labelled dataset (Parquet)")
    parser.add_argument("--models-out", required=True, help="folder of the fitted forecasters")
    parser.add_argument("--study-dir", required=True, help="folder of the SQLite study")
    parser.add_argument("--metrics", required=True, help="metrics file (JSON)")
    parser.add_argument("--plots", required=True, help="folder of the plot tables")
    args = parser.parse_args(argv)

    params = load_section("forecast", args.params)
    spec = read_json(args.spec)
    columns = spec["columns"]
    model = load_model(args.model)
    frames = read_splits(args.scaled)
    dataset = label_dataset(
        regimes=hindsight_regimes(model, frames, columns),
        features=pd.concat(frames.values(), ignore_index=True),
        bars=read_parquet(args.bars), columns=columns, n_states=model.n_states,
        horizons=params.horizons, windows=params.input_windows,
        step=parse_timeframe(spec["base_timeframe"]),
        bull_threshold=params.bull_threshold, bear_threshold=params.bear_threshold)
    inputs = input_columns(columns, model.n_states, params.input_windows)
    labeller = {"family": params.family, "model_version": model_version(args.model),
                "horizons": list(params.horizons), "bull_threshold": params.bull_threshold,
                "bear_threshold": params.bear_threshold,
                "input_windows": list(params.input_windows), "inputs": inputs}
    write_labelled(dataset, args.labels, params=labeller)
    storage = (params.storage or os.environ.get(STORAGE_ENV)
               or f"sqlite:///{(Path(args.study_dir) / 'study.db').as_posix()}")
    Path(args.study_dir).mkdir(parents=True, exist_ok=True)
    result = run_forecast(
        dataset, inputs=inputs, n_states=model.n_states, transmat=model.transmat_,
        horizons=params.horizons, targets=params.targets, folds=read_json(args.folds),
        settings=Settings(models=params.models, n_trials=params.n_trials,
                          n_estimators=params.n_estimators,
                          max_train_rows=params.max_train_rows, storage=storage,
                          seed=params.seed, importance_repeats=params.importance_repeats,
                          sequence_min_class_rows=params.sequence_min_class_rows,
                          sequence=SequenceSettings(
                              window=params.sequence_window,
                              max_epochs=params.sequence_max_epochs,
                              patience=params.sequence_patience,
                              batch_size=params.sequence_batch_size,
                              max_train_rows=params.sequence_max_train_rows,
                              num_threads=params.num_threads)))
    write_models(result, args.models_out, labeller=labeller)
    write_plots(result, args.plots)
    write_json({"family": params.family, "labeller": labeller, **result.report}, args.metrics)
    for name, block in result.report.items():
        if isinstance(block, dict) and block.get("headline"):
            log.info("%s: %s", name, block["headline"])


if __name__ == "__main__":
    sys.exit(run(main))
