"""Synthetic OHLCV markets whose regimes are known.

Tests and benchmarks need bars with a ground truth. :func:`make_market` draws
a hidden chain of regimes (a Markov chain, or a semi-Markov one whose run
lengths are more regular than geometric), per-bar log-returns whose mean and
standard deviation depend on the regime (optionally with GARCH(1,1)
volatility clustering inside it, and Gaussian or Student-t shocks), an
intra-bar Brownian path for open/high/low/close, volume coupled to the regime
and to the size of the move, and finally removes runs of bars to imitate
exchange outages. :func:`make_realistic_market` turns all of these on at
once, with the values in :func:`realistic_market_params`.

The model, for bar ``t`` in regime ``s = s_t`` with parameters
``(mu_s, sigma_s, v_s)`` = ``(drift, vol, volume)``:

* ``z_t`` i.i.d. with mean 0 and variance 1, the bar's standardised shock:
  ``N(0, 1)``, or with ``noise_df = nu`` a Student t scaled to unit
  variance, ``z_t = g_t * sqrt((nu - 2) / c_t)`` with ``g_t ~ N(0, 1)`` and
  ``c_t ~ chi2(nu)``;
* ``q_t`` a normalised conditional variance with mean 1 (see
  :func:`make_market`, ``q_t = 1`` when ``vol_clustering == 0``);
* ``e_t = sqrt(q_t) * z_t`` and the log-return ``r_t = mu_s + sigma_s * e_t``;
* ``log(volume_t) = v_s + 0.5 * (|e_t| - E|z_t|) + 0.2 * n_t`` with
  ``n_t ~ N(0, 1)``, so the mean log-volume in a regime is ``v_s`` when
  ``vol_clustering == 0`` and big moves come with big volume.
"""

from __future__ import annotations

import bisect
import dataclasses
import inspect
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from regimelab.exceptions import ParamsError
from regimelab.io import write_csv

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_REGIMES",
    "EXTRA_REGIMES",
    "Regime",
    "default_regimes",
    "make_market",
    "make_panel",
    "make_realistic_market",
    "realistic_market_params",
    "sticky_transmat",
    "write_market",
]

#: Share of ``vol_clustering`` given to the ARCH term: ``alpha = 0.1 * vc``.
_ARCH_SHARE = 0.1
#: Extra log-volume per unit of ``|e_t|``, the standardised move.
_VOLUME_RETURN_COUPLING = 0.5
#: Standard deviation of the idiosyncratic log-volume noise.
_VOLUME_NOISE = 0.2
#: Tolerance on transition-matrix row sums.
_ROW_SUM_ATOL = 1e-8
#: Laws of a regime's run length, see ``dwell`` in :func:`make_market`.
_DWELLS = ("geometric", "gamma", "negbin")


@dataclass(frozen=True)
class Regime:
    """One market regime: the law of a bar's log-return and log-volume.

    Parameters
    ----------
    name : str
        Label for humans (plots, reports); not used by the simulation.
    drift : float
        Mean log-return per bar.
    vol : float
        Standard deviation of the log-return per bar (the regime's base,
        i.e. unconditional, volatility). Must be positive.
    volume : float
        Mean of ``log(volume)`` per bar in this regime.
    """

    name: str
    drift: float
    vol: float
    volume: float

    def __post_init__(self) -> None:
        for field in ("drift", "vol", "volume"):
            value = getattr(self, field)
            if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(
                value
            ):
                raise ParamsError(
                    f"Regime {self.name!r}: {field}={value!r} is not allowed; "
                    "expected a finite number"
                )
        if self.vol <= 0:
            raise ParamsError(
                f"Regime {self.name!r}: vol={self.vol!r} is not allowed; expected vol > 0"
            )


#: Four hourly crypto-like regimes, by ascending volatility. Drifts are chosen
#: so that under equal occupancy the mean drift is zero (calm + euphoria =
#: -crash), which keeps long series from running off to extreme prices.
#: ``volume`` rises with ``vol``.
DEFAULT_REGIMES: tuple[Regime, ...] = (
    Regime(name="calm_uptrend", drift=0.0003, vol=0.003, volume=7.0),
    Regime(name="chop", drift=0.0, vol=0.006, volume=7.4),
    Regime(name="euphoria", drift=0.0012, vol=0.012, volume=7.9),
    Regime(name="crash", drift=-0.0015, vol=0.025, volume=8.5),
)

#: Two more regimes for ``n_regimes`` 5 and 6, one at each end of the
#: volatility ladder: ``quiet`` has half of calm_uptrend's vol and
#: ``whipsaw`` twice crash's, a violent two-sided market. Their drifts are
#: zero, so the drifts of the default laws still cancel under equal
#: occupancy for K = 5 and 6, and neighbouring vols stay 2x apart.
EXTRA_REGIMES: tuple[Regime, ...] = (
    Regime(name="quiet", drift=0.0, vol=0.0015, volume=6.6),
    Regime(name="whipsaw", drift=0.0, vol=0.05, volume=9.2),
)

