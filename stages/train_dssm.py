"""Stage train-dssm: train the deep state-space model and decode every split."""

from __future__ import annotations

import regimelab.canonical  # noqa: F401  first: pins numeric kernels before numpy loads

# isort: split
import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pytorch_lightning import seed_everything

from regimelab.choice import resolve_model
from regimelab.families.base import manifest
from regimelab.families.dssm import fit
from regimelab.families.hmm.model import RegimeHMM
from regimelab.io import (
    read_json,
    read_parquet,
    replace_dir,
    sha256_file,
    write_json,
    write_parquet,
)
from regimelab.params import load_section
from regimelab.split import read_splits
from regimelab.stage import run

log = logging.getLogger("stages.train_dssm")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--scaled", required=True, help="folder with scaled splits + scaler")
    parser.add_argument("--spec", required=True, help="feature spec (JSON)")
    parser.add_argument("--bars", required=True, help="clean bars (Parquet): the regimes' names")
    parser.add_argument("--selection", required=True, help="select-states metrics (JSON)")
    parser.add_argument("--hmm", help="train-hmm's model folder: the starting point")
    parser.add_argument("--hmm-regimes", help="train-hmm's regimes: the state numbering")
    parser.add_argument("--model", required=True, help="folder for the model")
    parser.add_argument("--regimes", required=True, help="regimes table (Parquet)")
    parser.add_argument("--metrics", required=True, help="training metrics (JSON)")
    parser.add_argument("--curves", required=True, help="folder for DVCLive's training curves")
    args = parser.parse_args(argv)

    model_params = load_section("model", args.params)
    dssm = load_section("dssm", args.params)
    spec = read_json(args.spec)
    resolved = resolve_model(read_json(args.selection), model_params)
    scaled = Path(args.scaled)
    frames = read_splits(scaled)
    seed_everything(model_params.seed, workers=True, verbose=False)
    curves = Path(args.curves)
    tmp_curves = curves.with_name(f".{curves.name}.tmp")
    trained = fit.train(
        frames, columns=spec["columns"], n_states=resolved["n_states"], dssm=dssm,
        seed=model_params.seed,
        init=RegimeHMM.load(args.hmm) if args.hmm and Path(args.hmm).is_dir() else None,
        reference=(read_parquet(args.hmm_regimes)
                   if args.hmm_regimes and Path(args.hmm_regimes).is_file() else None),
        log_dir=tmp_curves, progress_bar=sys.stderr.isatty() and "CI" not in os.environ,
        bars=read_parquet(args.bars))
    trained.model.save(args.model, manifest=manifest(
        spec=spec, scaler=read_json(scaled / "scaler.json"),
        train_sha256=sha256_file(scaled / "train.parquet"),
        resolved={k: resolved[k] for k in ("n_states", "covariance_type")},
        seed=model_params.seed, libraries=fit.LIBRARIES,
        naming=trained.naming))
    write_parquet(trained.regimes, args.regimes)
    write_json(trained.metrics, args.metrics)
    replace_dir(tmp_curves, curves)
    log.info("wrote %s and %d regime rows", args.model, len(trained.regimes))


if __name__ == "__main__":
    sys.exit(run(main))
