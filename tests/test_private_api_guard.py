"""A loud failure when hmmlearn's private API, which the HMM family relies on, changes.

:mod:`regimelab.families.hmm.infer` calls ``hmmlearn._hmmc``'s compiled
recursions and overrides private methods of ``GaussianHMM``. hmmlearn may
change either in any release without notice (``_hmmc.forward_scaling``
returned two values in one version and three in another; ``viterbi``'s result
order flipped), and a changed return order would silently take the wrong
element. pyproject.toml bounds hmmlearn to the versions checked here; each test
below calls one private piece on a tiny input with a known answer.
"""

from __future__ import annotations

import inspect

import hmmlearn
import numpy as np
import pytest
from hmmlearn import _hmmc
from hmmlearn.base import ConvergenceMonitor
from hmmlearn.hmm import GaussianHMM
from scipy.special import logsumexp

from regimelab.families.hmm.infer import StableGaussianHMM
from regimelab.families.hmm.model import _RecordingMonitor

START = np.array([0.6, 0.4])
TRANS = np.array([[0.9, 0.1], [0.2, 0.8]])
# Three bars, two states: emission probabilities p(x_t | state).
FRAMEPROB = np.array([[0.5, 0.1], [0.4, 0.3], [0.05, 0.6]])


def brute_force() -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """log p(x), filtered and smoothed posteriors, and the best path, by enumerating paths."""
    paths = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    log_joint = (np.log(START[paths[:, 0]]) + np.log(FRAMEPROB[np.arange(3), paths]).sum(axis=1)
                 + np.log(TRANS[paths[:, :-1], paths[:, 1:]]).sum(axis=1))
    total = logsumexp(log_joint)
    weights = np.exp(log_joint - total)
    smoothed = np.stack([np.bincount(paths[:, t], weights=weights, minlength=2)
                         for t in range(3)])
    alpha, filtered = START * FRAMEPROB[0], []
    for t in range(3):
        if t:
            alpha = (alpha @ TRANS) * FRAMEPROB[t]
        alpha = alpha / alpha.sum()
        filtered.append(alpha)
    return total, np.array(filtered), smoothed, paths[np.argmax(log_joint)]


def test_hmmlearn_is_a_version_whose_private_api_is_checked_here() -> None:
    major, minor = (int(p) for p in hmmlearn.__version__.split(".")[:2])
    assert (major, minor) == (0, 3), (
        f"hmmlearn {hmmlearn.__version__}: regimelab's private-API use is written for 0.3.x; "
        "check every test in this file against the new version, then widen pyproject.toml")


def test_forward_scaling_returns_log_prob_filtered_and_inverse_normalisers() -> None:
    total, filtered, _, _ = brute_force()
    result = _hmmc.forward_scaling(START, TRANS, FRAMEPROB)
    assert isinstance(result, tuple) and len(result) == 3
    log_prob, fwd, scaling = result
    assert np.isscalar(log_prob) and fwd.shape == (3, 2) and scaling.shape == (3,)
    np.testing.assert_allclose(log_prob, total, rtol=1e-12, atol=0)
    np.testing.assert_allclose(fwd, filtered, rtol=0, atol=1e-12)
    # infer.loglik_per_bar relies on scaling holding 1 / normaliser of each bar.
    np.testing.assert_allclose(-np.log(scaling).sum(), total, rtol=1e-12, atol=0)


def test_backward_scaling_gives_the_smoothed_posteriors_with_forward() -> None:
    _, _, smoothed, _ = brute_force()
    _, fwd, scaling = _hmmc.forward_scaling(START, TRANS, FRAMEPROB)
    bwd = _hmmc.backward_scaling(START, TRANS, FRAMEPROB, scaling)
    assert isinstance(bwd, np.ndarray) and bwd.shape == (3, 2)
    post = fwd * bwd
    np.testing.assert_allclose(post / post.sum(axis=1, keepdims=True), smoothed,
                               rtol=0, atol=1e-12)
    # ... and hmmlearn's own normalisation, which infer.py calls, does the same.
    np.testing.assert_allclose(GaussianHMM()._compute_posteriors_scaling(fwd, bwd), smoothed,
                               rtol=0, atol=1e-12)


