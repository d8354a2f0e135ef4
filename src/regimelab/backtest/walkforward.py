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

import dataclasses
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
from regimelab.params import (
    BacktestParams,
    DSSMParams,
    HMMParams,
    JumpParams,
    ScaleParams,
    SelectParams,
    parse_timeframe,
)
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
                 select: SelectParams | None = None, min_dwell: int = 0) -> dict[str, Any]:
    """The state count, covariance type and jump penalty of every refit.

    ``backtest.settings: fixed`` takes them from the section; ``past`` takes the
    covariance type from the section and re-chooses the state count and the jump
    penalty on the past only, with select-states' own rule (``select``: the
    stability scan over ``select.grid.n_states`` up to ``backtest.max_states``,
    ``min_stability``, ``min_separation``, ``resamples``; the penalty from
    ``select.penalties`` to reach ``min_dwell``; see :func:`past_choice`);
    ``pipeline`` takes all three from ``resolved`` (select-states' choice, made on
    data up to the end of validation: look-ahead for any bar before then, and
    labelled so).
    """
    epochs = {"dssm_max_epochs": int(params.dssm_max_epochs)} if "dssm" in params.families else {}
    if params.settings == "fixed":
        return {"n_states": params.n_states, "covariance_type": params.covariance_type,
                "jump_penalty": float(params.jump_penalty), "look_ahead_of_selection": False,
                **epochs}
    if params.settings == "past":
        if select is None or not select.penalties:
            raise ParamsError("backtest.settings: 'past' re-chooses the jump penalty from "
                              "select.penalties, which is empty here; list some or use 'fixed'")
        grid = sorted(k for k in select.grid.n_states if k <= params.max_states)
        if not grid:
            raise ParamsError(f"backtest.max_states: {params.max_states} is below every "
                              f"select.grid.n_states {list(select.grid.n_states)}; raise it")
        return {"n_states": "past", "covariance_type": params.covariance_type,
                "jump_penalty": "past", "look_ahead_of_selection": False,
                "state_grid": grid, "min_stability": float(select.min_stability),
                "min_separation": float(select.min_separation),
                "resamples": int(select.resamples), "scan_penalty": float(select.scan_penalty),
                "penalties": [float(p) for p in select.penalties], "min_dwell": int(min_dwell),
                **epochs}
    if resolved is None or resolved.get("jump_penalty") is None:
        raise ParamsError("backtest.settings: 'pipeline' needs select-states' metrics with a "
                          "jump-model scan; pass them or use 'fixed'")
    return {"n_states": int(resolved["n_states"]),
            "covariance_type": str(resolved["covariance_type"]),
            "jump_penalty": float(resolved["jump_penalty"]), "look_ahead_of_selection": True,
            **epochs}


def make_model(family: str, *, settings: dict[str, Any], hmm: HMMParams, jump: JumpParams,
               seed: int, dssm: DSSMParams | None = None) -> Any:
    """An unfitted model of ``family`` (``jump``, ``gaussian_hmm`` or ``dssm``) with
    ``settings``; the DSSM trains ``settings['dssm_max_epochs']`` epochs at most."""
    if family == "dssm":
        from regimelab.families.dssm.fit import make_dssm
        return make_dssm(settings["n_states"], seed=seed, dssm=dataclasses.replace(
            dssm or DSSMParams(), max_epochs=settings["dssm_max_epochs"]))
    if family == "jump":
        from regimelab.families.jump.fit import make_jump
        return make_jump(settings["n_states"], jump=jump, jump_penalty=settings["jump_penalty"],
                         seed=seed)
    if family == "gaussian_hmm":
        from regimelab.families.hmm.fit import make_hmm
        return make_hmm(settings["n_states"], settings["covariance_type"], hmm=hmm, seed=seed)
    raise ParamsError(f"backtest.families: {family!r} cannot be walked forward; expected "
                      "jump, gaussian_hmm or dssm")


