"""RegimeJump.fit(means_init=...): a warm start from a previous fit's centres."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from regimelab.exceptions import ModelError
from regimelab.families.jump.model import RegimeJump


def two_levels(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    levels = np.repeat([0.0, 3.0, 0.0, 3.0], 250)
    return (levels + rng.normal(0.0, 0.5, len(levels)))[:, None]


def test_a_warm_start_is_one_more_restart_tried_first() -> None:
    X = two_levels()
    lengths = np.array([len(X)])
    cold = RegimeJump(2, jump_penalty=5.0, n_init=2).fit(X, lengths)
    warm = RegimeJump(2, jump_penalty=5.0, n_init=2).fit(X, lengths, means_init=cold.means_)
    assert len(warm.restarts_) == 3 and len(cold.restarts_) == 2
    # Started at the optimum's centres, the first restart stops there at once and wins.
    assert warm.best_restart_ == 0 and warm.restarts_[0].n_iter <= 1
    assert_allclose(warm.means_, cold.means_, rtol=0, atol=1e-12)
    assert warm.objective_ == pytest.approx(cold.objective_, rel=1e-12)


def test_a_warm_start_of_the_wrong_shape_is_refused() -> None:
    X = two_levels()
    with pytest.raises(ModelError, match=r"means_init has shape \(3, 1\)"):
        RegimeJump(2, jump_penalty=5.0, n_init=1).fit(X, np.array([len(X)]),
                                                       means_init=np.zeros((3, 1)))
