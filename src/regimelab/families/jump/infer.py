"""The jump model's compiled kernels: losses, the dynamic programme, centres.

Every function here reproduces a step of the reference implementation
``jumpmodels`` (``jumpmodels/jump.py``: ``do_E_step``, ``dp``,
``discretize_prob_simplex``, ``check_jump_penalty_mx``; ``weighted_mean_cluster``
and ``is_same_clustering`` in ``jumpmodels/utils``) with the same values and the
same tie-breaking (the first index wins), so a fit here and a fit there reach
the same path and the same objective. What differs is speed and gaps:

- the programme is compiled by numba instead of one numpy call per bar, and
  the discrete model's step costs O(K) per bar instead of O(K^2):
  ``V_t(k) = L_t(k) + min(V_{t-1}(k), min_j V_{t-1}(j) + lambda)``, which is the
  same number as jumpmodels' ``min_j (V_{t-1}(j) + Lambda[j, k])`` because
  adding ``lambda`` is monotone in floating point;
- ``bounds`` (``[0, cumsum(lengths)]``) cuts the bars into gap-free sequences:
  the programme restarts at each one (no penalty is paid across a gap) and the
  objective is the sum over sequences.

The kernels are compiled without fast-math and add their terms in a fixed
order, so a result does not depend on the CPU's vector units.

States of the programme: in the discrete model the K regimes; in the
continuous model the rows of a grid on the simplex (:func:`simplex_grid`),
each a probability vector over the K regimes. ``weights`` below is the matrix
that turns a programme state into regime weights: the identity for the
discrete model, the grid for the continuous one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numba
import numpy as np
from scipy.spatial.distance import cdist
from scipy.special import logsumexp

# jumpmodels' stand-in for the loss of a state with no bars (a NaN centre) in the
# continuous model: finite, so that a zero weight times it is zero.
LARGE_FLOAT = 1e100


# -- the state space of the continuous model ---------------------------------------------

def grid_points(n_states: int, n_steps: int) -> int:
    """Number of points of :func:`simplex_grid`: ``C(n_steps + n_states - 1, n_states - 1)``."""
    return math.comb(n_steps + n_states - 1, n_states - 1)


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Tuples of ``parts`` non-negative integers summing to ``total``, in descending
    lexicographic order."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def simplex_grid(n_states: int, n_steps: int) -> np.ndarray:
    """Probability vectors whose entries are multiples of ``1 / n_steps``.

    In jumpmodels' order (``discretize_prob_simplex``: the filtered
    ``itertools.product`` reversed, i.e. descending lexicographic), so ties in
    the programme break the same way. Row 0 is ``(1, 0, ..., 0)``.

    Returns
    -------
    ndarray of shape (grid_points(n_states, n_steps), n_states)
    """
    counts = np.array(list(_compositions(n_steps, n_states)), dtype=float)
    return counts / n_steps


def continuous_penalty(grid: np.ndarray, jump_penalty: float, mode_loss: bool) -> np.ndarray:
    """The continuous model's penalty matrix, ``[from, to]``, as jumpmodels builds it.

    ``jump_penalty * (L1(p, q) / 2) ** 2``; with ``mode_loss`` each row ``p`` adds
    ``logsumexp(-row) - logsumexp(-row_0)``, which makes ``exp(-penalty)``
    proportional to a transition matrix (every row sums to the same value).

    Parameters
    ----------
    grid : ndarray of shape (n_points, n_states)

    Returns
    -------
    ndarray of shape (n_points, n_points)
    """
    half_l1 = cdist(grid, grid, "cityblock") / 2
    penalty = jump_penalty * (half_l1 ** 2)
    if mode_loss:
        row = logsumexp(-penalty, axis=1, keepdims=True)
        row -= row[0]
        penalty += row
    return penalty


# -- losses and centres ------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def state_losses(X: np.ndarray, centres: np.ndarray, empty_loss: float
                 ) -> np.ndarray:  # pragma: no cover (compiled)
    """``0.5 * ||x_t - mu_k||^2`` for every bar and regime, shape ``(n, K)``.

    A regime whose centre is NaN (it had no bars) costs ``empty_loss``:
    ``inf`` in the discrete model (it cannot be entered), ``LARGE_FLOAT`` in
    the continuous one, as in jumpmodels.
    """
    n, d = X.shape
    k = centres.shape[0]
    out = np.empty((n, k))
    for t in range(n):
        for j in range(k):
            acc = 0.0
            for f in range(d):
                diff = X[t, f] - centres[j, f]
                acc += diff * diff
            value = 0.5 * acc
            out[t, j] = empty_loss if np.isnan(value) else value
    return out


@numba.njit(cache=True, nogil=True)
def weighted_centres(X: np.ndarray, labels: np.ndarray, weights: np.ndarray
                     ) -> np.ndarray:  # pragma: no cover (compiled)
    """Each regime's weighted mean of the bars, shape ``(K, n_features)``.

    Bar t weighs ``weights[labels[t], k]`` in regime k (one-hot rows for the
    discrete model, grid rows for the continuous one). A regime with no weight
    gets a NaN centre, as in jumpmodels.
    """
    n, d = X.shape
    k = weights.shape[1]
    sums = np.zeros((k, d))
    total = np.zeros(k)
    for t in range(n):
        s = labels[t]
        for j in range(k):
            w = weights[s, j]
            if w != 0.0:
                total[j] += w
                for f in range(d):
                    sums[j, f] += w * X[t, f]
    out = np.empty((k, d))
    for j in range(k):
        for f in range(d):
            out[j, f] = sums[j, f] / total[j] if total[j] > 0.0 else np.nan
    return out


@numba.njit(cache=True, nogil=True)
def same_partition(a: np.ndarray, b: np.ndarray) -> bool:  # pragma: no cover (compiled)
    """Whether two label paths split the bars the same way, up to renaming the labels."""
    n_a = 0
    n_b = 0
    for t in range(a.shape[0]):
        n_a = max(n_a, a[t] + 1)
        n_b = max(n_b, b[t] + 1)
    to_b = np.full(n_a, -1)
    to_a = np.full(n_b, -1)
    for t in range(a.shape[0]):
        if to_b[a[t]] == -1:
            to_b[a[t]] = b[t]
        elif to_b[a[t]] != b[t]:
            return False
        if to_a[b[t]] == -1:
            to_a[b[t]] = a[t]
        elif to_a[b[t]] != a[t]:
            return False
    return True


# -- the discrete programme: K states, a constant penalty per switch --------------------

@numba.njit(cache=True, nogil=True)
def _discrete_forward(losses: np.ndarray, t0: int, t1: int, jump_penalty: float,
                      values: np.ndarray) -> None:  # pragma: no cover (compiled)
    """Fill ``values[t0:t1]`` with the forward values of one sequence."""
    k = losses.shape[1]
    for j in range(k):
        values[t0, j] = losses[t0, j]
    for t in range(t0 + 1, t1):
        low = values[t - 1, 0]
        for j in range(1, k):
            low = min(low, values[t - 1, j])
        jump = low + jump_penalty
        for j in range(k):
            values[t, j] = losses[t, j] + min(values[t - 1, j], jump)


@numba.njit(cache=True, nogil=True)
def _first_argmin(row: np.ndarray) -> int:  # pragma: no cover (compiled)
    best = 0
    for j in range(1, row.shape[0]):
        if row[j] < row[best]:
            best = j
    return best


@numba.njit(cache=True, nogil=True)
def discrete_path(losses: np.ndarray, bounds: np.ndarray, jump_penalty: float
                  ) -> tuple[np.ndarray, float]:  # pragma: no cover (compiled)
    """The optimal state path and its objective (losses plus penalties).

    Parameters
    ----------
    losses : ndarray of shape (n, K)
    bounds : ndarray of shape (n_sequences + 1,)
        Row where each sequence starts, then ``n``.
    jump_penalty : float

    Returns
    -------
    labels : ndarray of shape (n,)
    objective : float
        Summed over sequences, in their order.
    """
    n, k = losses.shape
    values = np.empty((n, k))
    labels = np.empty(n, dtype=np.int64)
    total = 0.0
    for s in range(bounds.shape[0] - 1):
        t0, t1 = bounds[s], bounds[s + 1]
        _discrete_forward(losses, t0, t1, jump_penalty, values)
        state = _first_argmin(values[t1 - 1])
        total += values[t1 - 1, state]
        labels[t1 - 1] = state
        # jumpmodels' traceback: the first j minimising V_{t-1}(j) + Lambda[j, s_t].
        for t in range(t1 - 1, t0, -1):
            best = 0
            best_value = values[t - 1, 0] + (0.0 if state == 0 else jump_penalty)
            for j in range(1, k):
                value = values[t - 1, j] + (0.0 if state == j else jump_penalty)
                if value < best_value:
                    best, best_value = j, value
            state = best
            labels[t - 1] = state
    return labels, total


@numba.njit(cache=True, nogil=True)
def discrete_online(losses: np.ndarray, bounds: np.ndarray, jump_penalty: float
                    ) -> np.ndarray:  # pragma: no cover (compiled)
    """The online labels: at each bar the state of lowest forward value, shape ``(n,)``.

    Row t uses the bars of its sequence up to t only.
    """
    n, k = losses.shape
    values = np.empty((n, k))
    labels = np.empty(n, dtype=np.int64)
    for s in range(bounds.shape[0] - 1):
        _discrete_forward(losses, bounds[s], bounds[s + 1], jump_penalty, values)
        for t in range(bounds[s], bounds[s + 1]):
            labels[t] = _first_argmin(values[t])
    return labels


# -- the general programme: grid states, a penalty matrix --------------------------------

@numba.njit(cache=True, nogil=True)
def _mixed_losses(losses: np.ndarray, t: int, grid: np.ndarray, out: np.ndarray
                  ) -> None:  # pragma: no cover (compiled)
    """``out[i] = sum_k grid[i, k] * losses[t, k]``: the loss of each grid vector at bar t."""
    for i in range(grid.shape[0]):
        acc = 0.0
        for j in range(grid.shape[1]):
            acc += grid[i, j] * losses[t, j]
        out[i] = acc


@numba.njit(cache=True, nogil=True)
def _general_step(prev: np.ndarray, mixed: np.ndarray, penalty: np.ndarray,
                  best: np.ndarray, cur: np.ndarray, back: np.ndarray
                  ) -> None:  # pragma: no cover (compiled)
    """``cur[j] = mixed[j] + min_i (prev[i] + penalty[i, j])``; ``back[j]`` the first
    minimising i; ``best`` is scratch.

    The loop over predecessors i is the outer one, so the inner loop updates
    every j independently instead of carrying one long chain of comparisons
    (three times faster than a minimum over i for each j); i still runs in
    ascending order for each j, so a strict ``<`` keeps the first minimiser, as
    ``argmin`` does.
    """
    m = prev.shape[0]
    p0 = prev[0]
    for j in range(m):
        best[j] = p0 + penalty[0, j]
        back[j] = 0
    for i in range(1, m):
        pi = prev[i]
        for j in range(m):
            value = pi + penalty[i, j]
            if value < best[j]:
                best[j] = value
                back[j] = i
    for j in range(m):
        cur[j] = mixed[j] + best[j]


@numba.njit(cache=True, nogil=True)
def general_path(losses: np.ndarray, bounds: np.ndarray, grid: np.ndarray,
                 penalty: np.ndarray) -> tuple[np.ndarray, float]:  # pragma: no cover
    """The optimal path over the grid and its objective, for any penalty matrix.

    O(M^2) per bar for M grid points. The back-pointers hold, for each bar and
    grid point, the predecessor jumpmodels' traceback would pick (the first
    minimiser of ``V_{t-1}(i) + penalty[i, j]``).

    Parameters
    ----------
    losses : ndarray of shape (n, K)
    bounds : ndarray of shape (n_sequences + 1,)
    grid : ndarray of shape (M, K)
    penalty : ndarray of shape (M, M)
        ``penalty[from, to]``, C-contiguous.

    Returns
    -------
    labels : ndarray of shape (n,)
        Row index into ``grid`` of each bar's vector.
    objective : float
    """
    n = losses.shape[0]
    m = grid.shape[0]
    back = np.empty((n, m), dtype=np.int32)
    labels = np.empty(n, dtype=np.int64)
    prev = np.empty(m)
    cur = np.empty(m)
    mixed = np.empty(m)
    best = np.empty(m)
    total = 0.0
    for s in range(bounds.shape[0] - 1):
        t0, t1 = bounds[s], bounds[s + 1]
        _mixed_losses(losses, t0, grid, prev)
        for t in range(t0 + 1, t1):
            _mixed_losses(losses, t, grid, mixed)
            _general_step(prev, mixed, penalty, best, cur, back[t])
            prev, cur = cur, prev
        state = _first_argmin(prev)
        total += prev[state]
        labels[t1 - 1] = state
        for t in range(t1 - 1, t0, -1):
            state = back[t, state]
            labels[t - 1] = state
    return labels, total


@numba.njit(cache=True, nogil=True)
def general_online(losses: np.ndarray, bounds: np.ndarray, grid: np.ndarray,
                   penalty: np.ndarray) -> np.ndarray:  # pragma: no cover (compiled)
    """The online labels over the grid: the first minimiser of each bar's forward
    values, shape ``(n,)``. Row t uses the bars of its sequence up to t only."""
    n = losses.shape[0]
    m = grid.shape[0]
    back = np.empty(m, dtype=np.int32)
    labels = np.empty(n, dtype=np.int64)
    prev = np.empty(m)
    cur = np.empty(m)
    mixed = np.empty(m)
    best = np.empty(m)
    for s in range(bounds.shape[0] - 1):
        t0, t1 = bounds[s], bounds[s + 1]
        _mixed_losses(losses, t0, grid, prev)
        labels[t0] = _first_argmin(prev)
        for t in range(t0 + 1, t1):
            _mixed_losses(losses, t, grid, mixed)
            _general_step(prev, mixed, penalty, best, cur, back)
            prev, cur = cur, prev
            labels[t] = _first_argmin(prev)
    return labels