# Which regimes of DEFAULT_REGIMES + EXTRA_REGIMES to use for a given
# n_regimes when `regimes` is None: the most widely separated volatilities
# (each neighbour at least 2x apart), by ascending volatility so that label 0
# is always the calmest.
_DEFAULT_PICK: dict[int, tuple[int, ...]] = {
    1: (1,),
    2: (0, 3),
    3: (0, 2, 3),
    4: (0, 1, 2, 3),
    5: (4, 0, 1, 2, 3),
    6: (4, 0, 1, 2, 3, 5),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise ParamsError(f"{name}={value!r} is not allowed; expected an integer >= {minimum}")
    return int(value)


def _per_regime(name: str, value: Any, k: int, *, lower: float, strict: bool) -> np.ndarray:
    """``value`` as one float per regime: a scalar for all, or ``k`` of them.

    Every entry must be finite and ``> lower`` (``strict``) or ``>= lower``.

    Returns
    -------
    values : ndarray of shape (k,)
    """
    bound = f"> {lower:g}" if strict else f">= {lower:g}"
    error = ParamsError(
        f"{name}={value!r} is not allowed; expected a finite number {bound} "
        f"or a sequence of {k} such numbers, one per regime"
    )
    if _is_real(value):
        arr = np.full(k, float(value))
    elif isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise error
    else:
        if not all(_is_real(v) for v in np.asarray(value, dtype=object).ravel().tolist()):
            raise error
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != (k,):
            raise error
    if not np.all(np.isfinite(arr)) or (arr.min() <= lower if strict else arr.min() < lower):
        raise error
    return arr


def sticky_transmat(n_regimes: int, *, stickiness: float = 0.99) -> np.ndarray:
    """Transition matrix that stays put with probability ``stickiness``.

    Parameters
    ----------
    n_regimes : int
        Number of regimes ``K >= 1``.
    stickiness : float, default 0.99
        Probability of staying in the current regime, ``0 < stickiness < 1``.
        The expected run length is ``1 / (1 - stickiness)`` bars.

    Returns
    -------
    transmat : ndarray of shape (n_regimes, n_regimes)
        Row-stochastic: ``stickiness`` on the diagonal and
        ``(1 - stickiness) / (K - 1)`` elsewhere. For ``K == 1`` it is
        ``[[1.0]]``, since a lone regime has nowhere to go.

    Raises
    ------
    ParamsError
        If ``n_regimes < 1`` or ``stickiness`` is not in ``(0, 1)``.
    """
    k = _check_int("n_regimes", n_regimes, minimum=1)
    if (
        not isinstance(stickiness, (int, float, np.integer, np.floating))
        or not 0.0 < float(stickiness) < 1.0
    ):
        raise ParamsError(
            f"stickiness={stickiness!r} is not allowed; expected a number with 0 < stickiness < 1"
        )
    if k == 1:
        return np.ones((1, 1))
    transmat = np.full((k, k), (1.0 - float(stickiness)) / (k - 1))
    np.fill_diagonal(transmat, float(stickiness))
    return transmat


def _stationary(transmat: np.ndarray) -> np.ndarray:
    """Stationary distribution of ``transmat``; uniform if none is found.

    Solves ``pi (A - I) = 0, sum(pi) = 1`` by least squares. A reducible
    chain has many solutions; if the one found is not a distribution the
    uniform one is used instead.
    """
    k = transmat.shape[0]
    system = np.vstack([transmat.T - np.eye(k), np.ones((1, k))])
    rhs = np.zeros(k + 1)
    rhs[-1] = 1.0
    pi, *_ = np.linalg.lstsq(system, rhs, rcond=None)
    if (
        not np.all(np.isfinite(pi))
        or pi.min() < -1e-9
        or not np.allclose(pi @ transmat, pi, rtol=0.0, atol=1e-9)
    ):
        return np.full(k, 1.0 / k)
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def _sample_chain(n_bars: int, transmat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw a regime path of length ``n_bars`` run by run.

    A Markov chain stays in ``i`` for a Geometric(``1 - A[i, i]``) number of
    bars and then jumps to ``j != i`` with probability
    ``A[i, j] / (1 - A[i, i])``; sampling runs instead of bars makes the
    python loop as long as the number of regime changes, not of bars.

    Returns
    -------
    regimes : ndarray of shape (n_bars,), int64
    """
    k = transmat.shape[0]
    states = np.empty(n_bars, dtype=np.int64)
    if k == 1:
        states.fill(0)
        return states
    stay = np.diag(transmat).tolist()
    log_stay = [math.log(p) if 0.0 < p < 1.0 else 0.0 for p in stay]
    leave_cum, last_reachable = _jump_table(transmat)

    pi = _stationary(transmat)
    state = int(np.searchsorted(np.cumsum(pi), rng.random() * pi.sum(), side="right"))
    state = min(state, k - 1)

    # Uniforms in batches: two per run (run length, next state).
    batch = 2 * max(16, int(n_bars * (1.0 - min(stay))) + 1)
    uniforms: list[float] = []
    pos = 0
    t = 0
    while True:
        if pos + 2 > len(uniforms):
            uniforms = uniforms[pos:] + rng.random(batch).tolist()
            pos = 0
        u_run, u_next = uniforms[pos], uniforms[pos + 1]
        pos += 2
        p_stay = stay[state]
        if p_stay >= 1.0:
            run = n_bars - t
        elif p_stay <= 0.0:
            run = 1
        else:
            # Inverse CDF of Geometric(1 - p_stay) on {1, 2, ...}; 1 - u in (0, 1].
            run = 1 + int(math.log(1.0 - u_run) / log_stay[state])
        end = min(n_bars, t + run)
        states[t:end] = state
        t = end
        if t >= n_bars:
            return states
        cum = leave_cum[state]
        nxt = bisect.bisect_right(cum, u_next * cum[-1])
        # u * total can round up to total; fall back to the last reachable state.
        state = nxt if nxt < k else last_reachable[state]


def _jump_table(transmat: np.ndarray) -> tuple[list[list[float]], list[int]]:
    """Cumulative off-diagonal rows of ``transmat``, and each row's last state with mass.

    Row ``i`` of the first list, searched with ``u * row[-1]``, draws the
    next regime of the embedded jump chain, ``j != i`` with probability
    ``A[i, j] / (1 - A[i, i])``.
    """
    leave_cum: list[list[float]] = []
    last_reachable: list[int] = []
    for i in range(transmat.shape[0]):
        row = transmat[i].copy()
        row[i] = 0.0
        leave_cum.append(np.cumsum(row).tolist())
        last_reachable.append(int(np.flatnonzero(row)[-1]) if row.any() else i)
    return leave_cum, last_reachable


def _occupancy_transmat(transmat: np.ndarray, mean_dwell: np.ndarray) -> np.ndarray:
    """Markov matrix with ``transmat``'s jump chain and mean run lengths ``mean_dwell``.

    Row ``i`` stays with probability ``1 - 1 / mean_dwell[i]`` and otherwise
    jumps as ``transmat``'s off-diagonal says; a row with no off-diagonal
    mass, or an infinite mean, stays for good. A semi-Markov chain spends
    the share ``pi_J[i] * mean_dwell[i] / sum(pi_J * mean_dwell)`` of its
    time in regime ``i`` (``pi_J`` stationary for the jump chain), and so
    does this Markov chain: :func:`_stationary` of it is the occupancy.

    Returns
    -------
    markov : ndarray of shape (K, K)
    """
    k = transmat.shape[0]
    leave = transmat.copy()
    np.fill_diagonal(leave, 0.0)
    out_mass = leave.sum(axis=1)
    markov = np.eye(k)
    for i in range(k):
        if out_mass[i] > 0.0 and math.isfinite(mean_dwell[i]):
            p_leave = 1.0 / mean_dwell[i]
            markov[i] = leave[i] * (p_leave / out_mass[i])
            markov[i, i] = 1.0 - p_leave
    return markov


def _draw_runs(
    dwell: str, *, mean: float, shape: float, size: int, cap: int, rng: np.random.Generator
) -> list[int]:
    """``size`` run lengths >= 1 with mean ``mean`` and shape ``shape``, at most about ``cap``.

    ``"gamma"``: ``ceil(G)``, ``G ~ Gamma(shape, (mean - 1/2) / shape)``; the
    ceiling adds half a bar on average, so the mean is ``mean`` within
    0.06 bar for ``mean >= 2`` (0.16 at worst, near ``mean = 1``).
    ``"negbin"``: ``1 + Poisson(L)``, ``L ~ Gamma(shape, (mean - 1) / shape)``,
    a shifted negative binomial whose mean is exactly ``mean``; with
    ``shape = 1`` it is the geometric law of a Markov chain. For both the
    coefficient of variation tends to ``1 / sqrt(shape)`` for long runs.
    """
    gamma = rng.standard_gamma(shape, size)
    # Runs past the end of the path are cut anyway; capping keeps int64 and
    # the Poisson sampler in range for huge means.
    if dwell == "gamma":
        runs = np.ceil(np.minimum(gamma * ((mean - 0.5) / shape), cap))
        return np.maximum(runs, 1.0).astype(np.int64).tolist()
    lam = np.minimum(gamma * ((mean - 1.0) / shape), 2.0 * cap)
    return (1 + rng.poisson(lam)).tolist()


def _sample_semi_markov_chain(
    n_bars: int,
    transmat: np.ndarray,
    *,
    dwell: str,
    mean_dwell: np.ndarray,
    dwell_shape: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw a semi-Markov regime path of length ``n_bars`` run by run.

    A run in regime ``i`` lasts a number of bars drawn from the law
    ``dwell`` (see :func:`_draw_runs`) with mean ``mean_dwell[i]`` and shape
    ``dwell_shape[i]``; the next regime is ``j != i`` with probability
    ``A[i, j] / (1 - A[i, i])`` (the embedded jump chain of ``transmat``). A
    regime with no way out keeps the rest of the path. The first regime is
    drawn from the occupancy (:func:`_occupancy_transmat`) and its run is a
    whole one, not the rest of a run in progress; with runs of days the
    difference is lost in the first run.

    Run lengths are drawn per regime in batches, the next regimes in one
    stream of uniforms, so the python loop is as long as the number of runs.

    Returns
    -------
    regimes : ndarray of shape (n_bars,), int64
    """
    k = transmat.shape[0]
    states = np.empty(n_bars, dtype=np.int64)
    if k == 1:
        states.fill(0)
        return states
    leave_cum, last_reachable = _jump_table(transmat)
    markov = _occupancy_transmat(transmat, mean_dwell)
    absorbing = (np.diag(markov) >= 1.0).tolist()

    pi = _stationary(markov)
    state = int(np.searchsorted(np.cumsum(pi), rng.random() * pi.sum(), side="right"))
    state = min(state, k - 1)

    # Expected runs per regime over the path, plus slack: few refills, no waste.
    expected_runs = [
        0.0 if absorbing[i] else n_bars * float(pi[i]) / float(mean_dwell[i]) for i in range(k)
    ]
    run_batch = [16 + int(1.1 * r) for r in expected_runs]
    jump_batch = 16 + int(1.1 * sum(expected_runs))
    runs: list[list[int]] = [[] for _ in range(k)]
    run_pos = [0] * k
    uniforms: list[float] = []
    pos = 0
    t = 0
    while True:
        if absorbing[state]:
            run = n_bars - t
        else:
            if run_pos[state] == len(runs[state]):
                runs[state] = _draw_runs(
                    dwell,
                    mean=float(mean_dwell[state]),
                    shape=float(dwell_shape[state]),
                    size=run_batch[state],
                    cap=n_bars,
                    rng=rng,
                )
                run_pos[state] = 0
            run = runs[state][run_pos[state]]
            run_pos[state] += 1
        end = min(n_bars, t + run)
        states[t:end] = state
        t = end
        if t >= n_bars:
            return states
        if pos == len(uniforms):
            uniforms = rng.random(jump_batch).tolist()
            pos = 0
        u_next = uniforms[pos]
        pos += 1
        cum = leave_cum[state]
        nxt = bisect.bisect_right(cum, u_next * cum[-1])
        state = nxt if nxt < k else last_reachable[state]


def _mean_abs_shock(noise_df: float | None) -> float:
    """``E|z|`` for a unit-variance shock: normal, or Student t with ``noise_df`` dof."""
    if noise_df is None:
        return math.sqrt(2.0 / math.pi)
    nu = float(noise_df)
    # E|t_nu| = sqrt(nu / pi) * Gamma((nu - 1) / 2) / Gamma(nu / 2), times the
    # unit-variance scale sqrt((nu - 2) / nu).
    return math.sqrt((nu - 2.0) / math.pi) * math.exp(
        math.lgamma((nu - 1.0) / 2.0) - math.lgamma(nu / 2.0)
    )


def _garch_variance(z: np.ndarray, *, alpha: float, beta: float) -> np.ndarray:
    """Normalised GARCH(1,1) variance ``q_t`` driven by shocks ``z``.

    ``q_0 = 1`` and ``q_t = (1 - alpha - beta) + (alpha * z_{t-1}**2 + beta) * q_{t-1}``,
    which is ``q_t = w + alpha * e_{t-1}**2 + beta * q_{t-1}`` with
    ``e_t = sqrt(q_t) * z_t``; ``E[q_t] = 1``.

    Parameters
    ----------
    z : ndarray of shape (n_bars,)
        Standardised shocks (mean 0, variance 1), normal or Student t.

    Returns
    -------
    q : ndarray of shape (n_bars,)
    """
    n = z.shape[0]
    if alpha == 0.0 and beta == 0.0:
        return np.ones(n)
    omega = 1.0 - alpha - beta
    coef = (alpha * z[:-1] ** 2 + beta).tolist()
    q = [1.0] * n
    prev = 1.0
    # The recursion has a random coefficient, so no linear filter applies;
    # a loop over python floats is ~10 ms per 100k bars.
    for t, c in enumerate(coef, start=1):
        prev = omega + c * prev
        q[t] = prev
    return np.asarray(q)


def _resolve_regimes(
    n_regimes: int | None, regimes: Sequence[Regime] | None, transmat: np.ndarray | None
) -> tuple[Regime, ...]:
    if regimes is not None:
        chosen = tuple(regimes)
        if len(chosen) == 0 or not all(isinstance(r, Regime) for r in chosen):
            raise ParamsError(
                f"regimes={regimes!r} is not allowed; expected a non-empty sequence of Regime"
            )
        if n_regimes is not None and n_regimes != len(chosen):
            raise ParamsError(
                f"n_regimes={n_regimes!r} does not match len(regimes)={len(chosen)}; "
                "expected them to agree (or leave n_regimes out)"
            )
        return chosen
    if n_regimes is None:
        n_regimes = transmat.shape[0] if transmat is not None and transmat.ndim == 2 else 3
    return default_regimes(n_regimes)


def default_regimes(n_regimes: int) -> tuple[Regime, ...]:
    """The regime laws :func:`make_market` uses for ``n_regimes`` without ``regimes``.

    The widest-spread vols of :data:`DEFAULT_REGIMES` and
    :data:`EXTRA_REGIMES`, by ascending vol (label ``i`` is entry ``i``),
    each neighbour 2x apart or more:

    ===  ===================================================
    K    regimes
    ===  ===================================================
    1    chop
    2    calm_uptrend, crash
    3    calm_uptrend, euphoria, crash
    4    calm_uptrend, chop, euphoria, crash
    5    quiet, calm_uptrend, chop, euphoria, crash
    6    quiet, calm_uptrend, chop, euphoria, crash, whipsaw
    ===  ===================================================

    ============  =======  ======  ======
    name          drift    vol     volume
    ============  =======  ======  ======
    quiet          0       0.0015  6.6
    calm_uptrend   0.0003  0.003   7.0
    chop           0       0.006   7.4
    euphoria       0.0012  0.012   7.9
    crash         -0.0015  0.025   8.5
    whipsaw        0       0.05    9.2
    ============  =======  ======  ======

    The drifts of every K but 2 sum to zero, so with equal occupancy (the
    default sticky ``transmat``) long series do not run off.

    Parameters
    ----------
    n_regimes : int
        ``K`` in ``1..6``.

    Returns
    -------
    regimes : tuple of Regime, of length n_regimes

    Raises
    ------
    ParamsError
        If ``n_regimes`` is not an integer in ``1..6``.
    """
    k = _check_int("n_regimes", n_regimes, minimum=1)
    if k not in _DEFAULT_PICK:
        raise ParamsError(
            f"n_regimes={n_regimes!r} is not allowed without `regimes`; "
            f"expected 1..{max(_DEFAULT_PICK)} or pass `regimes` explicitly"
        )
    ladder = DEFAULT_REGIMES + EXTRA_REGIMES
    return tuple(ladder[i] for i in _DEFAULT_PICK[k])


def _as_float_matrix(transmat: Any) -> np.ndarray:
    try:
        return np.array(transmat, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParamsError(
            f"transmat={transmat!r} is not allowed; expected a square array of floats"
        ) from exc


def _check_transmat(arr: np.ndarray, k: int) -> np.ndarray:
    if arr.shape != (k, k):
        raise ParamsError(
            f"transmat has shape {arr.shape}; expected ({k}, {k}) to match the {k} regimes"
        )
    if not np.all(np.isfinite(arr)) or arr.min() < 0.0:
        raise ParamsError(
            f"transmat={arr.tolist()!r} is not allowed; expected finite, non-negative entries"
        )
    sums = arr.sum(axis=1)
    if not np.allclose(sums, 1.0, rtol=0.0, atol=_ROW_SUM_ATOL):
        raise ParamsError(
            f"transmat row sums are {sums.tolist()!r}; "
            f"expected every row to sum to 1 within {_ROW_SUM_ATOL:g}"
        )
    # Exact row sums make a row with no way out stay put with probability 1.
    return arr / sums[:, None]


def _gap_mask(
    n_bars: int, *, n_gaps: int, max_gap_bars: int, rng: np.random.Generator
) -> np.ndarray:
    """Boolean mask of bars to keep, with ``n_gaps`` separate interior gaps.

    Gap lengths are uniform on ``1..max_gap_bars``. Gaps go between kept
    bars at distinct places, so they never touch each other, the first bar
    or the last bar, and every gap shows as one jump in the timestamps.

    Returns
    -------
    keep : ndarray of shape (n_bars,), bool
    """
    keep = np.ones(n_bars, dtype=bool)
    if n_gaps == 0:
        return keep
    lengths = rng.integers(1, max_gap_bars, size=n_gaps, endpoint=True)
    n_kept = n_bars - int(lengths.sum())
    # Gap i follows kept bar after_kept[i] (0-based, never the last kept bar).
    after_kept = np.sort(rng.choice(n_kept - 1, size=n_gaps, replace=False))
    # Position in the full series = kept bars before it + missing bars before it.
    starts = after_kept + 1 + np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        keep[start : start + length] = False
    return keep


def _timestamps(start: str, freq: str, n_bars: int) -> pd.DatetimeIndex:
    try:
        offset = to_offset(freq)
    except (TypeError, ValueError) as exc:
        raise ParamsError(
            f"freq={freq!r} is not allowed; expected a pandas frequency such as '1h' or '15min'"
        ) from exc
    try:
        first = pd.Timestamp(start)
    except (TypeError, ValueError) as exc:
        raise ParamsError(
            f"start={start!r} is not allowed; expected a date such as '2020-01-01'"
        ) from exc
    if first is pd.NaT:
        raise ParamsError(f"start={start!r} is not allowed; expected a date such as '2020-01-01'")
    first = first.tz_localize("UTC") if first.tzinfo is None else first.tz_convert("UTC")
    return pd.date_range(first, periods=n_bars, freq=offset)


def make_market(
    n_bars: int,
    *,
    n_regimes: int | None = None,
    regimes: Sequence[Regime] | None = None,
    transmat: np.ndarray | None = None,
    stickiness: float = 0.99,
    dwell: str = "geometric",
    mean_dwell: float | Sequence[float] | None = None,
    dwell_shape: float | Sequence[float] = 2.0,
    vol_clustering: float = 0.0,
    noise_df: float | None = None,
    n_gaps: int = 0,
    max_gap_bars: int = 12,
    start: str = "2020-01-01",
    freq: str = "1h",
    symbol: str = "SYN",
    start_price: float = 100.0,
    substeps: int = 8,
    random_state: int | np.random.SeedSequence | None = 0,
) -> pd.DataFrame:
    """Simulate one market's OHLCV bars with known regimes.

    Parameters
    ----------
    n_bars : int
        Bars simulated on the regular grid, ``>= 2``. Gaps are removed
        afterwards, so the frame has ``n_bars`` minus the missing bars rows.
    n_regimes : int, optional
        Number of regimes ``K``. Defaults to ``len(regimes)`` if given, else
        ``transmat.shape[0]`` if given, else 3; must agree with both.
        Without ``regimes`` the laws are ``default_regimes(K)``, K in 1..6,
        labelled by ascending vol: K=1 chop; K=2 calm_uptrend, crash;
        K=3 calm_uptrend, euphoria, crash (vols 0.003, 0.012, 0.025);
        K=4 the four :data:`DEFAULT_REGIMES`; K=5 adds quiet (0.0015);
        K=6 adds whipsaw (0.05) too.
    regimes : sequence of Regime, optional
        Regime laws; label ``i`` in the ``regime`` column is ``regimes[i]``.
    transmat : ndarray of shape (K, K), optional
        Row-stochastic transition matrix (rows sum to 1 within 1e-8).
        Default ``sticky_transmat(K, stickiness=stickiness)``.
    stickiness : float, default 0.99
        Used only when ``transmat`` is None.
    dwell : {"geometric", "gamma", "negbin"}, default "geometric"
        Law of the number of bars a regime lasts once entered (a run).
        ``"geometric"``: the Markov chain ``transmat``, whose runs in ``i``
        are Geometric(``1 - A[i, i]``), mean ``1 / (1 - A[i, i])`` and
        coefficient of variation ``sqrt(A[i, i])``, nearly 1.
        ``"gamma"`` and ``"negbin"``: a semi-Markov chain. A run in regime
        ``i`` has mean ``mean_dwell[i]`` and shape ``dwell_shape[i]``:
        ``"gamma"`` is ``ceil(G)`` with ``G ~ Gamma(shape, (mean - 1/2) /
        shape)`` (mean within 0.06 bar of ``mean_dwell`` once it is 2 or
        more), ``"negbin"`` is ``1 + Poisson(Gamma(shape, (mean - 1) /
        shape))`` (mean exact; ``dwell_shape=1`` is the geometric law). The
        coefficient of variation of long runs is about
        ``1 / sqrt(dwell_shape)``, so a shape above 1 makes runs more
        regular than a Markov chain's. After a run the next regime is
        ``j != i`` with probability ``A[i, j] / (1 - A[i, i])``, the jump
        chain of ``transmat`` (uniform for the default sticky matrix); a
        regime with no off-diagonal mass keeps the rest of the path. The
        first regime is drawn from the occupancy, ``pi_J[i] * mean[i]``
        normalised, with ``pi_J`` stationary for the jump chain.
    mean_dwell : float or sequence of K floats, optional
        Mean run length in bars, ``>= 1``, for all regimes or per regime.
        Only with a semi-Markov ``dwell``; None means
        ``1 / (1 - A[i, i])``, the geometric chain's mean.
    dwell_shape : float or sequence of K floats, default 2.0
        Shape of the run-length law, ``> 0``, for all regimes or per
        regime. Used only with a semi-Markov ``dwell``.
    vol_clustering : float, default 0.0
        Persistence ``p = alpha + beta`` of GARCH(1,1) clustering, in
        ``[0, 1)``, with ``alpha = 0.1 * p`` and ``beta = 0.9 * p``. The
        normalised variance follows ``q_0 = 1``,
        ``q_t = (1 - p) + alpha * e_{t-1}**2 + beta * q_{t-1}``,
        ``e_t = sqrt(q_t) * z_t``, and the log-return is
        ``r_t = drift_s + vol_s * e_t``. Inside a regime this is exactly a
        GARCH(1,1) on ``r_t - drift_s`` with unconditional variance
        ``vol_s**2``; at a regime change ``q`` carries over and the level
        switches to the new ``vol_s``. 0 gives i.i.d. returns in a regime.
        ``z_t`` is the bar's standardised shock, Student t when
        ``noise_df`` is set, so heavy tails feed the clustering.
    noise_df : float, optional
        None gives Gaussian shocks. A number ``nu > 2`` gives Student-t
        shocks with ``nu`` degrees of freedom scaled to unit variance (excess
        kurtosis ``6 / (nu - 4)`` for ``nu > 4``, before any clustering), as
        a scale mixture: every sub-step shock of bar ``t`` is multiplied by
        the same ``sqrt((nu - 2) / c_t)``, ``c_t ~ chi2(nu)``. Within a bar
        the path is then Brownian with that bar's scale, so ``high``,
        ``low`` and ``close`` stay those of one continuous path and the
        Parkinson estimator stays about unbiased for ``vol``. The
        chi-squared draws come after the others and before the gaps.
    n_gaps : int, default 0
        Exchange outages: separate runs of bars removed after simulation,
        so the price moves across a gap. Gaps never touch the first or last
        bar or each other.
    max_gap_bars : int, default 12
        Gap lengths are uniform on ``1..max_gap_bars``;
        ``n_gaps * max_gap_bars`` must be at most ``n_bars // 4``.
    start : str, default "2020-01-01"
        Open time of the first bar; naive times are taken as UTC.
    freq : str, default "1h"
        Bar length, a pandas frequency string.
    symbol : str, default "SYN"
    start_price : float, default 100.0
        Open of the first bar, ``> 0``.
    substeps : int, default 8
        Sub-steps of the intra-bar Brownian path, ``>= 1``. The path's
        maximum and minimum between sub-steps are drawn from the exact
        Brownian-bridge laws, so ``high`` and ``low`` are those of a
        continuous path and the Parkinson estimator is about unbiased
        for ``vol``.
    random_state : int, SeedSequence or None, default 0
        Seed for ``np.random.default_rng``. The gaps are drawn last, so a
        frame with gaps is the same frame without gaps minus some rows.

    Returns
    -------
    df : DataFrame of shape (n_rows, 8)
        Columns ``timestamp`` (datetime64 UTC, the bar's open time),
        ``symbol`` (str), ``open``, ``high``, ``low``, ``close``,
        ``volume`` (float64) and ``regime`` (int64 in ``0..K-1``).
        ``low <= min(open, close)``, ``high >= max(open, close)``,
        ``volume > 0``, and ``open[t] == close[t-1]`` except across a gap.

    Raises
    ------
    ParamsError
        If an argument is out of range or the shapes disagree.
    """
    n = _check_int("n_bars", n_bars, minimum=2)
    if n_regimes is not None:
        _check_int("n_regimes", n_regimes, minimum=1)
    transmat_arr = None if transmat is None else _as_float_matrix(transmat)
    chosen = _resolve_regimes(n_regimes, regimes, transmat_arr)
    k = len(chosen)
    # Validates stickiness even when transmat overrides it.
    default_transmat = sticky_transmat(k, stickiness=stickiness)
    transmat_arr = default_transmat if transmat_arr is None else _check_transmat(transmat_arr, k)
    if not isinstance(dwell, str) or dwell not in _DWELLS:
        raise ParamsError(
            f"dwell={dwell!r} is not allowed; expected one of "
            + ", ".join(repr(name) for name in _DWELLS)
        )
    # Validates dwell_shape even when the geometric dwell ignores it.
    shape_arr = _per_regime("dwell_shape", dwell_shape, k, lower=0.0, strict=True)
    if dwell == "geometric":
        if mean_dwell is not None:
            raise ParamsError(
                f"mean_dwell={mean_dwell!r} is not allowed with dwell='geometric', whose "
                "runs follow transmat; expected mean_dwell=None or dwell='gamma' or 'negbin'"
            )
        mean_arr = np.empty(0)
    elif mean_dwell is None:
        stay = np.diag(transmat_arr)
        mean_arr = np.full(k, np.inf)
        mean_arr[stay < 1.0] = 1.0 / (1.0 - stay[stay < 1.0])
    else:
        mean_arr = _per_regime("mean_dwell", mean_dwell, k, lower=1.0, strict=False)
    if (
        not isinstance(vol_clustering, (int, float, np.integer, np.floating))
        or not 0.0 <= vol_clustering < 1.0
    ):
        raise ParamsError(
            f"vol_clustering={vol_clustering!r} is not allowed; expected 0 <= vol_clustering < 1"
        )
    if noise_df is not None and (
        not _is_real(noise_df) or not math.isfinite(noise_df) or noise_df <= 2
    ):
        raise ParamsError(
            f"noise_df={noise_df!r} is not allowed; expected None (Gaussian shocks) "
            "or finite degrees of freedom > 2"
        )
    gaps = _check_int("n_gaps", n_gaps, minimum=0)
    max_gap = _check_int("max_gap_bars", max_gap_bars, minimum=1)
    if gaps * max_gap > n // 4:
        raise ParamsError(
            f"n_gaps={gaps} with max_gap_bars={max_gap} may remove {gaps * max_gap} of {n} bars; "
            f"expected n_gaps * max_gap_bars <= n_bars // 4 = {n // 4}"
        )
    m = _check_int("substeps", substeps, minimum=1)
    if (
        not isinstance(start_price, (int, float, np.integer, np.floating))
        or not math.isfinite(start_price)
        or start_price <= 0
    ):
        raise ParamsError(
            f"start_price={start_price!r} is not allowed; expected a finite number > 0"
        )
    if not isinstance(symbol, str) or not symbol:
        raise ParamsError(f"symbol={symbol!r} is not allowed; expected a non-empty string")
    timestamps = _timestamps(start, freq, n)

    rng = np.random.default_rng(random_state)
    # Draw order is fixed (chain, shocks, bridge extremes, volume, t scales,
    # gaps) so each piece of the output is reproducible on its own, and the
    # options that are off draw nothing: the defaults give the same frames
    # as before semi-Markov dwell and t shocks existed.
    if dwell == "geometric":
        state = _sample_chain(n, transmat_arr, rng)
    else:
        state = _sample_semi_markov_chain(
            n, transmat_arr, dwell=dwell, mean_dwell=mean_arr, dwell_shape=shape_arr, rng=rng
        )
    shocks = rng.standard_normal((n, m))
    # -log U for U ~ U(0, 1] is Exp(1), drawn directly (cheaper than log).
    exp_high = rng.standard_exponential((n, m))
    exp_low = rng.standard_exponential((n, m))
    volume_noise = rng.standard_normal(n)
    # Student t as a normal scale mixture, one scale per bar; None for normal.
    t_scale = None if noise_df is None else np.sqrt((noise_df - 2.0) / rng.chisquare(noise_df, n))

    drift = np.array([r.drift for r in chosen])[state]
    vol = np.array([r.vol for r in chosen])[state]
    log_volume_mean = np.array([r.volume for r in chosen])[state]

    # The bar's shock is the sum of its sub-step shocks, so the path and the
    # return agree exactly.
    z = shocks.sum(axis=1) / math.sqrt(m)
    if t_scale is not None:
        # GARCH must see the t shock, tails included, not its normal part.
        z = z * t_scale
    alpha = _ARCH_SHARE * float(vol_clustering)
    beta = float(vol_clustering) - alpha
    q = _garch_variance(z, alpha=alpha, beta=beta)
    sigma = vol * np.sqrt(q)
    if t_scale is not None:
        # The whole intra-bar path takes the bar's scale, so the sub-step
        # shocks still sum to the bar's (now t) shock.
        sigma = sigma * t_scale

    # Intra-bar log path relative to the open, at sub-step ends: (n, m).
    step_sd = (sigma / math.sqrt(m))[:, None]
    path = np.cumsum(drift[:, None] / m + step_sd * shocks, axis=1)
    log_return = path[:, -1]
    prev = np.concatenate([np.zeros((n, 1)), path[:, :-1]], axis=1)
    # Max/min of a Brownian bridge from a to b with variance s2:
    # (a + b +/- sqrt((b - a)**2 - 2 * s2 * log U)) / 2, U ~ U(0, 1].
    spread_sq = (path - prev) ** 2
    two_var = 2.0 * step_sd**2
    mid = prev + path
    hi = 0.5 * (mid + np.sqrt(spread_sq + two_var * exp_high))
    lo = 0.5 * (mid - np.sqrt(spread_sq + two_var * exp_low))
    log_high = hi.max(axis=1)
    log_low = lo.min(axis=1)

    log_open = math.log(start_price) + np.concatenate([[0.0], np.cumsum(log_return[:-1])])
    close = np.exp(log_open + log_return)
    open_ = np.empty(n)
    open_[0] = float(start_price)
    open_[1:] = close[:-1]
    # exp of different sums can round apart, so enforce the OHLC order in floats.
    high = np.maximum(np.exp(log_open + log_high), np.maximum(open_, close))
    low = np.minimum(np.exp(log_open + log_low), np.minimum(open_, close))

    std_move = np.sqrt(q) * z
    log_volume = (
        log_volume_mean
        + _VOLUME_RETURN_COUPLING * (np.abs(std_move) - _mean_abs_shock(noise_df))
        + _VOLUME_NOISE * volume_noise
    )
    volume = np.exp(log_volume)

    keep = _gap_mask(n, n_gaps=gaps, max_gap_bars=max_gap, rng=rng)
    df = pd.DataFrame(
        {
            "timestamp": timestamps[keep],
            "symbol": pd.array([symbol] * int(keep.sum()), dtype="str"),
            "open": open_[keep],
            "high": high[keep],
            "low": low[keep],
            "close": close[keep],
            "volume": volume[keep],
            "regime": state[keep],
        }
    )
    logger.debug(
        "make_market %s: %d bars simulated, %d kept, %d regimes, dwell=%s, "
        "vol_clustering=%g, noise_df=%s",
        symbol,
        n,
        len(df),
        k,
        dwell,
        vol_clustering,
        noise_df,
    )
    return df


def realistic_market_params(n_regimes: int = 4) -> dict[str, Any]:
    """Keyword arguments of :func:`make_market` for a realistic hourly market.

    The one place where the values of :func:`make_realistic_market` live.
    Every effect a regime model meets in real hourly bars is on, at a
    strength a careful model can still see through: neighbouring regimes'
    vols are 2x apart and regimes last days.

    * ``regimes``: ``default_regimes(n_regimes)`` with every drift moved by
      the same constant so that the occupancy-weighted mean drift is 0
      (the regimes keep their drift differences, and a 50,000-bar series
      wanders but does not trend away).
    * ``dwell="gamma"``, ``dwell_shape=3.0``: semi-Markov runs with a
      coefficient of variation of about 0.58 (geometric: about 1).
    * ``mean_dwell``: from 240 bars (10 days) for the calmest regime down to
      72 bars (3 days) for the most volatile, evenly spaced in log and
      rounded to whole bars: K=2 (240, 72), K=3 (240, 131, 72),
      K=4 (240, 161, 108, 72), K=5 (240, 178, 131, 97, 72),
      K=6 (240, 189, 148, 117, 92, 72). The jump chain is uniform (the
      default sticky ``transmat``, whose diagonal is then unused), so the
      occupancy is proportional to ``mean_dwell``: 41/28/19/12 % for K=4.
    * ``vol_clustering=0.93``: GARCH(1,1) with ``alpha=0.093``,
      ``beta=0.837`` inside regimes (half-life of a volatility shock about
      10 bars).
    * ``noise_df=5.0``: Student-t shocks, excess kurtosis 6; with the
      clustering the standardised return's kurtosis is about 18.5 (excess
      15.5), still finite since ``0.93**2 + 0.093**2 * 8 < 1``. Sample
      kurtosis converges slowly at these tails: over 50,000 bars the
      per-regime excess kurtosis is typically 3 to 16.
    * ``n_gaps=10``, ``max_gap_bars=12``: ten outages of 1 to 12 hours
      (``n_bars`` must be at least 480).

    Parameters
    ----------
    n_regimes : int, default 4
        ``K`` in ``1..6``.

    Returns
    -------
    params : dict
        A fresh dict with keys ``regimes``, ``dwell``, ``mean_dwell``,
        ``dwell_shape``, ``vol_clustering``, ``noise_df``, ``n_gaps`` and
        ``max_gap_bars``; ``make_market(n_bars, **params)`` or
        ``make_panel(n_symbols, n_bars, **params)`` draws such markets.

    Raises
    ------
    ParamsError
        If ``n_regimes`` is not an integer in ``1..6``.
    """
    laws = default_regimes(n_regimes)
    k = len(laws)
    longest, shortest = 240.0, 72.0
    steps = np.arange(k) / max(k - 1, 1)
    mean_dwell = tuple(float(d) for d in np.round(longest * (shortest / longest) ** steps))
    occupancy = _stationary(
        _occupancy_transmat(sticky_transmat(k), np.asarray(mean_dwell, dtype=np.float64))
    )
    mean_drift = float(occupancy @ np.array([r.drift for r in laws]))
    return {
        "regimes": tuple(dataclasses.replace(r, drift=r.drift - mean_drift) for r in laws),
        "dwell": "gamma",
        "mean_dwell": mean_dwell,
        "dwell_shape": 3.0,
        "vol_clustering": 0.93,
        "noise_df": 5.0,
        "n_gaps": 10,
        "max_gap_bars": 12,
    }


def make_realistic_market(
    n_bars: int = 50_000,
    *,
    n_regimes: int = 4,
    random_state: int | np.random.SeedSequence | None = 0,
    **overrides: Any,
) -> pd.DataFrame:
    """Simulate a realistic hourly market whose regimes a careful model can recover.

    ``make_market(n_bars, random_state=random_state, **params)`` with
    ``params = realistic_market_params(n_regimes)`` updated by
    ``overrides``: semi-Markov regimes lasting 3 to 10 days on average,
    GARCH clustering inside them, Student-t shocks and ten outage gaps.

    Parameters
    ----------
    n_bars : int, default 50_000
        Bars simulated on the hourly grid (about 5.7 years), ``>= 480``
        with the default gaps.
    n_regimes : int, default 4
        ``K`` in ``1..6``; see :func:`realistic_market_params`.
    random_state : int, SeedSequence or None, default 0
    **overrides
        Any other :func:`make_market` argument, replacing the preset's
        value (``noise_df=None``, ``n_gaps=0``, ``symbol="BTC"``, ...).

    Returns
    -------
    df : DataFrame of shape (n_rows, 8)
        As :func:`make_market`; ``regime`` is the true label, by ascending vol.

    Raises
    ------
    ParamsError
        If ``n_regimes`` is out of range, an override is not a
        :func:`make_market` argument, or :func:`make_market` rejects the
        arguments.
    """
    params = realistic_market_params(n_regimes)
    allowed = set(inspect.signature(make_market).parameters) - {
        "n_bars",
        "n_regimes",
        "random_state",
    }
    for key in overrides:
        if key not in allowed:
            raise ParamsError(
                f"{key}={overrides[key]!r} is not allowed in make_realistic_market; "
                f"expected a make_market argument other than n_bars, n_regimes, random_state"
            )
    params.update(overrides)
    return make_market(n_bars, random_state=random_state, **params)


def make_panel(
    n_symbols: int, n_bars: int, *, random_state: int | None = 0, **kwargs: Any
) -> pd.DataFrame:
    """Simulate ``n_symbols`` independent markets in one long frame.

    Parameters
    ----------
    n_symbols : int
        Number of markets, ``>= 1``, named ``SYN00``, ``SYN01``, ... (wider
        zero padding past 100 symbols, so names sort in order).
    n_bars : int
        Bars per market, as in :func:`make_market`.
    random_state : int or None, default 0
        Market ``i`` uses ``np.random.SeedSequence(random_state).spawn(n_symbols)[i]``,
        so it equals ``make_market(n_bars, symbol=name_i, random_state=child_i, **kwargs)``.
    **kwargs
        Passed to :func:`make_market` (not ``symbol``).

    Returns
    -------
    df : DataFrame of shape (n_rows, 8)
        The markets' frames, sorted by ``symbol`` then ``timestamp``, with
        a fresh ``RangeIndex``.

    Raises
    ------
    ParamsError
        If ``n_symbols < 1``, ``symbol`` is in ``kwargs``, or
        :func:`make_market` rejects its arguments.
    """
    count = _check_int("n_symbols", n_symbols, minimum=1)
    if "symbol" in kwargs:
        raise ParamsError(
            f"symbol={kwargs['symbol']!r} is not allowed in make_panel; names are SYN00, SYN01, ..."
        )
    width = max(2, len(str(count - 1)))
    children = np.random.SeedSequence(random_state).spawn(count)
    frames = [
        make_market(n_bars, symbol=f"SYN{i:0{width}d}", random_state=child, **kwargs)
        for i, child in enumerate(children)
    ]
    # Built in symbol order, each frame in time order: already sorted.
    return pd.concat(frames, ignore_index=True)


def write_market(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write bars to CSV (gzip if ``path`` ends in ``.gz``), reproducibly.

    ``timestamp`` is written as ISO-8601 UTC, ``2020-01-01T00:00:00Z``
    (with fractional seconds only if some bar has them); floats use pandas'
    shortest round-trip repr; all other columns, ``regime`` included, are
    written as they are. The same frame always gives the same bytes.

    Parameters
    ----------
    df : DataFrame of shape (n_rows, n_columns)
        Bars as returned by :func:`make_market` or :func:`make_panel`; needs
        a tz-aware ``timestamp`` column.
    path : str or PathLike
        Target file, written atomically.

    Raises
    ------
    ParamsError
        If ``timestamp`` is missing or not tz-aware datetimes.
    """
    if "timestamp" not in df.columns:
        raise ParamsError(f"df has columns {list(df.columns)!r}; expected a 'timestamp' column")
    ts = df["timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise ParamsError(
            f"df['timestamp'] has dtype {ts.dtype}; expected tz-aware datetimes (e.g. UTC)"
        )
    values = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    whole_seconds = values.astype("datetime64[s]")
    # numpy formats without going through per-row strftime (fast on millions of rows).
    if np.array_equal(whole_seconds.astype(values.dtype), values):
        text = np.datetime_as_string(whole_seconds, unit="s")
    else:
        text = np.datetime_as_string(values)
    out = df.copy()
    out["timestamp"] = pd.array(np.char.add(text.astype(str), "Z"), dtype="str")
    write_csv(out, path)
