"""Chronological splits: boundaries, the embargo and walk-forward folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from regimelab.exceptions import SplitError
from regimelab.features import build_features
from regimelab.params import FeaturesParams, SplitParams
from regimelab.split import split_features

HOUR = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def features(market: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    result = build_features(market.drop(columns="regime"), params=FeaturesParams())
    return result.table, result.spec


def test_fractions_are_chronological_with_an_embargo(features: tuple) -> None:
    table, spec = features
    result = split_features(table, params=SplitParams(), lookback_bars=spec["lookback_bars"],
                            base=HOUR)
    train, val, test = (result.frames[k] for k in ("train", "val", "test"))
    assert train["timestamp"].max() < val["timestamp"].min()
    assert val["timestamp"].max() < test["timestamp"].min()
    embargo = spec["lookback_bars"] * HOUR
    # No val/test row's feature window reaches back into the split before it.
    assert val["timestamp"].min() - embargo >= train["timestamp"].max()
    assert test["timestamp"].min() - embargo >= val["timestamp"].max()
    n = len(table)
    np.testing.assert_allclose(len(train) / n, 0.70, rtol=0, atol=2 / n)
    assert result.report["embargo_bars"] == spec["lookback_bars"]
    assert result.report["embargoed_rows"] == n - len(train) - len(val) - len(test)
    assert 0 < result.report["embargoed_rows"] <= 2 * spec["lookback_bars"]
    assert list(train.columns) == list(table.columns)


def test_dates(features: tuple) -> None:
    table, spec = features
    params = SplitParams(method="dates", val_start="2020-03-01", test_start="2020-03-20 12:00")
    result = split_features(table, params=params, lookback_bars=10, base=HOUR)
    assert result.frames["train"]["timestamp"].max() < pd.Timestamp("2020-03-01", tz="UTC")
    assert result.frames["val"]["timestamp"].min() >= pd.Timestamp("2020-03-01 10:00", tz="UTC")
    assert result.frames["test"]["timestamp"].min() >= pd.Timestamp("2020-03-20 22:00", tz="UTC")


def test_short_embargo_is_refused(features: tuple) -> None:
    table, spec = features
    with pytest.raises(SplitError, match=r"split\.embargo: 3 bars is shorter"):
        split_features(table, params=SplitParams(embargo=3), lookback_bars=21, base=HOUR)


def test_empty_split_is_refused(features: tuple) -> None:
    table, _ = features
    params = SplitParams(method="dates", val_start="2030-01-01", test_start="2031-01-01")
    with pytest.raises(SplitError, match="the val split is empty"):
        split_features(table, params=params, lookback_bars=21, base=HOUR)


def test_walk_forward_folds_expand_and_stay_before_test(features: tuple) -> None:
    table, spec = features
    result = split_features(table, params=SplitParams(folds=4), lookback_bars=21, base=HOUR)
    folds = result.folds
    assert [f["fold"] for f in folds] == [1, 2, 3, 4]
    test_start = result.frames["test"]["timestamp"].min()
    for prev, fold in zip(folds, folds[1:]):
        assert fold["train_rows"] > prev["train_rows"]
        assert fold["train_start"] == prev["train_start"]
    for fold in folds:
        assert fold["train_end"] + 21 * HOUR <= fold["val_start"]
        assert fold["val_end"] < test_start
