"""The scaler: fitted on train only, saved as JSON, same numbers as scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import RobustScaler, StandardScaler

from regimelab.exceptions import ScalingError
from regimelab.scaling import Scaler, fit_scaler

COLUMNS = ["a", "b"]


def frame(seed: int, shift: float = 0.0, n: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"timestamp": np.arange(n), "a": rng.normal(3 + shift, 2, n),
                         "b": rng.standard_t(3, n) * 0.1 + shift})


@pytest.mark.parametrize("method, reference", [("standard", StandardScaler),
                                               ("robust", RobustScaler)])
def test_matches_scikit_learn(method: str, reference: type) -> None:
    train, test = frame(0), frame(1, shift=5.0)
    scaler = fit_scaler(train, columns=COLUMNS, method=method)
    sk = reference().fit(train[COLUMNS].to_numpy())
    np.testing.assert_allclose(scaler.transform(test)[COLUMNS].to_numpy(),
                               sk.transform(test[COLUMNS].to_numpy()), rtol=1e-12, atol=1e-12)


def test_sees_train_only() -> None:
    train, val = frame(0), frame(1, shift=100.0)
    scaler = fit_scaler(train, columns=COLUMNS)
    np.testing.assert_allclose(scaler.center_, train[COLUMNS].mean().to_numpy(), rtol=1e-12,
                               atol=0)
    np.testing.assert_allclose(scaler.scale_, train[COLUMNS].std(ddof=0).to_numpy(),
                               rtol=1e-12, atol=0)
    # Val is far from train and stays visibly so: its own statistics were never used.
    assert scaler.transform(val)["a"].mean() > 40


def test_json_round_trip_without_pickle() -> None:
    train, test = frame(0), frame(1)
    scaler = fit_scaler(train, columns=COLUMNS, clip=3.0)
    restored = Scaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    pd.testing.assert_frame_equal(restored.transform(test), scaler.transform(test))
    assert scaler.transform(frame(1, shift=50.0))[COLUMNS].to_numpy().max() == 3.0


def test_other_columns_pass_through() -> None:
    train = frame(0)
    out = fit_scaler(train, columns=["a"]).transform(train)
    pd.testing.assert_series_equal(out["b"], train["b"])
    pd.testing.assert_series_equal(out["timestamp"], train["timestamp"])


def test_constant_feature_is_refused() -> None:
    train = frame(0).assign(b=1.5)
    with pytest.raises(ScalingError, match="feature 'b' is constant"):
        fit_scaler(train, columns=COLUMNS)


def test_missing_column_is_refused() -> None:
    scaler = fit_scaler(frame(0), columns=COLUMNS)
    with pytest.raises(ScalingError, match="column 'b' is missing"):
        scaler.transform(frame(1).drop(columns="b"))
