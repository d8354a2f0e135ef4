"""The walk-forward harness: refit on the past only, label the next block causally.

At each refit point ``a`` (every ``refit`` bars after the first ``min_train``)
the scaler and the model are fitted on the rows before ``a`` (all of them, or
the last ``min_train`` with a rolling window), and the rows ``a .. a + refit - 1``
get the model's **filtered** labels (``filter_proba``: row t uses bars up to t
only). The features themselves are computed once over the whole history: each
is a causal function of the bars up to its own (see the features contract in
the README), so a row's value does not depend on later bars.

Everything a position rule may learn is measured on the fitting window only:
each state's mean and volatility of the next bar's return, grouped by the
in-sample filtered label (as the labels are used out of sample), and the
state's name (:mod:`regimelab.naming`, from the in-sample hindsight path).
A regime keeps its identity across refits because every family numbers its
states by volatility; the harness also matches each fit's centres to the
previous fit's (Hungarian) and reports how often that matching and the names
disagree with the numbering.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from regimelab.exceptions import ModelError, ParamsError
from regimelab.naming import name_states
from regimelab.params import BacktestParams, HMMParams, JumpParams, ScaleParams, parse_timeframe
from regimelab.scaling import Scaler
from regimelab.sequences import segment_lengths

log = logging.getLogger(__name__)

#: ``auto`` in ``backtest.min_train`` and ``backtest.refit``.
DEFAULT_MIN_TRAIN = pd.Timedelta(days=730)
DEFAULT_REFIT = pd.Timedelta(days=30)
DEFAULT_RESELECT = pd.Timedelta(days=365)


def resolve_bars(value: int | str, *, base_timeframe: pd.Timedelta, default: pd.Timedelta,
                 key: str) -> int:
    """Bars for ``value``: a count as it is, a duration (``730d``) or ``auto`` (``default``)
    over the bar interval, rounded, at least 1."""
    if isinstance(value, int):
        return value
    span = default if value == "auto" else parse_timeframe(value, key=f"backtest.{key}")
    return max(1, round(span / base_timeframe))


def refit_points(n_rows: int, *, min_train: int, refit: int) -> list[int]:
    """Rows at which a model is refitted: ``min_train``, then every ``refit`` rows.

    Raises
    ------
    ParamsError
        If there are not more than ``min_train`` rows.
    """
    if n_rows <= min_train:
        raise ParamsError(f"backtest.min_train: {min_train} bars, but the data has only "
                          f"{n_rows}; lower it to leave bars to trade")
    return list(range(min_train, n_rows, refit))


def settings_for(params: BacktestParams, resolved: dict[str, Any] | None, *,
                 penalties: tuple[float, ...] = (), min_dwell: int = 0) -> dict[str, Any]:
    """The state count, covariance type and jump penalty of every refit.

    ``backtest.settings: fixed`` takes them from the section; ``past`` takes the
    state count and covariance type from the section and re-chooses the jump
    penalty on the past only, from ``penalties`` (``select.penalties``) to reach
    ``min_dwell`` (see :func:`past_penalty`); ``pipeline`` takes all three from
    ``resolved`` (select-states' choice, made on data up to the end of validation:
    look-ahead for any bar before then, and labelled so).
    """
    if params.settings in ("fixed", "past"):
        past = params.settings == "past"
        if past and not penalties:
            raise ParamsError("backtest.settings: 'past' re-chooses the jump penalty from "
                              "select.penalties, which is empty here; list some or use 'fixed'")
        return {"n_states": params.n_states, "covariance_type": params.covariance_type,
                "jump_penalty": "past" if past else float(params.jump_penalty),
                "look_ahead_of_selection": False,
                **({"penalties": [float(p) for p in penalties], "min_dwell": int(min_dwell)}
                   if past else {})}
    if resolved is None or resolved.get("jump_penalty") is None:
        raise ParamsError("backtest.settings: 'pipeline' needs select-states' metrics with a "
                          "jump-model scan; pass them or use 'fixed'")
    return {"n_states": int(resolved["n_states"]),
            "covariance_type": str(resolved["covariance_type"]),
            "jump_penalty": float(resolved["jump_penalty"]), "look_ahead_of_selection": True}


def make_model(family: str, *, settings: dict[str, Any], hmm: HMMParams, jump: JumpParams,
               seed: int) -> Any:
    """An unfitted model of ``family`` (``jump`` or ``gaussian_hmm``) with ``settings``."""
    if family == "jump":
        from regimelab.families.jump.fit import make_jump
        return make_jump(settings["n_states"], jump=jump, jump_penalty=settings["jump_penalty"],
                         seed=seed)
    if family == "gaussian_hmm":
        from regimelab.families.hmm.fit import make_hmm
        return make_hmm(settings["n_states"], settings["covariance_type"], hmm=hmm, seed=seed)
    raise ParamsError(f"backtest.families: {family!r} cannot be walked forward; expected "
                      "jump or gaussian_hmm")


#: Families whose ``fit`` starts from a previous fit's centres (``means_init``).
WARM_STARTS = ("jump",)
#: ``settings: past``: the share of the fitting window that calibrates the penalty (as
#: validation's share of train + validation in the default split).
CALIBRATION_SHARE = 0.15


def past_penalty(X: np.ndarray, segment: np.ndarray, *, n_states: int, jump: JumpParams,
                 penalties: list[float], min_dwell: int, seed: int,
                 columns: list[str]) -> tuple[float, dict[str, float | None]]:
    """select-states' persistence rule on a fitting window alone.

    The jump model is fitted with each penalty on the first 85% of the window's
    rows (``X``, scaled; ``segment`` their gap-free runs), and labels the last
    15% with its filtered labels; the penalty is the smallest whose median run
    there reaches ``min_dwell`` bars (the largest that fits when none does).
    Every bar it looks at lies before the refit point.

    Returns the penalty and the median run of every penalty (None: no fit).
    """
    from regimelab.families.jump.fit import make_jump
    from regimelab.scan import median_dwell

    cut = int(round(len(X) * (1 - CALIBRATION_SHARE)))
    fit_lengths, val_lengths = segment_lengths(segment[:cut]), segment_lengths(segment[cut:])
    dwell: dict[str, float | None] = {}
    for penalty in penalties:
        try:
            model = make_jump(n_states, jump=jump, jump_penalty=penalty, seed=seed).fit(
                X[:cut], fit_lengths, feature_names=columns)
        except ModelError:
            dwell[f"{penalty:g}"] = None
            continue
        dwell[f"{penalty:g}"] = median_dwell(
            model.filter_proba(X[cut:], val_lengths).argmax(axis=1), val_lengths)
        if dwell[f"{penalty:g}"] >= min_dwell:
            return float(penalty), dwell
    fitted = [p for p in penalties if dwell[f"{p:g}"] is not None]
    if not fitted:
        raise ModelError(f"backtest.settings: past, but no penalty of select.penalties "
                         f"{penalties} fits {n_states} states on {cut} bars")
    return float(fitted[-1]), dwell


@dataclass
class WalkForward:
    """One family walked forward over one symbol.

    Row arrays have one entry per row of the symbol's feature table; rows
    before the first refit point carry -1.

    ``labels``: the filtered state of each row, from the model fitted before its
    block; ``hindsight``: the smoothed state (argmax of ``predict_proba`` over
    the block seen whole: look-ahead, for comparison only); ``refit_of``: the
    refit whose model labelled the row; ``fits``: per refit, ``start``/``end``
    (rows labelled), ``train_rows``, ``seconds``, ``names`` (one per state),
    ``mean``/``vol``/``count`` (per state, the next bar's simple return grouped
    by the in-sample filtered label), ``matched_order``, ``failed`` (why the fit
    failed, when it did: the previous refit's model and scaler then label the
    block, and its rules are measured on the current window).
    """

    labels: np.ndarray
    hindsight: np.ndarray
    refit_of: np.ndarray
    fits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_states(self) -> int:
        return len(self.fits[0]["names"])

    def penalties(self) -> dict[str, float]:
        """The jump penalty of each refit at which it changed, keyed by its first row."""
        out: dict[str, float] = {}
        last = None
        for fit in self.fits:
            if fit.get("jump_penalty") is not None and fit["jump_penalty"] != last:
                out[str(fit["start"])] = float(fit["jump_penalty"])
                last = fit["jump_penalty"]
        return out

    def identity_report(self) -> dict[str, float]:
        """How often a state's name, and the centre matching, change between refits."""
        pairs = list(zip(self.fits[:-1], self.fits[1:]))
        if not pairs:
            return {"name_change_rate": 0.0, "order_change_rate": 0.0, "refits": len(self.fits),
                    "failed": self.failed}
        changed = [a != b for p, q in pairs for a, b in zip(p["names"], q["names"])]
        reordered = [q["matched_order"] != list(range(len(q["names"]))) for _, q in pairs]
        return {"name_change_rate": float(np.mean(changed)),
                "order_change_rate": float(np.mean(reordered)),
                "refits": len(self.fits), "failed": self.failed}

    @property
    def failed(self) -> int:
        """Refits whose fit failed, so the previous refit's model labelled their block."""
        return sum(fit.get("failed") is not None for fit in self.fits)


