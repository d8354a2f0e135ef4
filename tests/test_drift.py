"""Drift statistics: PSI and the report's thresholds, on known shifts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from regimelab.drift import Thresholds, drift_report, psi
from regimelab.families.hmm.model import RegimeHMM


def test_psi_is_near_zero_for_the_same_law_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=20000)
    assert psi(reference, rng.normal(size=5000)) < 0.01
    assert psi(reference, rng.normal(0.5, 1.0, size=5000)) > 0.2
    assert psi(reference, rng.normal(0.0, 2.0, size=5000)) > 0.25
    # A recent sample wholly outside the reference's range stays finite.
    assert np.isfinite(psi(reference, np.full(100, 50.0)))


def table(X: np.ndarray, columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(X, columns=columns)
    frame.insert(0, "segment", 0)
    return frame


@pytest.fixture(scope="module")
def fitted() -> SimpleNamespace:
    rng = np.random.default_rng(1)
    columns = ["a", "b"]
    states = np.repeat([0, 1, 0, 1], 500)
    X = rng.normal(size=(2000, 2)) * np.where(states == 0, 0.5, 2.0)[:, None]
    model = RegimeHMM(2, covariance_type="diag", n_init=2).fit(X, np.array([2000]))
    return SimpleNamespace(model=model, columns=columns, X=X, rng=rng)


def test_the_same_market_is_no_drift(fitted: SimpleNamespace) -> None:
    recent = fitted.X[250:1250]  # half calm, half volatile, as the reference
    report = drift_report(fitted.model, table(fitted.X, fitted.columns),
                          table(recent, fitted.columns), columns=fitted.columns)
    assert report["drift"] is False and report["breaches"] == []
    assert abs(report["fit"]["ll_drop"]) < 0.5
    assert set(report["regimes"]["occupancy_recent"]) == {"0", "1"}


def test_a_wilder_market_breaches_fit_and_features(fitted: SimpleNamespace) -> None:
    recent = fitted.rng.normal(size=(600, 2)) * 4.0
    report = drift_report(fitted.model, table(fitted.X, fitted.columns),
                          table(recent, fitted.columns), columns=fitted.columns,
                          thresholds=Thresholds(ll_drop=0.5))
    assert report["drift"] is True
    assert report["fit"]["ll_drop"] > 0.5
    assert any(b.startswith("log-likelihood per bar fell") for b in report["breaches"])
    assert any(b.startswith("a: PSI") for b in report["breaches"])
    # Everything is now the volatile state.
    assert report["regimes"]["occupancy_recent"]["1"] > 0.9
    assert report["thresholds"]["ll_drop"] == 0.5
