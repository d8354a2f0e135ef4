"""Forward, backward and Viterbi with transitions that change every bar, against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp

from regimelab.families.dssm import recursions


def random_terms(seed: int, n: int, k: int, *, varying: bool):
    rng = np.random.default_rng(seed)
    log_start = log_softmax(rng.normal(size=k))
    shape = (n, k, k) if varying else (k, k)
    log_trans = log_softmax(rng.normal(size=shape) + 2.0 * np.eye(k), axis=-1)
    log_emit = rng.normal(scale=3.0, size=(n, k)) - 40.0  # far below 0: needs the shift
    return log_start, log_trans, log_emit


def enumerate_paths(log_start, log_trans, log_emit):
    """log p(path, x) for every path of a tiny chain."""
    n, k = log_emit.shape
    trans = np.broadcast_to(log_trans, (n, k, k)) if log_trans.ndim == 2 else log_trans
    paths = np.array(list(itertools.product(range(k), repeat=n)))
    scores = log_start[paths[:, 0]] + log_emit[np.arange(n), paths].sum(axis=1)
    for t in range(1, n):
        scores += trans[t, paths[:, t - 1], paths[:, t]]
    return paths, scores


@pytest.mark.parametrize("varying", [False, True])
def test_match_brute_force_enumeration(varying: bool) -> None:
    n, k = 6, 3
    log_start, log_trans, log_emit = random_terms(1, n, k, varying=varying)
    paths, scores = enumerate_paths(log_start, log_trans, log_emit)
    total = logsumexp(scores)
    weights = np.exp(scores - total)
    smoothed = np.stack([np.bincount(paths[:, t], weights=weights, minlength=k)
                         for t in range(n)])
    filtered = []
    for t in range(n):  # P(z_t | x_1..t): the chain cut after bar t
        sub_paths, sub_scores = enumerate_paths(log_start, log_trans[:t + 1] if varying
                                                else log_trans, log_emit[:t + 1])
        w = np.exp(sub_scores - logsumexp(sub_scores))
        filtered.append(np.bincount(sub_paths[:, t], weights=w, minlength=k))

    fwd = recursions.forward(log_start, log_trans, log_emit)
    np.testing.assert_allclose(fwd.log_likelihood, total, rtol=1e-12, atol=0)
    np.testing.assert_allclose(fwd.filtered, np.array(filtered), rtol=0, atol=1e-12)
    np.testing.assert_allclose(recursions.smooth(fwd), smoothed, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(recursions.viterbi(log_start, log_trans, log_emit),
                                  paths[np.argmax(scores)])


def test_constant_transitions_give_the_same_answer_either_way() -> None:
    """One matrix for every bar and the same matrix given bar by bar agree."""
    n, k = 400, 4
    log_start, log_trans, log_emit = random_terms(2, n, k, varying=False)
    tiled = np.broadcast_to(log_trans, (n, k, k)).copy()
    static = recursions.forward(log_start, log_trans, log_emit)
    loop = recursions.forward(log_start, tiled, log_emit)
    np.testing.assert_allclose(loop.log_likelihood, static.log_likelihood, rtol=1e-12, atol=0)
    np.testing.assert_allclose(loop.filtered, static.filtered, rtol=0, atol=1e-12)
    np.testing.assert_allclose(recursions.smooth(loop), recursions.smooth(static),
                               rtol=0, atol=1e-10)
    np.testing.assert_array_equal(recursions.viterbi(log_start, tiled, log_emit),
                                  recursions.viterbi(log_start, log_trans, log_emit))


@pytest.mark.parametrize("varying", [False, True])
def test_filtered_values_ignore_later_bars(varying: bool) -> None:
    log_start, log_trans, log_emit = random_terms(3, 300, 3, varying=varying)
    whole = recursions.forward(log_start, log_trans, log_emit).filtered
    cut = recursions.forward(log_start, log_trans[:200] if varying else log_trans,
                             log_emit[:200]).filtered
    np.testing.assert_array_equal(whole[:200], cut)
