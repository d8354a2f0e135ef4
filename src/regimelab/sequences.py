"""Feature tables as the arrays and sequence lengths the models take."""

from __future__ import annotations

import numpy as np
import pandas as pd


def segment_lengths(segment: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal consecutive ids, shape ``(n_sequences,)``.

    Rows are sorted by symbol and time, so a segment is one run; a split that
    cuts a segment gives each split its own run.
    """
    segment = np.asarray(segment)
    if len(segment) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, segment[1:] != segment[:-1]])
    return np.diff(np.r_[starts, len(segment)]).astype(np.int64)


def to_sequences(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``X`` of shape ``(n_samples, n_features)`` and ``lengths`` of shape ``(n_sequences,)``."""
    X = frame[columns].to_numpy(dtype="float64")
    return np.ascontiguousarray(X), segment_lengths(frame["segment"].to_numpy())