#: Families whose refits start from the previous fit: the jump model from its centres
#: (``means_init``, beside its cold starts), the HMM from all its parameters (``init``,
#: in place of its cold restarts: see :func:`hmm_warm_start`), the DSSM from its regime
#: parameters and its context network's weights.
WARM_STARTS = ("jump", "gaussian_hmm", "dssm")
#: ``settings: past``: the share of the fitting window that calibrates the penalty (as
#: validation's share of train + validation in the default split).
CALIBRATION_SHARE = 0.15


def hmm_warm_start(previous: Any, previous_scaler: Scaler, scaler: Scaler
                   ) -> dict[str, np.ndarray]:
    """A previous HMM's parameters in a new scaler's units (``RegimeHMM.fit(init=)``).

    Means and covariances go back to feature units through the previous scaler
    and forward through the new one (an affine change per column); the start
    and transition probabilities carry over as they are.
    """
    old, new = previous_scaler.scale_, scaler.scale_
    raw_means = previous.means_ * old + previous_scaler.center_
    ratio = old / new
    return {"startprob": np.asarray(previous.startprob_, dtype=np.float64),
            "transmat": np.asarray(previous.transmat_, dtype=np.float64),
            "means": (raw_means - scaler.center_) / new,
            "covars": previous.covars_ * ratio[None, :, None] * ratio[None, None, :]}


@dataclass(frozen=True)
class RegimeParameters:
    """A chain and Gaussian emissions, as ``RegimeDSSM.fit(init=)`` reads them."""

    startprob_: np.ndarray
    transmat_: np.ndarray
    means_: np.ndarray
    covars_: np.ndarray


def split_window(X: np.ndarray, segment: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                              np.ndarray, np.ndarray]:
    """A fitting window's first 85% and last 15% (``CALIBRATION_SHARE``), each with the
    lengths of its gap-free runs: as the pipeline's train and validation splits."""
    cut = int(round(len(X) * (1 - CALIBRATION_SHARE)))
    return X[:cut], segment_lengths(segment[:cut]), X[cut:], segment_lengths(segment[cut:])


def fit_dssm(model: Any, X: np.ndarray, segment: np.ndarray, *, columns: list[str],
             previous: tuple[Any, Scaler] | None, scaler: Scaler) -> Any:
    """Train a DSSM on a fitting window, early-stopped on the window's last 15%.

    Warm: the regime parameters start from the previous fit's (in this scaler's
    units) and the context network from its weights; cold (the first refit, or
    another state count): from a full-covariance HMM fitted on the window's fit part.
    """
    X_fit, lengths_fit, X_val, lengths_val = split_window(X, segment)
    init, weights = None, None
    if previous is not None and previous[0].n_states == model.n_states \
            and hasattr(previous[0], "net_"):
        init = RegimeParameters(**{f"{k}_": v for k, v in
                                   hmm_warm_start(previous[0], previous[1], scaler).items()})
        weights = previous[0].net_.state_dict()
    return model.fit(X_fit, lengths_fit, X_val=X_val, lengths_val=lengths_val, init=init,
                     feature_names=columns, warm_weights=weights)


