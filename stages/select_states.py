"""Stage select-states: score candidate HMMs on scaled train + val and choose one."""

from __future__ import annotations

import regimelab.canonical  # noqa: F401  first: pins numeric kernels before numpy loads

# isort: split
import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from regimelab.choice import min_dwell_bars
from regimelab.io import read_json, read_parquet, write_csv, write_json
from regimelab.params import load_section, parse_timeframe
from regimelab.selection import (
    STORAGE_ENV,
    criteria_tables,
    fresh_sqlite_storage,
    run_selection,
    scan_tables,
    study_name,
)
from regimelab.sequences import to_sequences
from regimelab.stage import run

log = logging.getLogger("stages.select_states")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--scaled", required=True, help="folder with scaled splits")
    parser.add_argument("--spec", required=True, help="feature spec (JSON)")
    parser.add_argument("--study-dir", required=True,
                        help="folder for the default SQLite study (not a DVC output)")
    parser.add_argument("--metrics", required=True, help="choice and candidate table (JSON)")
    parser.add_argument("--plots", required=True, help="folder for criterion-vs-K CSVs")
    args = parser.parse_args(argv)

    select = load_section("select", args.params)
    hmm = load_section("hmm", args.params)
    jump = load_section("jump", args.params)
    seed = load_section("model", args.params).seed
    spec = read_json(args.spec)
    columns = spec["columns"]
    train_path, val_path = Path(args.scaled) / "train.parquet", Path(args.scaled) / "val.parquet"
    X, lengths = to_sequences(read_parquet(train_path), columns)
    X_val, lengths_val = to_sequences(read_parquet(val_path), columns)

    # A database URL with a password belongs in the environment, not in params.yaml.
    storage = (select.storage or os.environ.get(STORAGE_ENV)
               or fresh_sqlite_storage(Path(args.study_dir) / "study.db"))
    name = study_name([X, X_val], columns=columns, select=select, hmm=hmm, seed=seed)
    result = run_selection(
        X, lengths, X_val, lengths_val, select=select, hmm=hmm, jump=jump, seed=seed,
        storage=storage, name=name, feature_names=columns,
        collinear=read_json(Path(args.scaled) / "scaler.json").get("collinear"),
        min_dwell=min_dwell_bars(select, parse_timeframe(spec["base_timeframe"])))
    write_json(result, args.metrics)
    for criterion, table in {**criteria_tables(result), **scan_tables(result)}.items():
        write_csv(table, Path(args.plots) / f"{criterion}.csv")
    log.info("chose K=%d %s", result["choice"]["n_states"], result["choice"]["covariance_type"])


if __name__ == "__main__":
    sys.exit(run(main))
