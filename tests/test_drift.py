"""Drift statistics: PSI and the report's thresholds, on known shifts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from regimelab.drift import Thresholds, drift_report, psi, regime_ranks
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
    assert report["fit"]["ll_ks"] < 0.1 and report["fit"]["ll_psi"] < 0.1
    assert abs(report["fit"]["ll_drop"]) < 0.5
    assert set(report["regimes"]["occupancy_recent"]) == {"0", "1"}


def test_fit_drift_compares_the_per_bar_log_likelihoods(fitted: SimpleNamespace) -> None:
    X, lengths = fitted.X, np.array([len(fitted.X)])
    per_bar = fitted.model.loglik_per_bar(X, lengths)
    report = drift_report(fitted.model, table(X, fitted.columns), table(X[:1000], fitted.columns),
                          columns=fitted.columns)["fit"]
    assert report["ll_per_bar_reference"] == pytest.approx(
        fitted.model.score(X, lengths) / len(X), rel=1e-10)
    assert report["ll_per_bar_recent"] == pytest.approx(per_bar[:1000].mean(), rel=1e-10)
    assert report["ll_rank_mean"] == pytest.approx(0.5, abs=0.05)


def test_ranks_are_within_the_regime() -> None:
    reference = np.array([1.0, 2.0, 3.0, 4.0] * 25 + [-9.0, -8.0] * 50)
    states = np.array([0] * 100 + [1] * 100)
    ranks = regime_ranks(reference, states, np.array([2.5, 2.5, -8.5, 10.0]),
                         np.array([0, 1, 1, 1]))
    np.testing.assert_allclose(ranks, [0.5, 1.0, 0.5, 1.0], rtol=0, atol=1e-12)
    own = regime_ranks(reference, states, reference, states)
    assert own.mean() == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("scale, direction", [(4.0, "lower"), (0.15, "higher")])
def test_a_wilder_and_a_calmer_market_both_breach_the_fit(fitted: SimpleNamespace, scale: float,
                                                          direction: str) -> None:
    """A wilder market scores lower per bar, a calmer one higher: both are drift. The
    calmer one raises the mean log-likelihood, which a one-sided test on a drop misses."""
    recent = fitted.rng.normal(size=(600, 2)) * scale
    report = drift_report(fitted.model, table(fitted.X, fitted.columns),
                          table(recent, fitted.columns), columns=fitted.columns)
    fit = report["fit"]
    assert report["drift"] is True and fit["direction"] == direction
    assert fit["ll_ks"] > 0.2 and fit["ll_psi"] > 0.25
    assert (fit["ll_drop"] > 0) == (direction == "lower")
    assert any(b.startswith(f"per-bar log-likelihoods moved {direction}") and "KS" in b
               for b in report["breaches"])
    assert any(b.startswith("a: PSI") for b in report["breaches"])


def test_the_fit_thresholds_are_the_callers(fitted: SimpleNamespace) -> None:
    recent = fitted.rng.normal(size=(600, 2)) * 4.0
    report = drift_report(fitted.model, table(fitted.X, fitted.columns),
                          table(recent, fitted.columns), columns=fitted.columns,
                          thresholds=Thresholds(ll_ks=1.0, ll_psi=100.0))
    assert not any(b.startswith("per-bar") for b in report["breaches"])
    assert report["thresholds"]["ll_ks"] == 1.0 and report["thresholds"]["ll_psi"] == 100.0
    # Everything is now the volatile state.
    assert report["regimes"]["occupancy_recent"]["1"] > 0.9


def test_a_known_regime_alone_is_not_fit_drift(fitted: SimpleNamespace) -> None:
    """Bars of the calm regime only, at the training law: they score higher per bar than
    the training mix, but not higher than the calm regime did. The regimes view reports
    the new mix; the fit view does not."""
    recent = fitted.rng.normal(size=(600, 2)) * 0.5
    report = drift_report(fitted.model, table(fitted.X, fitted.columns),
                          table(recent, fitted.columns), columns=fitted.columns)
    assert report["fit"]["ll_drop"] < -0.5  # what a comparison of means would call drift
    assert report["fit"]["ll_ks"] < 0.1 and report["fit"]["ll_psi"] < 0.1
    assert not any(b.startswith("per-bar") for b in report["breaches"])
    assert any(b.startswith("regime occupancy moved") for b in report["breaches"])


class NoLikelihood:
    """A model with states but no likelihood (a jump model): it must not be asked for one."""

    has_likelihood = False

    def __init__(self, model: RegimeHMM) -> None:
        self.n_states = model.n_states
        self.filter_proba = model.filter_proba

    def score(self, X: np.ndarray, lengths: np.ndarray) -> float:
        raise AssertionError("score called on a model without a likelihood")

    def loglik_per_bar(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        raise AssertionError("loglik_per_bar called on a model without a likelihood")


def test_a_model_without_a_likelihood_reports_features_and_regimes(
        fitted: SimpleNamespace) -> None:
    recent = fitted.rng.normal(size=(600, 2)) * 4.0
    report = drift_report(NoLikelihood(fitted.model), table(fitted.X, fitted.columns),
                          table(recent, fitted.columns), columns=fitted.columns)
    assert report["fit"] is None
    assert report["drift"] is True and set(report["features"]) == {"a", "b"}
    assert report["regimes"]["occupancy_recent"]["1"] > 0.9
    assert not any(b.startswith("per-bar") for b in report["breaches"])