def fit_warm(family: str, *, settings: dict[str, Any], hmm: HMMParams, jump: JumpParams,
             seed: int, X: np.ndarray, lengths: np.ndarray, columns: list[str],
             previous: tuple[Any, Scaler] | None, scaler: Scaler,
             dssm: DSSMParams | None = None, segment: np.ndarray | None = None) -> Any:
    """A fitted model of ``family``, warm-started from ``previous`` when it can be.

    The jump model adds the previous centres as one more start beside its cold
    ones. The HMM runs EM from the previous parameters alone (``n_init`` 1: the
    window grew by one block, so the previous optimum is the natural start and
    the cold restarts are what a refit costs); if that fit fails, the refit falls
    back to the usual cold restarts. A refit with another state count (``settings:
    past``) starts cold.
    """
    if family == "dssm":
        if segment is None:
            raise ValueError("fit_warm: the dssm family needs each row's segment id")
        return fit_dssm(make_model(family, settings=settings, hmm=hmm, jump=jump, seed=seed,
                                   dssm=dssm), X, segment, columns=columns, previous=previous,
                        scaler=scaler)
    fit_kw: dict[str, Any] = {"feature_names": columns}
    if (family not in WARM_STARTS or previous is None
            or previous[0].n_states != settings["n_states"]
            or getattr(previous[0], "covariance_type", settings["covariance_type"])
            != settings["covariance_type"]):
        return make_model(family, settings=settings, hmm=hmm, jump=jump, seed=seed).fit(
            X, lengths, **fit_kw)
    old_model, old_scaler = previous
    if family == "jump":
        raw = old_model.means_ * old_scaler.scale_ + old_scaler.center_
        return make_model(family, settings=settings, hmm=hmm, jump=jump, seed=seed).fit(
            X, lengths, means_init=(raw - scaler.center_) / scaler.scale_, **fit_kw)
    init = hmm_warm_start(old_model, old_scaler, scaler)
    warm = make_model(family, settings=settings, hmm=dataclasses.replace(hmm, n_init=1),
                      jump=jump, seed=seed)
    try:
        return warm.fit(X, lengths, init=init, **fit_kw)
    except ModelError as exc:
        log.info("%s warm refit failed (%s); refitting from cold starts", family, exc)
        return make_model(family, settings=settings, hmm=hmm, jump=jump, seed=seed).fit(
            X, lengths, **fit_kw)


