"""Stage train-hmm: fit the chosen (or fixed) Gaussian HMM and decode every split."""

from __future__ import annotations

import regimelab.canonical  # noqa: F401  first: pins numeric kernels before numpy loads

# isort: split
import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from regimelab.choice import resolve_model
from regimelab.families.base import manifest
from regimelab.families.hmm import fit
from regimelab.io import read_json, read_parquet, sha256_file, write_csv, write_json, write_parquet
from regimelab.params import load_section
from regimelab.split import read_splits
from regimelab.stage import run

log = logging.getLogger("stages.train_hmm")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--scaled", required=True, help="folder with scaled splits + scaler")
    parser.add_argument("--spec", required=True, help="feature spec (JSON)")
    parser.add_argument("--bars", required=True, help="clean bars (Parquet): the regimes' names")
    parser.add_argument("--selection", required=True, help="select-states metrics (JSON)")
    parser.add_argument("--model", required=True, help="folder for the model")
    parser.add_argument("--regimes", required=True, help="regimes table (Parquet)")
    parser.add_argument("--metrics", required=True, help="training metrics (JSON)")
    parser.add_argument("--history", required=True, help="EM log-likelihood history (CSV)")
    args = parser.parse_args(argv)

    model_params = load_section("model", args.params)
    hmm = load_section("hmm", args.params)
    spec = read_json(args.spec)
    resolved = resolve_model(read_json(args.selection), model_params)
    scaled = Path(args.scaled)
    frames = read_splits(scaled)
    trained = fit.train(frames, columns=spec["columns"], hmm=hmm, seed=model_params.seed,
                        n_states=resolved["n_states"],
                        covariance_type=resolved["covariance_type"],
                        bars=read_parquet(args.bars),
                        collinear=read_json(scaled / "scaler.json").get("collinear"))
    trained.model.save(args.model, manifest=manifest(
        spec=spec, scaler=read_json(scaled / "scaler.json"),
        train_sha256=sha256_file(scaled / "train.parquet"),
        resolved={k: resolved[k] for k in ("n_states", "covariance_type")},
        seed=model_params.seed, libraries=fit.LIBRARIES,
        naming=trained.naming))
    write_parquet(trained.regimes, args.regimes)
    write_json(trained.metrics, args.metrics)
    write_csv(trained.history, args.history)
    log.info("wrote %s and %d regime rows", args.model, len(trained.regimes))


if __name__ == "__main__":
    sys.exit(run(main))