def test_viterbi_takes_linear_start_and_transitions_and_returns_log_prob_then_path() -> None:
    _, _, _, best = brute_force()
    result = _hmmc.viterbi(START, TRANS, np.log(FRAMEPROB))
    assert isinstance(result, tuple) and len(result) == 2
    log_prob, path = result
    assert np.isscalar(log_prob) and path.shape == (3,)
    np.testing.assert_array_equal(path, best)
    expected = (np.log(START[best[0]]) + np.log(FRAMEPROB[np.arange(3), best]).sum()
                + np.log(TRANS[best[:-1], best[1:]]).sum())
    np.testing.assert_allclose(log_prob, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name, parameters", [
    # Overridden by StableGaussianHMM: hmmlearn must still call them with these arguments.
    ("_fit_scaling", ["self", "X"]),
    ("_do_mstep", ["self", "stats"]),
    ("_score_scaling", ["self", "X", "lengths", "compute_posteriors"]),
    # Called by regimelab.
    ("_compute_log_likelihood", ["self", "X"]),
    ("_compute_posteriors_scaling", ["self", "fwdlattice", "bwdlattice"]),
    ("_get_n_fit_scalars_per_param", ["self"]),
])
def test_the_private_methods_used_still_exist_with_their_signatures(
        name: str, parameters: list[str]) -> None:
    method = getattr(GaussianHMM, name, None)
    assert callable(method), f"hmmlearn's GaussianHMM has no {name} any more"
    assert list(inspect.signature(method).parameters) == parameters


def test_hmmlearn_calls_the_overrides_and_they_change_nothing_on_tame_data() -> None:
    """EM through hmmlearn's own loop: the E-step, scoring and the monitor reach the overrides,
    and on data that cannot underflow the shifted recursions give hmmlearn's statistics."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-1.0, 0.5, size=(40, 2)), rng.normal(1.5, 1.0, size=(40, 2))])
    lengths = np.array([50, 30])
    calls: list[str] = []

    class Spy(StableGaussianHMM):
        def _fit_scaling(self, X: np.ndarray) -> tuple:
            result = super()._fit_scaling(X)
            calls.append("fit_scaling")
            assert len(result) == 5  # what hmmlearn's _do_estep unpacks
            return result

        def _score_scaling(self, X: np.ndarray, lengths: np.ndarray | None = None, *,
                           compute_posteriors: bool) -> tuple[float, np.ndarray]:
            calls.append("score_scaling")
            return super()._score_scaling(X, lengths, compute_posteriors=compute_posteriors)

    def model(cls: type[GaussianHMM]) -> GaussianHMM:
        hmm = cls(n_components=2, covariance_type="diag", n_iter=1, init_params="", params="stmc",
                  implementation="scaling", min_covar=0.0)
        hmm.n_features = 2
        hmm.startprob_ = START.copy()
        hmm.transmat_ = TRANS.copy()
        hmm.means_ = np.array([[-1.0, -1.0], [1.5, 1.5]])
        hmm.covars_ = np.array([[0.3, 0.3], [1.0, 1.0]])
        return hmm

    stable, plain = model(Spy), model(GaussianHMM)
    stats, log_prob = stable._do_estep(X, lengths)
    plain_stats, plain_log_prob = plain._do_estep(X, lengths)
    assert calls == ["fit_scaling", "fit_scaling"]  # one per sequence
    np.testing.assert_allclose(log_prob, plain_log_prob, rtol=1e-12, atol=0)
    for key in ("start", "trans", "post", "obs", "obs**2"):
        np.testing.assert_allclose(stats[key], plain_stats[key], rtol=1e-10, atol=1e-12)

    calls.clear()
    np.testing.assert_allclose(stable.score(X, lengths), plain.score(X, lengths),
                               rtol=1e-12, atol=0)
    assert calls == ["score_scaling"]

    # The M-step override keeps hmmlearn's private _covars_ layout and adds min_covar.
    stable.min_covar = plain.min_covar = 1e-3
    stable._do_mstep(stats)
    plain._do_mstep(plain_stats)
    assert stable._covars_.shape == plain._covars_.shape == (2, 2)
    np.testing.assert_allclose(stable._covars_, plain._covars_ + 1e-3, rtol=1e-12, atol=0)

    # RegimeHMM's monitor subclass relies on fit() resetting it and calling report() once
    # an iteration, and on ConvergenceMonitor's history and iter.
    fitted = model(StableGaussianHMM)
    fitted.n_iter = 3
    fitted.monitor_ = _RecordingMonitor(-1.0, 3, False)  # a negative tol runs every iteration
    fitted.fit(X, lengths)
    assert fitted.monitor_.iter == len(fitted.monitor_.log_probs) == 3
    assert list(fitted.monitor_.history)[-1] == fitted.monitor_.log_probs[-1]
    assert issubclass(_RecordingMonitor, ConvergenceMonitor)
    # Start (1), transitions (2) and, per state, 2 means and 2 variances.
    assert sum(stable._get_n_fit_scalars_per_param().values()) == 1 + 2 + 4 + 4
