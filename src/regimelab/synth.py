"""Synthetic OHLCV markets whose regimes are known.

Tests and benchmarks need bars with a ground truth. :func:`make_market` draws
a hidden Markov chain of regimes, per-bar log-returns whose mean and standard
deviation depend on the regime (optionally with GARCH(1,1) volatility
clustering inside it), an intra-bar Brownian path for open/high/low/close,
volume coupled to the regime and to the size of the move, and finally
removes runs of bars to imitate exchange outages.

The model, for bar ``t`` in regime ``s = s_t`` with parameters
``(mu_s, sigma_s, v_s)`` = ``(drift, vol, volume)``:

* ``z_t ~ N(0, 1)`` i.i.d., the bar's standardised shock;
* ``q_t`` a normalised conditional variance with mean 1 (see
  :func:`make_market`, ``q_t = 1`` when ``vol_clustering == 0``);
* ``e_t = sqrt(q_t) * z_t`` and the log-return ``r_t = mu_s + sigma_s * e_t``;
* ``log(volume_t) = v_s + 0.5 * (|e_t| - sqrt(2 / pi)) + 0.2 * n_t`` with
  ``n_t ~ N(0, 1)``, so the mean log-volume in a regime is ``v_s`` when
  ``vol_clustering == 0`` and big moves come with big volume.
"""

from __future__ import annotations

import bisect
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
    "Regime",
    "make_market",
    "make_panel",
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

# Which DEFAULT_REGIMES to use for a given n_regimes when `regimes` is None:
# the most widely separated volatilities (each neighbour at least 2x apart).
_DEFAULT_PICK: dict[int, tuple[int, ...]] = {
    1: (1,),
    2: (0, 3),
    3: (0, 2, 3),
    4: (0, 1, 2, 3),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise ParamsError(f"{name}={value!r} is not allowed; expected an integer >= {minimum}")
    return int(value)


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
    leave_cum: list[list[float]] = []
    last_reachable: list[int] = []
    for i in range(k):
        row = transmat[i].copy()
        row[i] = 0.0
        leave_cum.append(np.cumsum(row).tolist())
        last_reachable.append(int(np.flatnonzero(row)[-1]) if row.any() else i)

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


def _garch_variance(z: np.ndarray, *, alpha: float, beta: float) -> np.ndarray:
    """Normalised GARCH(1,1) variance ``q_t`` driven by shocks ``z``.

    ``q_0 = 1`` and ``q_t = (1 - alpha - beta) + (alpha * z_{t-1}**2 + beta) * q_{t-1}``,
    which is ``q_t = w + alpha * e_{t-1}**2 + beta * q_{t-1}`` with
    ``e_t = sqrt(q_t) * z_t``; ``E[q_t] = 1``.

    Parameters
    ----------
    z : ndarray of shape (n_bars,)
        Standard normal shocks.

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
    k = _check_int("n_regimes", n_regimes, minimum=1)
    if k not in _DEFAULT_PICK:
        raise ParamsError(
            f"n_regimes={n_regimes!r} is not allowed without `regimes`; "
            f"expected 1..{len(DEFAULT_REGIMES)} or pass `regimes` explicitly"
        )
    return tuple(DEFAULT_REGIMES[i] for i in _DEFAULT_PICK[k])


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
    vol_clustering: float = 0.0,
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
        Without ``regimes`` the widest-spread entries of
        :data:`DEFAULT_REGIMES` are used: K=1 chop; K=2 calm_uptrend, crash;
        K=3 calm_uptrend, euphoria, crash (vols 0.003, 0.012, 0.025);
        K=4 all four.
    regimes : sequence of Regime, optional
        Regime laws; label ``i`` in the ``regime`` column is ``regimes[i]``.
    transmat : ndarray of shape (K, K), optional
        Row-stochastic transition matrix (rows sum to 1 within 1e-8).
        Default ``sticky_transmat(K, stickiness=stickiness)``.
    stickiness : float, default 0.99
        Used only when ``transmat`` is None.
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
    if (
        not isinstance(vol_clustering, (int, float, np.integer, np.floating))
        or not 0.0 <= vol_clustering < 1.0
    ):
        raise ParamsError(
            f"vol_clustering={vol_clustering!r} is not allowed; expected 0 <= vol_clustering < 1"
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
    # Draw order is fixed (chain, shocks, bridge extremes, volume, gaps) so
    # each piece of the output is reproducible on its own.
    state = _sample_chain(n, transmat_arr, rng)
    shocks = rng.standard_normal((n, m))
    # -log U for U ~ U(0, 1] is Exp(1), drawn directly (cheaper than log).
    exp_high = rng.standard_exponential((n, m))
    exp_low = rng.standard_exponential((n, m))
    volume_noise = rng.standard_normal(n)

    drift = np.array([r.drift for r in chosen])[state]
    vol = np.array([r.vol for r in chosen])[state]
    log_volume_mean = np.array([r.volume for r in chosen])[state]

    # The bar's shock is the sum of its sub-step shocks, so the path and the
    # return agree exactly.
    z = shocks.sum(axis=1) / math.sqrt(m)
    alpha = _ARCH_SHARE * float(vol_clustering)
    beta = float(vol_clustering) - alpha
    q = _garch_variance(z, alpha=alpha, beta=beta)
    sigma = vol * np.sqrt(q)

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
        + _VOLUME_RETURN_COUPLING * (np.abs(std_move) - math.sqrt(2.0 / math.pi))
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
        "make_market %s: %d bars simulated, %d kept, %d regimes, vol_clustering=%g",
        symbol,
        n,
        len(df),
        k,
        vol_clustering,
    )
    return df


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
