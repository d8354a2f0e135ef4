"""``RegimeJump``: statistical jump models behind the shared regime-model interface.

The fit is jumpmodels' ``JumpModel.fit`` step for step (k-means++ starts drawn
from one random state, coordinate descent between centres and the optimal path,
the same stopping rule, the best objective kept), on the compiled kernels of
:mod:`regimelab.families.jump.infer`, with gaps, a canonical state order,
degenerate fits rejected and files without pickle.
"""

from __future__ import annotations

import logging
import math
import numbers
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import kmeans_plusplus
from sklearn.metrics import adjusted_rand_score
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

from regimelab.exceptions import ModelError, ParamsError
from regimelab.families.jump import infer
from regimelab.io import read_json, read_npz, write_json, write_npz
from regimelab.regimes import volatility_order

log = logging.getLogger(__name__)

# The continuous programme costs points^2 per bar: 21 points (K=2, grid 0.05) take about
# 0.5 ms per 1,000 bars and iteration, 231 points (K=3, grid 0.05) about 22 ms, and 500
# points would take about 100 ms.
MAX_GRID_POINTS = 500

# 1 / grid_size of the round grid sizes suggested in an error (0.01, 0.02, ..., 0.5, 1).
_ROUND_STEPS = (100, 50, 40, 25, 20, 10, 5, 4, 2, 1)

_PARAM_NAMES = ("n_states", "jump_penalty", "cont", "grid_size", "mode_loss", "n_init",
                "max_iter", "tol", "min_state_bars", "random_state")


@dataclass
class Restart:
    """What one restart did: its objective, iterations and fate."""

    index: int
    objective: float | None = None
    n_iter: int = 0
    converged: bool = False
    smallest_state: float | None = None  # bars (expected bars, continuous) of its rarest state
    failed: str | None = None


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _bounds(lengths: Any, n_rows: int) -> np.ndarray:
    """``[0, cumsum(lengths)]``: where each gap-free sequence starts, then ``n_rows``."""
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or (lengths.size and not np.issubdtype(lengths.dtype, np.integer)):
        raise ModelError(f"lengths must be a 1-D array of integers, got shape {lengths.shape} "
                         f"and dtype {lengths.dtype}")
    lengths = lengths.astype(np.int64)
    if lengths.sum() != n_rows or (lengths <= 0).any():
        raise ModelError(f"lengths sum to {lengths.sum()} but X has {n_rows} rows "
                         "(and every length must be positive)")
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _check_X(X: Any) -> np.ndarray:
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ModelError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    bad = ~np.isfinite(X)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ModelError(f"X has {int(bad.sum())} non-finite values (the first in row {row}); "
                         "drop or fill them before fitting or predicting")
    return X


