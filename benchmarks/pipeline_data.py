"""The default data through scale, in-process and as the stages do it, for the benchmarks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from regimelab.data import ingest
from regimelab.features import build_features
from regimelab.params import load_section, parse_timeframe
from regimelab.scaling import fit_scaler
from regimelab.split import split_features

ROOT = Path(__file__).resolve().parents[1]


def scaled_splits(feature_set: str) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame],
                                             list[str]]:
    """params.yaml's ingest, split and scale with ``feature_set``: the unscaled splits, the
    splits scaled by a scaler fitted on train, and the feature columns."""
    params = {s: load_section(s, ROOT / "params.yaml")
              for s in ("ingest", "features", "split", "scale")}
    bars = ingest(str(ROOT / params["ingest"].path)).bars
    feats = build_features(bars, params=replace(params["features"], set=feature_set,
                                                columns=()))
    split = split_features(feats.table, params=params["split"],
                           lookback_bars=feats.spec["lookback_bars"],
                           base=parse_timeframe(feats.spec["base_timeframe"]))
    columns = feats.spec["columns"]
    scaler = fit_scaler(split.frames["train"], columns=columns,
                        method=params["scale"].method, clip=params["scale"].clip)
    scaled = {name: scaler.transform(frame) for name, frame in split.frames.items()}
    return split.frames, scaled, columns
