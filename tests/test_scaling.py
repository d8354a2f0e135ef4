"""The scaler: fitted on train only, saved as JSON, same numbers as scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import RobustScaler, StandardScaler

from regimelab.exceptions import ScalingError
from regimelab.scaling import Scaler, collinear_pairs, fit_scaler

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
    # The clip travels with the scaler: inference applies the restored one.
    far = frame(1, shift=50.0)[COLUMNS].to_numpy()
    assert restored.clip == 3.0 and restored.transform_array(far).max() == 3.0


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


def with_near_duplicate(seed: int = 0) -> pd.DataFrame:
    """``c`` is ``a`` plus a little noise (correlation about 0.9995); ``d`` is ``-b``-ish."""
    train = frame(seed)
    rng = np.random.default_rng(seed + 100)
    return train.assign(c=train["a"] + rng.normal(0, 0.06, len(train)),
                        d=-train["b"] * 2 + rng.normal(0, 0.002, len(train)))


def test_collinear_pairs_finds_near_duplicates() -> None:
    train = with_near_duplicate()
    pairs = collinear_pairs(train, ["a", "b", "c", "d"])
    assert [(a, b) for a, b, _ in pairs] == [("b", "d"), ("a", "c")]
    corr = train[["a", "b", "c", "d"]].corr().to_numpy()
    np.testing.assert_allclose([r for _, _, r in pairs], [corr[1, 3], corr[0, 2]], rtol=1e-12,
                               atol=0)
    assert pairs[0][2] < -0.99 < 0.99 < pairs[1][2]
    assert collinear_pairs(train, ["a", "b", "c", "d"], threshold=0.9999) == pairs[:1]
    assert collinear_pairs(train, ["a", "b"]) == [] and collinear_pairs(train, ["a"]) == []
    # A constant column correlates with nothing (and warns of nothing).
    assert collinear_pairs(train.assign(e=1.0), ["a", "e", "c"]) == [("a", "c", pairs[1][2])]
    with pytest.raises(ScalingError, match=r"collinear threshold: got 1\.5"):
        collinear_pairs(train, ["a", "c"], threshold=1.5)


def test_scaler_records_collinear_pairs_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    train = with_near_duplicate()
    with caplog.at_level("WARNING", logger="regimelab.scaling"):
        scaler = fit_scaler(train, columns=["a", "b", "c"])
    assert [(a, b) for a, b, _ in scaler.collinear_] == [("a", "c")]
    assert "a ~ c" in caplog.text and "close to singular" in caplog.text
    saved = json.loads(json.dumps(scaler.to_dict()))
    assert saved["collinear"] == [["a", "c", scaler.collinear_[0][2]]]
    assert saved["collinear_threshold"] == 0.99
    assert Scaler.from_dict(saved).collinear_ == scaler.collinear_
    # A scaler saved before the check loads with no pairs.
    old = {k: v for k, v in saved.items() if not k.startswith("collinear")}
    assert Scaler.from_dict(old).collinear_ == []
    caplog.clear()
    with caplog.at_level("WARNING", logger="regimelab.scaling"):
        assert fit_scaler(train, columns=COLUMNS).collinear_ == []
    assert caplog.text == ""