def _state_covars(X: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each state's weighted full covariance around its weighted mean, shape (K, D, D)."""
    out = np.empty((weights.shape[1], X.shape[1], X.shape[1]))
    for k in range(weights.shape[1]):
        w = weights[:, k]
        total = w.sum()
        diff = X - (w @ X) / total
        out[k] = (diff * w[:, None]).T @ diff / total
    return out


class RegimeJump:
    """Statistical jump model (discrete, or continuous with ``cont=True``).

    Each bar is assigned a state (discrete) or a probability vector over the
    states (continuous), minimising the sum of the losses
    ``0.5 * ||x_t - mu_k||^2`` (probability-weighted for the continuous model)
    plus ``jump_penalty`` for every switch (discrete) or
    ``jump_penalty * (L1(p_{t-1}, p_t) / 2) ** 2`` (continuous, plus
    jumpmodels' mode-loss row correction when ``mode_loss``). The fit
    alternates the centres and the optimal path, from ``n_init`` k-means++
    starts, and keeps the lowest objective among the restarts that leave every
    state at least ``min_state_bars`` bars. With the same data, ``random_state``
    and settings, it finds the same path and objective as
    ``jumpmodels.jump.JumpModel``.

    **No likelihood.** ``has_likelihood`` is False: :meth:`score` raises
    :class:`~regimelab.exceptions.ModelError`, and :meth:`objective` gives
    the fitted criterion (losses plus penalties, lower is better) instead.
    Callers that compare families by held-out log-likelihood check
    ``has_likelihood`` first.

    The interface every family shares, all taking ``(X, lengths)``:
    :meth:`predict` is the optimal path given all of ``X`` (hindsight);
    :meth:`predict_proba` its one-hot rows (discrete) or probability vectors
    (continuous); :meth:`filter_proba` the online answer, from the forward
    programme alone, so row t uses bars up to t only. Each gap-free sequence
    is solved on its own: no penalty is paid across a gap.

    Parameters
    ----------
    n_states : int
        Number of regimes K, at least 2.
    jump_penalty : float
        lambda, the cost of a switch, >= 0 (0: k-means on single bars). The
        persistence knob: larger values give longer regimes.
    cont : bool
        The continuous jump model (probability vectors on a grid of the simplex).
    grid_size : float
        Step of that grid; ``1 / grid_size`` must be a whole number. The
        programme costs (grid points)^2 per bar, and at most 500 points are
        allowed (K=2: any step down to 0.002; K=3: 0.05; K=4: 0.1).
    mode_loss : bool
        Add jumpmodels' mode loss to the continuous penalty matrix.
    n_init : int
        Restarts, each from k-means++ centres.
    max_iter : int
        Most centre-and-path iterations of a restart.
    tol : float
        A restart stops when its objective improves by less than this (an
        absolute amount, as in jumpmodels) or its partition stops changing.
    min_state_bars : int
        A restart whose path gives a state fewer bars than this (expected bars,
        for the continuous model) is degenerate and not kept.
    random_state : int
        Seeds the k-means++ starts (one ``RandomState``, drawn ``n_init`` times).

    Attributes
    ----------
    means_ : ndarray of shape (K, n_features)
        The centres, in the canonical order (ascending volatility).
    covars_ : ndarray of shape (K, n_features, n_features)
        Each state's covariance of the training bars on the fitted path
        (weighted by the probability vectors for the continuous model).
    transmat_ : ndarray of shape (K, K)
        The empirical transition matrix of the fitted training path (the
        continuous model's path as :meth:`predict` labels it), counted within
        sequences only; a state never left within a sequence stays put with
        probability 1. A summary of the path, not a fitted parameter.
    startprob_ : ndarray of shape (K,)
        The share of the training sequences starting in each state when every
        state starts at least one (probability-weighted for the continuous
        model); otherwise, as with one or a few sequences, the share of the
        training bars in each state. ``startprob_source_`` says which
        (``'sequence_starts'`` or ``'occupancy'``).
    objective_ : float
        The training objective of the fitted model (equals ``objective(X, lengths)``).
    n_iter_, converged_ : the best restart's iterations and whether it stopped by
        the stopping rule rather than ``max_iter``.
    restarts_ : list of Restart
    best_restart_ : int
    restart_ari_ : float
        Adjusted Rand index between the paths of the two best restarts (NaN with
        fewer than two).
    state_order_ : dict
        The ordering rule (see :func:`regimelab.regimes.volatility_order`).
    """

    has_likelihood = False

    def __init__(self, n_states: int, *, jump_penalty: float = 50.0, cont: bool = False,
                 grid_size: float = 0.05, mode_loss: bool = True, n_init: int = 10,
                 max_iter: int = 1000, tol: float = 1e-8, min_state_bars: int = 20,
                 random_state: int = 0) -> None:
        self.n_states = n_states
        self.jump_penalty = jump_penalty
        self.cont = cont
        self.grid_size = grid_size
        self.mode_loss = mode_loss
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.min_state_bars = min_state_bars
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments."""
        return {k: getattr(self, k) for k in _PARAM_NAMES}

    # -- settings and the programme's state space ----------------------------------------

    def _check_settings(self) -> None:
        k = self.n_states
        if not _is_int(k) or k < 2:
            raise ParamsError(f"model.n_states = {k!r}: a jump model needs an integer >= 2")
        lam = self.jump_penalty
        if not _is_real(lam) or not math.isfinite(lam) or lam < 0:
            raise ParamsError(f"jump.jump_penalty = {lam!r}: expected a finite number >= 0")
        for name, low in (("n_init", 1), ("max_iter", 0), ("min_state_bars", 1)):
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ParamsError(f"jump.{name} = {value!r}: expected an integer >= {low}")
        if not _is_real(self.tol) or not self.tol >= 0:
            raise ParamsError(f"jump.tol = {self.tol!r}: expected a number >= 0")
        if not isinstance(self.cont, (bool, np.bool_)):
            raise ParamsError(f"jump.cont = {self.cont!r}: expected true or false")
        if self.cont:
            self._grid_steps()

    def _grid_steps(self) -> int:
        """``1 / grid_size``, checked: a whole number, and a grid small enough to solve."""
        g, k = self.grid_size, self.n_states
        if not _is_real(g) or not 0 < g <= 1:
            raise ParamsError(f"jump.grid_size = {g!r}: expected a number in (0, 1]")
        steps = round(1 / g)
        if abs(steps * g - 1) > 1e-9:
            raise ParamsError(f"jump.grid_size = {g!r}: 1 / grid_size must be a whole number "
                              "(e.g. 0.05, 0.1, 0.2)")
        points = infer.grid_points(k, steps)
        if points > MAX_GRID_POINTS:
            coarser = next((s for s in _ROUND_STEPS
                            if s < steps and infer.grid_points(k, s) <= MAX_GRID_POINTS), None)
            hint = (f"use a coarser jump.grid_size, e.g. {1 / coarser:g} "
                    f"({infer.grid_points(k, coarser)} points)" if coarser
                    else "use the discrete model (jump.cont = false)")
            raise ParamsError(
                f"jump.grid_size = {g!r} with model.n_states = {k} gives {points} grid points, "
                f"more than {MAX_GRID_POINTS} (the continuous programme costs points^2 per "
                f"bar); {hint}")
        return steps

    def _build_space(self) -> None:
        """The programme's states as regime weights, and the continuous penalty matrix."""
        if self.cont:
            self._weights = infer.simplex_grid(self.n_states, self._grid_steps())
            self._penalty = infer.continuous_penalty(self._weights, float(self.jump_penalty),
                                                     bool(self.mode_loss))
        else:
            self._weights = np.eye(self.n_states)
            self._penalty = np.zeros((0, 0))

    # -- the programme ---------------------------------------------------------------------

    def _losses(self, X: np.ndarray, centres: np.ndarray) -> np.ndarray:
        empty = infer.LARGE_FLOAT if self.cont else np.inf
        return infer.state_losses(X, centres, empty)

    def _path(self, X: np.ndarray, bounds: np.ndarray, centres: np.ndarray
              ) -> tuple[np.ndarray, float]:
        """Optimal path (indices into ``_weights``) and its objective."""
        losses = self._losses(X, centres)
        if self.cont:
            return infer.general_path(losses, bounds, self._weights, self._penalty)
        return infer.discrete_path(losses, bounds, float(self.jump_penalty))

    def _online(self, X: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        losses = self._losses(X, self.means_)
        if self.cont:
            return infer.general_online(losses, bounds, self._weights, self._penalty)
        return infer.discrete_online(losses, bounds, float(self.jump_penalty))

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, X: np.ndarray, lengths: np.ndarray, *,
            feature_names: list[str] | None = None,
            means_init: np.ndarray | None = None) -> RegimeJump:
        """Fit with restarts and keep the lowest objective.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        lengths : ndarray of shape (n_sequences,)
            Rows per gap-free sequence; the programme restarts at each.
        feature_names : list of str, optional
            Column names of ``X``; they pick the volatility feature that orders
            the states (see :func:`regimelab.regimes.volatility_order`).
        means_init : ndarray of shape (n_states, n_features), optional
            A warm start (a previous fit's ``means_``): one more restart descends
            from these centres, before the ``n_init`` k-means++ starts, and wins
            a tie with them.

        Raises
        ------
        ParamsError
            If a setting is out of range.
        ModelError
            If the data cannot be fitted, or every restart is degenerate.
        """
        self._check_settings()
        X = _check_X(X)
        bounds = _bounds(lengths, len(X))
        k, n, m = self.n_states, len(X), self.min_state_bars
        if n < k * m:
            raise ModelError(f"X has {n} bars; model.n_states = {k} states of at least "
                             f"jump.min_state_bars = {m} bars need {k * m}")
        if not np.ptp(X, axis=0).any():
            raise ModelError("X is constant (every bar has the same features): there are no "
                             "regimes to find")
        self.feature_names_ = list(feature_names) if feature_names is not None else []
        if self.feature_names_ and len(self.feature_names_) != X.shape[1]:
            raise ModelError(f"feature_names has {len(self.feature_names_)} names but X has "
                             f"{X.shape[1]} columns")
        if means_init is not None:
            means_init = np.ascontiguousarray(means_init, dtype=np.float64)
            if means_init.shape != (k, X.shape[1]) or not np.isfinite(means_init).all():
                raise ModelError(f"means_init has shape {means_init.shape}; expected finite "
                                 f"centres of shape ({k}, {X.shape[1]})")
        self._build_space()
        # One BLAS thread, as RegimeHMM: the result does not depend on the core count.
        with threadpool_limits(1):
            return self._fit(X, bounds, means_init)

    def _initial_centres(self, X: np.ndarray) -> list[np.ndarray]:
        """jumpmodels' starts: k-means++ drawn ``n_init`` times from one random state."""
        rng = check_random_state(self.random_state)
        return [kmeans_plusplus(X, self.n_states, random_state=rng)[0]
                for _ in range(self.n_init)]

    def _descend(self, X: np.ndarray, bounds: np.ndarray, centres: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, float, int, bool]:
        """Coordinate descent from ``centres`` with jumpmodels' stopping rule.

        Returns the centres that gave the final path, the path, its objective,
        the iterations and whether the rule (not ``max_iter``) stopped it.
        """
        labels, value = self._path(X, bounds, centres)
        previous: np.ndarray | None = None
        previous_value = math.inf
        n_iter = 0
        while True:
            settled = ((previous is not None and infer.same_partition(labels, previous))
                       or not previous_value - value > self.tol)
            if settled or n_iter >= self.max_iter:
                return centres, labels, value, n_iter, settled
            n_iter += 1
            previous, previous_value = labels, value
            centres = infer.weighted_centres(X, labels, self._weights)
            labels, value = self._path(X, bounds, centres)

    def _fit(self, X: np.ndarray, bounds: np.ndarray,
             means_init: np.ndarray | None = None) -> RegimeJump:
        starts = ([] if means_init is None else [means_init]) + self._initial_centres(X)
        restarts = [Restart(index=i) for i in range(len(starts))]
        results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for restart, start in zip(restarts, starts):
            centres, labels, value, n_iter, settled = self._descend(X, bounds, start)
            counts = np.bincount(labels, minlength=len(self._weights)).astype(np.float64)
            smallest = float((counts @ self._weights).min())
            restart.objective, restart.n_iter, restart.converged = float(value), n_iter, settled
            restart.smallest_state = smallest
            if smallest < self.min_state_bars:
                restart.failed = (f"degenerate: a state has {smallest:.1f} bars "
                                  f"(jump.min_state_bars = {self.min_state_bars})")
                log.info("jump K=%d restart %d: %s", self.n_states, restart.index,
                         restart.failed)
                continue
            log.debug("jump K=%d restart %d: objective %.6f after %d iterations",
                      self.n_states, restart.index, value, n_iter)
            results[restart.index] = (centres, labels)
        if not results:
            largest = max(r.smallest_state for r in restarts if r.smallest_state is not None)
            raise ModelError(
                f"every restart left a state with fewer than jump.min_state_bars = "
                f"{self.min_state_bars} bars (at best {largest:.1f}); lower jump.jump_penalty "
                f"(now {self.jump_penalty:g}) or model.n_states (now {self.n_states})")
        if len(results) < len(restarts):
            log.warning("jump K=%d: %d of %d restarts were degenerate", self.n_states,
                        len(restarts) - len(results), len(restarts))
        # Lowest objective wins; the first of equals, as in jumpmodels.
        ranked = sorted(results, key=lambda i: (restarts[i].objective, i))
        best = ranked[0]
        self.restarts_ = restarts
        self.best_restart_ = best
        self.n_iter_ = restarts[best].n_iter
        self.converged_ = restarts[best].converged
        self.n_samples_ = len(X)
        self.restart_ari_ = (
            float(adjusted_rand_score(self._hard(results[ranked[1]][1]),
                                      self._hard(results[best][1])))
            if len(ranked) > 1 else float("nan"))
        centres, labels = results[best]
        self._order_states(X, bounds, centres, labels)
        return self

    def _hard(self, labels: np.ndarray) -> np.ndarray:
        """A path's regime labels: the state, or the largest weight of its vector."""
        return self._weights[labels].argmax(axis=1) if self.cont else labels

    def _order_states(self, X: np.ndarray, bounds: np.ndarray, centres: np.ndarray,
                      labels: np.ndarray) -> None:
        """Renumber states by ascending volatility and summarise the final path.

        The path is solved again with the renumbered centres, so every fitted
        attribute describes exactly the path :meth:`predict` gives on the training
        data, and ``objective_`` equals :meth:`objective` there.
        """
        covars = _state_covars(X, self._weights[labels])
        order, rule = volatility_order(centres, covars, self.feature_names_)
        self.means_ = np.ascontiguousarray(centres[order])
        self.state_order_ = {"rule": "ascending volatility", **rule}
        labels, value = self._path(X, bounds, self.means_)
        self.objective_ = float(value)
        self._summarise(X, bounds, labels)

    def _summarise(self, X: np.ndarray, bounds: np.ndarray, labels: np.ndarray) -> None:
        weights = self._weights[labels]
        self.covars_ = _state_covars(X, weights)
        hard = self._hard(labels)
        inside = np.ones(len(hard), dtype=bool)
        inside[bounds[:-1]] = False  # a sequence's first bar follows no bar of its own
        k = self.n_states
        counts = np.zeros((k, k))
        np.add.at(counts, (hard[:-1][inside[1:]], hard[1:][inside[1:]]), 1.0)
        rows = counts.sum(axis=1, keepdims=True)
        self.transmat_ = np.where(rows > 0, counts / np.where(rows > 0, rows, 1.0), np.eye(k))
        starts = weights[bounds[:-1]].mean(axis=0)
        if starts.min() > 0:
            self.startprob_, self.startprob_source_ = starts, "sequence_starts"
        else:
            self.startprob_, self.startprob_source_ = weights.mean(axis=0), "occupancy"

    def permute(self, order: np.ndarray) -> None:
        """Renumber the states: new state ``i`` is old state ``order[i]``."""
        order = np.asarray(order, dtype=np.int64)
        self.means_ = np.ascontiguousarray(self.means_[order])
        self.covars_ = self.covars_[order]
        self.transmat_ = self.transmat_[np.ix_(order, order)]
        self.startprob_ = self.startprob_[order]

    # -- the shared regime-model interface -------------------------------------------------

    def _check_input(self, X: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "means_"):
            raise ModelError("this RegimeJump is not fitted; call fit() or load() first")
        X = _check_X(X)
        if X.shape[1] != self.means_.shape[1]:
            raise ModelError(f"X has {X.shape[1]} features; the model was fitted on "
                             f"{self.means_.shape[1]}")
        return X, _bounds(lengths, len(X))

    def predict(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The optimal state path given all of ``X``, shape ``(n_samples,)``.

        For the continuous model, each bar's state of largest probability (the
        first of equals).
        """
        X, bounds = self._check_input(X, lengths)
        return self._hard(self._path(X, bounds, self.means_)[0])

    def predict_proba(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The optimal path as probabilities, shape ``(n_samples, K)``: one-hot rows
        (discrete) or the path's probability vectors (continuous)."""
        X, bounds = self._check_input(X, lengths)
        return self._weights[self._path(X, bounds, self.means_)[0]]

    def filter_proba(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Online probabilities, shape ``(n_samples, K)``.

        Row t is the state (one-hot) or vector with the lowest forward value at t,
        computed from the bars of its sequence up to t only: appending bars
        never changes an earlier row.
        """
        X, bounds = self._check_input(X, lengths)
        return self._weights[self._online(X, bounds)]

    def score(self, X: np.ndarray, lengths: np.ndarray) -> float:
        """Always raises: a jump model has no likelihood (``has_likelihood`` is False)."""
        raise ModelError("RegimeJump.score: jump models have no likelihood; use objective() "
                         "(losses plus penalties, lower is better) and check has_likelihood")

    def loglik_per_bar(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Always raises, as :meth:`score` does: no likelihood, so none per bar."""
        raise ModelError("RegimeJump.loglik_per_bar: jump models have no likelihood; use "
                         "objective() and check has_likelihood")

    def objective(self, X: np.ndarray, lengths: np.ndarray) -> float:
        """The objective of the optimal path on ``X``: losses plus penalties, summed
        over sequences (lower is better)."""
        X, bounds = self._check_input(X, lengths)
        return float(self._path(X, bounds, self.means_)[1])

    # -- persistence -----------------------------------------------------------------------

    def save(self, folder: str | Path, *, manifest: dict[str, Any]) -> None:
        """Write ``params.npz`` (centres, transitions, start, covariances) and
        ``manifest.json`` (``manifest`` plus the model's own description)."""
        folder = Path(folder)
        write_npz({"centres": self.means_, "transmat": self.transmat_,
                   "startprob": self.startprob_, "covars": self.covars_},
                  folder / "params.npz")
        write_json({
            **manifest,
            "model": "jump",
            "n_states": self.n_states,
            "features": self.feature_names_,
            "state_order": self.state_order_,
            "settings": self.get_params(),
            "fit": {"objective": self.objective_, "n_iter": self.n_iter_,
                    "converged": self.converged_, "n_samples": self.n_samples_,
                    "startprob_source": self.startprob_source_,
                    "restart_ari": self.restart_ari_},
        }, folder / "manifest.json")

    @classmethod
    def load(cls, folder: str | Path) -> RegimeJump:
        """Rebuild a fitted model from :meth:`save`'s files; nothing is unpickled."""
        folder = Path(folder)
        manifest_path, params_path = folder / "manifest.json", folder / "params.npz"
        try:
            manifest = read_json(manifest_path)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{manifest_path}: cannot read the jump model ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("model") != "jump":
            found = manifest.get("model") if isinstance(manifest, dict) else None
            raise ModelError(f"{manifest_path}: describes {found!r}, not a jump model")
        try:
            arrays = read_npz(params_path)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{params_path}: cannot read the jump model ({exc})") from None
        try:
            self = cls(**{k: manifest["settings"][k] for k in _PARAM_NAMES})
            self._check_settings()
            fit = manifest["fit"]
            self.feature_names_ = list(manifest["features"])
            self.state_order_ = manifest["state_order"]
            self.objective_ = fit["objective"]
            self.n_iter_ = fit["n_iter"]
            self.converged_ = fit["converged"]
            self.n_samples_ = fit["n_samples"]
            self.startprob_source_ = fit["startprob_source"]
            self.restart_ari_ = (float("nan") if fit["restart_ari"] is None
                                 else fit["restart_ari"])
        except (KeyError, TypeError, ValueError, ParamsError) as exc:
            raise ModelError(f"{manifest_path}: not a jump-model manifest this version can "
                             f"read ({type(exc).__name__}: {exc})") from None
        k = self.n_states
        try:
            self.means_ = np.ascontiguousarray(arrays["centres"], dtype=np.float64)
            self.transmat_ = arrays["transmat"]
            self.startprob_ = arrays["startprob"]
            self.covars_ = arrays["covars"]
        except KeyError as exc:
            raise ModelError(f"{params_path}: no array {exc}") from None
        d = self.means_.shape[-1]
        shapes = {"centres": (self.means_, (k, d)), "transmat": (self.transmat_, (k, k)),
                  "startprob": (self.startprob_, (k,)), "covars": (self.covars_, (k, d, d))}
        for name, (array, shape) in shapes.items():
            if array.shape != shape or not np.isfinite(array).all():
                raise ModelError(f"{params_path}: {name} has shape {array.shape}, expected "
                                 f"{shape} of finite numbers (model.n_states = {k})")
        if self.feature_names_ and len(self.feature_names_) != d:
            raise ModelError(f"{params_path}: centres have {d} features but manifest.json "
                             f"names {len(self.feature_names_)}")
        self._build_space()
        return self
