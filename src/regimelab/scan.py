"""The regime scan: for every state count, are the regimes reproducible, distinct and lasting?

Likelihood criteria (BIC, AIC, validation log-likelihood) keep rewarding more
states on market data: heavy tails, a continuum of volatility levels and
tens of thousands of autocorrelated bars counted as independent all pay for
one more Gaussian. On realistic synthetic markets BIC runs to the grid's edge
while the true regimes are three to five. The scan asks other questions, each
out of sample, with a statistical jump model (fast, and persistent by
construction):

- **reproducible**: the model is refitted on ``select.resamples`` block
  bootstraps of the training sequences (blocks of consecutive bars, drawn with
  replacement, so every resample mixes all periods of the history), and each
  refit labels the validation bars. ``stability`` is the smallest adjusted Rand
  index between a refit's labels and the full fit's. Beyond the true count an
  extra state is an arbitrary split of a regime, which another sample of the
  same market splits elsewhere;
- **distinct**: ``separation`` is the smallest distance between two states'
  centres in units of the pooled within-state spread (Mahalanobis). A split of
  one regime by the level of its volatility clustering stays reproducible
  (every sample has the bursts) but gives two states closer than their own
  spread;
- **lasting**: for each jump penalty in ``select.penalties``, the median run of
  the filtered (causal) labels on the validation bars. The chosen penalty is
  the smallest whose median run reaches ``select.min_dwell`` bars: persistence
  set in the units a trader thinks in, calibrated on data the model was not
  fitted to.

The state count is the largest whose regimes are reproducible and distinct
(:func:`choose_n_states`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score

from regimelab.exceptions import ModelError
from regimelab.families.jump.model import RegimeJump
from regimelab.metrics import runs
from regimelab.params import JumpParams, SelectParams

log = logging.getLogger(__name__)

#: Blocks per bootstrap resample: enough that every resample mixes the history's
#: periods, few enough that a block spans many regime changes' worth of bars.
N_BLOCKS = 50


def block_resample(X: np.ndarray, lengths: np.ndarray, *, n_blocks: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A moving-block bootstrap of sequences: ``n_blocks`` blocks of consecutive bars,
    drawn with replacement, each cut where the original has a gap.

    Returns
    -------
    X : ndarray of shape (about n_samples, n_features)
    lengths : ndarray of shape (n_sequences,)
        Every block (or piece of one, at a gap) is its own sequence.
    """
    n = len(X)
    size = max(2, n // n_blocks)
    ends = np.cumsum(lengths)
    starts = rng.integers(0, n - size + 1, size=n_blocks)
    pieces, out_lengths = [], []
    for start in np.sort(starts):
        stop = start + size
        cuts = ends[(ends > start) & (ends < stop)]
        bounds = np.r_[start, cuts, stop]
        for a, b in zip(bounds[:-1], bounds[1:]):
            pieces.append(X[a:b])
            out_lengths.append(b - a)
    return np.concatenate(pieces), np.asarray(out_lengths, dtype=np.int64)


def separation(model: RegimeJump, shares: np.ndarray) -> float:
    """Smallest Mahalanobis distance between two states' centres under the pooled
    within-state covariance, each state weighted by ``shares`` (of the training bars)."""
    k = model.n_states
    pooled = np.einsum("k,kij->ij", np.asarray(shares, dtype=np.float64), model.covars_)
    inverse = np.linalg.pinv(pooled)
    smallest = np.inf
    for i in range(k):
        for j in range(i + 1, k):
            delta = model.means_[i] - model.means_[j]
            smallest = min(smallest, float(np.sqrt(max(delta @ inverse @ delta, 0.0))))
    return float(smallest)


def median_dwell(states: np.ndarray, lengths: np.ndarray) -> float:
    """Median run of a label path, runs ending at gaps too."""
    segment = np.repeat(np.arange(len(lengths)), lengths)
    return float(np.median(runs(states, segment)[1]))


def _jump(n_states: int, penalty: float, jump: JumpParams, seed: int) -> RegimeJump:
    return RegimeJump(n_states, jump_penalty=penalty, cont=jump.cont, grid_size=jump.grid_size,
                      mode_loss=jump.mode_loss, n_init=jump.n_init, max_iter=jump.max_iter,
                      tol=jump.tol, min_state_bars=jump.min_state_bars, random_state=seed)


def scan_state_count(
    X: np.ndarray, lengths: np.ndarray, X_val: np.ndarray, lengths_val: np.ndarray, *,
    n_states: int, select: SelectParams, jump: JumpParams, min_dwell: float, seed: int,
    feature_names: list[str] | None = None,
) -> dict[str, Any]:
    """Reproducibility, separation and the calibrated persistence of one state count.

    Parameters
    ----------
    X, lengths : ndarray
        The training observations (n_samples, n_features) and sequence lengths.
    X_val, lengths_val : ndarray
        The validation ones.
    n_states : int
    select, jump : SelectParams, JumpParams
        The ``select`` and ``jump`` params.
    min_dwell : float
        The median run, in bars, the filtered validation labels must reach.
    seed : int
        ``model.seed``.

    Returns
    -------
    dict
        ``n_states``, ``stability``, ``separation``, ``jump_penalty`` (the
        calibrated one), ``median_dwell_val`` (its median run) and ``penalties``
        (the median run for every penalty tried; None where the fit failed).

    Raises
    ------
    ModelError
        If the jump model cannot be fitted at this state count at all.
    """
    entropy = [seed, n_states]
    base = _jump(n_states, select.scan_penalty, jump, seed).fit(
        X, lengths, feature_names=feature_names)
    shares = np.bincount(base.predict(X, lengths), minlength=n_states) / len(X)
    labels = base.predict(X_val, lengths_val)
    agreement = []
    for i, child in enumerate(np.random.SeedSequence(entropy).spawn(select.resamples)):
        rng = np.random.default_rng(child)
        X_r, lengths_r = block_resample(X, lengths, n_blocks=N_BLOCKS, rng=rng)
        try:
            refit = _jump(n_states, select.scan_penalty, jump, seed + 1 + i).fit(
                X_r, lengths_r, feature_names=feature_names)
        except ModelError:
            agreement.append(0.0)  # a resample that cannot hold the states: not reproducible
            continue
        agreement.append(float(adjusted_rand_score(labels, refit.predict(X_val, lengths_val))))
    dwell: dict[str, float | None] = {}
    chosen: float | None = None
    for penalty in select.penalties:
        try:
            model = _jump(n_states, penalty, jump, seed).fit(X, lengths,
                                                              feature_names=feature_names)
        except ModelError:
            dwell[f"{penalty:g}"] = None
            continue
        med = median_dwell(model.filter_proba(X_val, lengths_val).argmax(axis=1), lengths_val)
        dwell[f"{penalty:g}"] = med
        if chosen is None and med >= min_dwell:
            chosen = float(penalty)
    reached = chosen is not None
    if chosen is None:
        # No penalty in the grid makes the regimes last: the largest that fits, flagged.
        fitted = [float(p) for p in select.penalties if dwell[f"{p:g}"] is not None]
        chosen = fitted[-1] if fitted else float(select.scan_penalty)
    return {
        "n_states": n_states,
        "stability": float(min(agreement)) if agreement else 0.0,
        "resample_ari": agreement,
        "separation": separation(base, shares),
        "jump_penalty": chosen,
        "min_dwell_reached": reached,
        "median_dwell_val": dwell.get(f"{chosen:g}"),
        "penalties": dwell,
    }


def choose_n_states(rows: list[dict[str, Any]], *, min_stability: float,
                    min_separation: float) -> tuple[int, bool]:
    """The largest state count whose regimes are reproducible and distinct.

    Returns the count and whether any passed; when none does, the smallest
    count scanned (two regimes is the least a regime model can say).
    """
    passed = [r["n_states"] for r in rows
              if r["stability"] >= min_stability and r["separation"] >= min_separation]
    if passed:
        return max(passed), True
    return min(r["n_states"] for r in rows), False