def past_choice(X: np.ndarray, segment: np.ndarray, *, settings: dict[str, Any],
                jump: JumpParams, seed: int, columns: list[str]) -> dict[str, Any]:
    """select-states' choice of the state count and the jump penalty, on a fitting
    window alone.

    The window's rows (``X``, scaled; ``segment`` their gap-free runs) are split as
    the pipeline splits train and validation: the first 85% fit, the last 15%
    validate. Every count of ``settings['state_grid']`` is scanned as select-states
    scans it (:func:`regimelab.scan.scan_state_count`: block-bootstrap refits'
    agreement on the validation rows, and the centres' separation), the count is
    the largest reproducible and distinct one (:func:`regimelab.scan.choose_n_states`),
    and the penalty is calibrated for that count alone (:func:`past_penalty`). Every
    bar it looks at lies before the refit point.

    Returns ``n_states``, ``passed`` (whether any count passed), ``jump_penalty``,
    ``scan`` (stability and separation per count) and ``dwell`` (median run per penalty).
    """
    from regimelab.scan import choose_n_states, scan_state_count

    cut = int(round(len(X) * (1 - CALIBRATION_SHARE)))
    fit_lengths, val_lengths = segment_lengths(segment[:cut]), segment_lengths(segment[cut:])
    # Penalties are calibrated below for the chosen count only: the scan gets just its own.
    scan_select = SelectParams(min_stability=settings["min_stability"],
                               min_separation=settings["min_separation"],
                               resamples=settings["resamples"],
                               scan_penalty=settings["scan_penalty"],
                               penalties=(settings["scan_penalty"],))
    rows = []
    for k in settings["state_grid"]:
        try:
            row = scan_state_count(X[:cut], fit_lengths, X[cut:], val_lengths, n_states=k,
                                   select=scan_select, jump=jump, min_dwell=0, seed=seed,
                                   feature_names=columns)
        except ModelError:
            continue  # this count cannot be fitted on this window at all
        rows.append({"n_states": k, "stability": row["stability"],
                     "separation": row["separation"]})
    if not rows:
        raise ModelError(f"backtest.settings: past, but no state count of "
                         f"{settings['state_grid']} fits {cut} bars")
    n_states, passed = choose_n_states(rows, min_stability=settings["min_stability"],
                                       min_separation=settings["min_separation"])
    penalty, dwell = past_penalty(X, segment, n_states=n_states, jump=jump,
                                  penalties=settings["penalties"],
                                  min_dwell=settings["min_dwell"], seed=seed, columns=columns)
    return {"n_states": n_states, "passed": passed, "jump_penalty": penalty,
            "scan": {str(r["n_states"]): {"stability": r["stability"],
                                          "separation": r["separation"]} for r in rows},
            "dwell": dwell}


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
        run = median_dwell(model.filter_proba(X[cut:], val_lengths).argmax(axis=1), val_lengths)
        dwell[f"{penalty:g}"] = run
        if run >= min_dwell:
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
        """How often a state's name, the centre matching and the state count change
        between refits (names and matching compared where the count stays)."""
        pairs = list(zip(self.fits[:-1], self.fits[1:]))
        same = [(p, q) for p, q in pairs if len(p["names"]) == len(q["names"])]
        changed = [a != b for p, q in same for a, b in zip(p["names"], q["names"])]
        reordered = [q["matched_order"] != list(range(len(q["names"]))) for _, q in same]
        return {"name_change_rate": float(np.mean(changed)) if changed else 0.0,
                "order_change_rate": float(np.mean(reordered)) if reordered else 0.0,
                "state_count_changes": len(pairs) - len(same),
                "refits": len(self.fits), "failed": self.failed}

    def state_counts(self) -> dict[str, int]:
        """The state count of each refit at which it changed, keyed by its first row."""
        out: dict[str, int] = {}
        last = None
        for fit in self.fits:
            if fit["n_states"] != last:
                out[str(fit["start"])] = int(fit["n_states"])
                last = fit["n_states"]
        return out

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
    the distance between centres, in feature units); the identity when there is no
    previous fit or it had another state count."""
    if previous is None or previous.shape != current.shape:
        return list(range(len(current)))
    cost = np.linalg.norm(previous[:, None, :] - current[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    order = np.empty(len(rows), dtype=np.int64)
    order[rows] = cols
    return order.tolist()


def walk_forward(frame: pd.DataFrame, columns: list[str], returns: np.ndarray, *,
                 family: str, settings: dict[str, Any], points: list[int], rolling: int | None,
                 scale: ScaleParams, hmm: HMMParams, jump: JumpParams, seed: int,
                 dssm: DSSMParams | None = None, reselect: int | None = None,
                 choices: dict[int, dict[str, Any]] | None = None,
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
        With ``settings: past``: rows between re-choices of the state count and the
        penalty (:func:`past_choice`, at the first refit and then at the first
        refit at least ``reselect`` rows after the last choice).
    choices : dict, optional
        ``settings: past``: the choices made so far, by refit row, shared between
        the families walked over one symbol (the choice depends on the rows before
        the refit only, not on the family); filled in here.
    scale, hmm, jump, seed, dssm : the params the scaler and the model are built from
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
    choices = {} if choices is None else choices
    chosen: int | None = None  # settings 'past': the row of the choice in force
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
        if settings["n_states"] == "past":
            if chosen is None or a - chosen >= (reselect or 0):
                if a not in choices:
                    choices[a] = past_choice(X[:a - lo], segment[lo:a], settings=settings,
                                             jump=jump, seed=seed, columns=columns)
                chosen, calibration = a, choices[a]
            fit_settings = {**settings, "n_states": choices[chosen]["n_states"],
                            "jump_penalty": choices[chosen]["jump_penalty"]}
        failed = None
        try:
            model = fit_warm(family, settings=fit_settings, hmm=hmm, jump=jump, seed=seed,
                             X=X[:a - lo], lengths=lengths_train, columns=columns,
                             previous=previous, scaler=scaler, dssm=dssm,
                             segment=segment[lo:a])
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
            "n_states": k,
            "calibration": calibration,
            "failed": failed,
        })
        previous_raw = raw_means
        if progress is not None:
            progress(i + 1, len(points))
    return out