def next_returns(returns: np.ndarray) -> np.ndarray:
    """``returns`` moved one row earlier: row t holds the return from close t to t+1."""
    return np.r_[returns[1:], np.nan]


def _state_moments(labels: np.ndarray, nxt: np.ndarray, k: int
                   ) -> tuple[list[float], list[float], list[int]]:
    ok = np.isfinite(nxt)
    means, vols, counts = [], [], []
    for s in range(k):
        r = nxt[ok & (labels == s)]
        counts.append(int(len(r)))
        means.append(float(r.mean()) if len(r) else float("nan"))
        vols.append(float(r.std(ddof=1)) if len(r) > 1 else float("nan"))
    return means, vols, counts


def _match(previous: np.ndarray | None, current: np.ndarray) -> list[int]:
    """``order[j]``: the state of the current fit nearest previous state j (Hungarian on
    the distance between centres, in feature units)."""
    if previous is None:
        return list(range(len(current)))
    cost = np.linalg.norm(previous[:, None, :] - current[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    order = np.empty(len(rows), dtype=np.int64)
    order[rows] = cols
    return order.tolist()


def walk_forward(frame: pd.DataFrame, columns: list[str], returns: np.ndarray, *,
                 family: str, settings: dict[str, Any], points: list[int], rolling: int | None,
                 scale: ScaleParams, hmm: HMMParams, jump: JumpParams, seed: int,
                 reselect: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> WalkForward:
    """Refit ``family`` at each of ``points`` and label the rows up to the next one.

    Parameters
    ----------
    frame : pandas.DataFrame
        One symbol's feature table (unscaled), sorted by time, with ``segment``.
    columns : list of str
        The feature columns, shape ``(n_rows, n_features)`` once selected.
    returns : ndarray of shape (n_rows,)
        Each row's simple return from the previous row's close (NaN on the first).
    family, settings : see :func:`make_model` and :func:`settings_for`
    points : the refit rows (:func:`refit_points`)
    rolling : int, optional
        Fit on the last ``rolling`` rows only (``None``: every row before the point).
    reselect : int, optional
        With ``settings['jump_penalty'] == 'past'``: rows between re-choices of the
        penalty (:func:`past_penalty`, at the first refit and then at the first
        refit at least ``reselect`` rows after the last choice).
    scale, hmm, jump, seed : the params the scaler and the model are built from
    """
    n = len(frame)
    X_all = frame[columns].to_numpy(dtype=np.float64)
    segment = frame["segment"].to_numpy()
    nxt = next_returns(returns)
    log_returns = np.log1p(returns)
    log_returns[np.r_[True, segment[1:] != segment[:-1]]] = np.nan  # naming: none across gaps
    out = WalkForward(labels=np.full(n, -1, dtype=np.int64),
                      hindsight=np.full(n, -1, dtype=np.int64),
                      refit_of=np.full(n, -1, dtype=np.int64))
    previous_raw: np.ndarray | None = None
    previous: tuple[Any, Scaler] | None = None
    chosen: tuple[int, float] | None = None  # settings 'past': (row chosen at, penalty)
    ends = points[1:] + [n]
    for i, (a, b) in enumerate(zip(points, ends)):
        started = time.perf_counter()
        lo = 0 if rolling is None else max(0, a - rolling)
        train = frame.iloc[lo:a]
        scaler = Scaler(method=scale.method, clip=scale.clip).fit(train, columns)
        X = scaler.transform_array(X_all[lo:b])
        lengths_train = segment_lengths(segment[lo:a])
        lengths_all = segment_lengths(segment[lo:b])
        fit_settings, calibration = settings, None
        if family == "jump" and settings["jump_penalty"] == "past":
            if chosen is None or a - chosen[0] >= (reselect or 0):
                penalty, calibration = past_penalty(
                    X[:a - lo], segment[lo:a], n_states=settings["n_states"], jump=jump,
                    penalties=settings["penalties"], min_dwell=settings["min_dwell"],
                    seed=seed, columns=columns)
                chosen = (a, penalty)
            fit_settings = {**settings, "jump_penalty": chosen[1]}
        model = make_model(family, settings=fit_settings, hmm=hmm, jump=jump, seed=seed)
        fit_kw: dict[str, Any] = {"feature_names": columns}
        if family in WARM_STARTS and previous_raw is not None:
            # The previous centres, in this fit's scaled units.
            fit_kw["means_init"] = (previous_raw - scaler.center_) / scaler.scale_
        failed = None
        try:
            model.fit(X[:a - lo], lengths_train, **fit_kw)
        except ModelError as exc:
            if previous is None:
                raise ModelError(f"backtest: the first refit ({family}, {a - lo} bars) cannot "
                                 f"be fitted: {exc}") from None
            # A trader keeps the model that worked; it still knows nothing after row a.
            failed = str(exc)
            log.warning("%s refit %d of %d failed (%s); keeping the previous model", family,
                        i + 1, len(points), exc)
            model, scaler = previous
            X = scaler.transform_array(X_all[lo:b])
        previous = (model, scaler)
        raw_means = model.means_ * scaler.scale_ + scaler.center_
        # Filtered over the fitting window and the block: in-sample labels for the rules,
        # out-of-sample labels for the block; row t uses rows up to t either way.
        filtered = model.filter_proba(X, lengths_all).argmax(axis=1)
        smoothed = model.predict_proba(X, lengths_all).argmax(axis=1)
        k = model.n_states
        inside = nxt[lo:a].copy()
        inside[-1] = np.nan  # the last training row's next return lies in the block
        mean, vol, count = _state_moments(filtered[:a - lo], inside, k)
        naming = name_states(log_returns[lo:a], model.predict(X[:a - lo], lengths_train),
                             segment[lo:a], n_states=k, seed=seed)
        out.labels[a:b] = filtered[a - lo:]
        out.hindsight[a:b] = smoothed[a - lo:]
        out.refit_of[a:b] = i
        out.fits.append({
            "start": a, "end": b, "train_rows": a - lo,
            "seconds": time.perf_counter() - started,
            "names": list(naming["names"]), "mean": mean, "vol": vol, "count": count,
            "matched_order": _match(previous_raw, raw_means),
            "jump_penalty": fit_settings.get("jump_penalty") if family == "jump" else None,
            "calibration": calibration,
            "failed": failed,
        })
        previous_raw = raw_means
        if progress is not None:
            progress(i + 1, len(points))
    return out
