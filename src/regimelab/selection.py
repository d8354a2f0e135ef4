"""select-states: the state count, the persistence, and a table of candidate HMMs.

Two searches, one after the other:

- **the HMM grid**: each candidate (state count, covariance type) is fitted by
  :class:`~regimelab.families.hmm.model.RegimeHMM` with its restarts and scored
  on the training split (log-likelihood, AIC, BIC), on the validation split
  (log-likelihood per bar) and by how much its two best restarts agree (ARI of
  their decoded paths). With ``select.criterion`` ``bic``, ``aic`` or
  ``val_ll`` these scores choose the state count (the seed's rule);
- **the regime scan** (:mod:`regimelab.scan`): for each state count, whether
  its regimes are reproducible and distinct, and the jump penalty that makes
  them last ``select.min_dwell`` bars on validation. With the default
  ``stability`` criterion the state count is the largest that passes, and the
  HMM's covariance type at that count is the lowest BIC.

Validation bars are used for these choices, so they are not held out: only
the test split is.

Optuna holds the study. Trials run in threads (hmmlearn's E-step and numpy
release the GIL, so two threads use two cores), and the study lives in
``select.storage``: a SQLite file by default, or a shared database URL so that
workers on several machines split one grid.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    Future,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import asdict
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import optuna
import pandas as pd
import sqlalchemy
from threadpoolctl import threadpool_limits

from regimelab import __version__
from regimelab.choice import choose, score_to_minimise
from regimelab.exceptions import ModelError, ParamsError
from regimelab.families.hmm.fit import check_collinear, make_hmm
from regimelab.params import COVARIANCE_TYPES, HMMParams, JumpParams, SelectParams
from regimelab.scan import choose_n_states, scan_state_count

log = logging.getLogger(__name__)

# The environment variable that may hold a shared storage URL (with its password).
STORAGE_ENV = "REGIMELAB_OPTUNA_STORAGE"
# Another machine may still be running trials of a shared study; wait this long at most.
SHARED_STUDY_WAIT_S = 6 * 3600.0
# A worker records a heartbeat for each trial it runs this often (seconds). A trial whose
# heartbeat is older than the grace period belongs to a worker that died (killed, machine
# lost): the next worker that looks fails it and queues its grid point again.
HEARTBEAT_INTERVAL_S = 30
HEARTBEAT_GRACE_S = 300
# How often a worker with nothing left to fit looks at a shared study again (seconds).
POLL_S = 10.0
# Optuna's retries of a dead worker's trial: a point that kills its worker this often
# (out of memory, say) stays failed rather than killing every worker in turn.
MAX_RETRIES = 3


def evaluate_candidate(
    X: np.ndarray, lengths: np.ndarray, X_val: np.ndarray, lengths_val: np.ndarray, *,
    n_states: int, covariance_type: str, hmm: HMMParams, seed: int,
    feature_names: list[str] | None = None, collinear: Sequence[Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Fit one candidate and return its scores.

    A full or tied covariance over the scaler's ``collinear`` pairs is refused
    (a ModelError: the candidate is recorded as pruned) unless
    ``hmm.allow_collinear``.

    Returns
    -------
    dict
        ``train_ll_per_bar``, ``val_ll_per_bar`` (nats), ``aic``, ``bic``,
        ``n_parameters``, ``restart_ari``, ``n_iter``, ``converged``,
        ``failed_restarts``, and the optimiser's noise: ``restarts_continued``
        (restarts run to convergence) and how far apart they end, best minus
        worst, on train (``restart_ll_spread_per_bar``) and on validation
        (``restart_val_ll_spread_per_bar``), in nats per bar (NaN with fewer
        than two). Nothing that varies between runs (such as timings), so the
        metrics file is reproducible.
    """
    check_collinear(covariance_type, collinear, allow=hmm.allow_collinear)
    model = make_hmm(n_states, covariance_type, hmm=hmm, seed=seed).fit(
        X, lengths, feature_names=feature_names)
    train_ll = model.log_likelihood_
    continued = model.continued_models_
    # Every continued restart ran to convergence, so each has its log-likelihood.
    train_lls = [ll for i in continued if (ll := model.restarts_[i].log_likelihood) is not None]
    val_lls = [m.score(X_val, lengths_val) for m in continued.values()]
    return {
        "n_states": n_states,
        "covariance_type": covariance_type,
        "train_ll_per_bar": train_ll / len(X),
        "val_ll_per_bar": model.score(X_val, lengths_val) / len(X_val),
        "aic": model.aic_,
        "bic": model.bic_,
        "n_parameters": model.n_parameters,
        "restart_ari": model.restart_ari_,
        "n_iter": model.n_iter_,
        "converged": model.converged_,
        "failed_restarts": sum(r.failed is not None for r in model.restarts_),
        "restarts_continued": len(continued),
        "restart_ll_spread_per_bar": _spread(train_lls) / len(X),
        "restart_val_ll_spread_per_bar": _spread(val_lls) / len(X_val),
    }


def _spread(values: list[float]) -> float:
    """Largest minus smallest; NaN for fewer than two values (no spread to measure)."""
    return float(max(values) - min(values)) if len(values) > 1 else float("nan")


# The HMM grid's criteria whose decisions are checked against the optimiser's noise.
NOISE_CRITERIA = ("bic", "aic", "val_ll")
_NOISE_UNITS = {"bic": "BIC", "aic": "AIC", "val_ll": "nats per validation bar"}


def restart_spread(row: dict[str, Any], criterion: str, *, n_train: int) -> float:
    """How far a candidate's ``criterion`` moves between its continued restarts.

    In the criterion's own units: AIC and BIC are -2 log-likelihood plus a
    penalty that every restart of a candidate shares, so their spread is twice
    the training log-likelihood's; ``val_ll`` is the spread of the restarts'
    validation log-likelihoods per bar. NaN when it was not measured.
    """
    if criterion == "val_ll":
        return float(row.get("restart_val_ll_spread_per_bar", float("nan")))
    return 2.0 * n_train * float(row.get("restart_ll_spread_per_bar", float("nan")))


def decision_noise(candidates: list[dict[str, Any]], *, chosen: dict[str, Any],
                   criterion: str, n_train: int) -> dict[str, Any]:
    """Whether the gap between ``chosen`` and the runner-up exceeds the optimiser's noise.

    The runner-up is the best other complete candidate by ``criterion``
    (``bic``, ``aic`` or ``val_ll``). The noise is the larger of the two
    candidates' restart spreads (:func:`restart_spread`): the restarts of one
    candidate ending that far apart means another seed could move its score by
    as much. When the gap is smaller, which of the two wins is the optimiser's
    draw rather than the data's answer. The spread of the best two restarts
    is a lower bound on that noise, so ``within_optimiser_noise: false`` is
    the weaker statement.

    Returns
    -------
    dict
        ``criterion``, ``units``, ``chosen`` and ``runner_up`` (``k{K}_{type}``;
        ``runner_up`` None when there is no other candidate), ``gap`` (>= 0, in
        the criterion's units), ``restart_spread`` (the chosen candidate's),
        ``runner_up_restart_spread``, and ``within_optimiser_noise``: True when
        the gap is smaller than the larger spread, None when neither spread
        was measured (fewer than two restarts converged) or there is no
        runner-up.
    """
    done = [c for c in candidates if c.get("status") == "complete"]
    key = _candidate_key(chosen)
    others = [c for c in done if _candidate_key(c) != key]
    result: dict[str, Any] = {"criterion": criterion, "units": _NOISE_UNITS[criterion],
                              "chosen": key, "runner_up": None, "gap": None,
                              "restart_spread": restart_spread(chosen, criterion,
                                                               n_train=n_train),
                              "runner_up_restart_spread": None,
                              "within_optimiser_noise": None}
    if not others:
        return _nan_to_none(result)
    runner = min(others, key=lambda c: score_to_minimise(c, criterion))
    gap = abs(score_to_minimise(runner, criterion) - score_to_minimise(chosen, criterion))
    spreads = [result["restart_spread"], restart_spread(runner, criterion, n_train=n_train)]
    measured = [s for s in spreads if np.isfinite(s)]
    result.update(runner_up=_candidate_key(runner), gap=gap,
                  runner_up_restart_spread=spreads[1],
                  within_optimiser_noise=bool(gap < max(measured)) if measured else None)
    return _nan_to_none(result)


def _nan_to_none(result: dict[str, Any]) -> dict[str, Any]:
    """An unmeasured spread is None (null in JSON), which compares equal to itself; NaN does not."""
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v
            for k, v in result.items()}


def _candidate_key(row: dict[str, Any]) -> str:
    return f"k{row['n_states']}_{row['covariance_type']}"


def study_name(arrays: list[np.ndarray], *, columns: list[str], select: SelectParams,
               hmm: HMMParams, seed: int) -> str:
    """A name that only the same data, settings and regimelab version share.

    The data enter as the arrays the models see (not the files, whose bytes carry
    library versions), so machines with the same inputs agree on the name, and a
    new regimelab version never reuses an older version's trials.
    """
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    settings = {"columns": columns, "grid": asdict(select.grid), "sampler": select.sampler,
                "n_trials": select.n_trials, "hmm": asdict(hmm), "seed": seed,
                "version": __version__}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return f"select-states-{digest.hexdigest()[:16]}"


def fresh_sqlite_storage(path: Path) -> str:
    """A SQLite storage URL at ``path``, the file from an earlier run removed.

    Without a shared database each run starts its own study, so a change to the
    code can never be answered from an old run's trials.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    return f"sqlite:///{path.as_posix()}"


def _sqlite_no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN instead


def _sqlite_begin_immediate(connection: sqlalchemy.Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's database storage at ``url``, ready for several workers on one study.

    Trials record heartbeats (see :data:`HEARTBEAT_INTERVAL_S`), and a trial
    whose heartbeat is older than :data:`HEARTBEAT_GRACE_S` is failed by the
    next worker that looks and queued again (Optuna's
    ``RetryHeartbeatStaleTrialCallback``, at most :data:`MAX_RETRIES` times).

    On SQLite every transaction takes the write lock when it begins (``BEGIN
    IMMEDIATE``, SQLAlchemy's recipe): pysqlite otherwise reads outside any
    transaction, so two processes could both read a queued trial as waiting and
    both claim it. PostgreSQL's ``SELECT ... FOR UPDATE``, which Optuna uses
    when it claims a trial, needs no help.
    """
    sqlite = url.startswith("sqlite")
    for attempt in range(1, 4):
        try:
            with warnings.catch_warnings():
                # Heartbeats and their retry callback are marked experimental in Optuna.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs={"connect_args": {"timeout": 60.0}} if sqlite else None,
                    heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=HEARTBEAT_GRACE_S,
                    heartbeat_stale_trial_callback=(
                        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)))
            break
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                sqlalchemy.exc.OperationalError) as exc:
            # Workers that start together on a new database race to create Optuna's
            # tables; the loser finds them made when it tries again.
            if attempt == 3 or (isinstance(exc, sqlalchemy.exc.OperationalError)
                                and "already exists" not in str(exc)):
                raise
            time.sleep(1.0)
    if sqlite:
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_no_implicit_begin)
        sqlalchemy.event.listen(storage.engine, "begin", _sqlite_begin_immediate)
        storage.engine.dispose()  # connections opened before the listeners go
    return storage


class _Heartbeat:
    """Records a heartbeat for each trial this worker runs, every ``interval`` seconds.

    Optuna's own heartbeat thread runs only inside ``Study.optimize``; the
    selection asks and tells, so it beats for itself.
    """

    def __init__(self, storage: optuna.storages.RDBStorage, study_id: int,
                 interval: float) -> None:
        self._storage, self._study_id, self._interval = storage, study_id, interval
        self._trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="optuna-heartbeat",
                                        daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def add(self, trial: optuna.Trial) -> None:
        # The first beat at once: a trial without any heartbeat is never taken as stale.
        trial_id = self._storage.get_trial_id_from_study_id_trial_number(self._study_id,
                                                                         trial.number)
        self._storage.record_heartbeat(trial_id)
        with self._lock:
            self._trial_ids.add(trial_id)

    def remove(self, trial: optuna.Trial) -> None:
        trial_id = self._storage.get_trial_id_from_study_id_trial_number(self._study_id,
                                                                         trial.number)
        with self._lock:
            self._trial_ids.discard(trial_id)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                trial_ids = sorted(self._trial_ids)
            for trial_id in trial_ids:
                try:
                    self._storage.record_heartbeat(trial_id)
                except Exception as exc:  # a database hiccup must not stop the beating
                    log.warning("heartbeat of trial id %d not recorded: %s", trial_id, exc)


def _take_over_stale(study: optuna.Study) -> None:
    """Fail the trials of workers that stopped beating, and queue their points again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _point(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    # A queued trial keeps its point in system_attrs until a worker claims it.
    return trial.system_attrs.get("fixed_params", trial.params)


def _earlier_holder(study: optuna.Study, trial: optuna.Trial) -> int | None:
    """The number of an earlier trial of the same grid point that has not failed, if any.

    Of the trials of one point, only the lowest-numbered that has not failed is
    fitted. Two workers that start together can both queue a point (Optuna's
    ``skip_if_exists`` looks, then inserts), and the grid sampler adds a trial
    when another worker took the last queued one between our look and our ask.
    Each worker applies the rule after its own claim, so of two claims at the
    same time the later-numbered sees the other and stands down.
    """
    point = trial.params
    for other in study.get_trials(deepcopy=False):
        if (other.number < trial.number and other.state != optuna.trial.TrialState.FAIL
                and _point(other) == point):
            return other.number
    return None


def _relative_cost(n_states: int, covariance_type: str) -> float:
    """Rough cost of fitting a candidate, for scheduling only."""
    return n_states * (3.0 if covariance_type in ("full", "tied") else 1.0)


def _tell(study: optuna.Study, trial: optuna.Trial, future: Future[tuple[dict[str, Any], float]],
          *, criterion: str, progress: str) -> None:
    """Report one finished fit to Optuna: its scores, or PRUNED for an unfittable model."""
    k, cov = trial.params["n_states"], trial.params["covariance_type"]
    try:
        row, seconds = future.result()
    except ModelError as exc:
        trial.set_user_attr("failed", str(exc))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        log.warning("%s K=%d %s rejected: %s", progress, k, cov, exc)
        return
    except BaseException:
        study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        raise
    for key, value in row.items():
        trial.set_user_attr(key, value)
    study.tell(trial, score_to_minimise(row, criterion))
    log.info("%s K=%d %-4s BIC %.0f, val LL %.4f nats/bar, restart ARI %.2f and spread %.2g "
             "nats/bar, %d iterations, %.1f s", progress, k, cov, row["bic"],
             row["val_ll_per_bar"], row["restart_ari"], row["restart_ll_spread_per_bar"],
             row["n_iter"], seconds)


def _workers(n_jobs: int) -> int:
    # The cores this process may use: joblib counts the CPU affinity and a container's CPU
    # quota, and works on every platform (os.sched_getaffinity is Linux only).
    return joblib.cpu_count() if n_jobs == -1 else n_jobs


def _make_sampler(select: SelectParams, seed: int) -> optuna.samplers.BaseSampler:
    space: dict[str, Sequence[int | str]] = {"n_states": list(select.grid.n_states),
             "covariance_type": list(select.grid.covariance_type)}
    if select.sampler == "grid":
        return optuna.samplers.GridSampler(space, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def run_scan(X: np.ndarray, lengths: np.ndarray, X_val: np.ndarray, lengths_val: np.ndarray,
             *, select: SelectParams, jump: JumpParams, min_dwell: float, seed: int,
             feature_names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The regime scan of every state count in the grid, ``select.n_jobs`` at a time.

    Returns ``{"k2": row, ...}`` (see :func:`regimelab.scan.scan_state_count`); a count
    the jump model cannot fit at all is recorded with ``status: pruned``.
    """
    def one(k: int) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            row = scan_state_count(X, lengths, X_val, lengths_val, n_states=k, select=select,
                                   jump=jump, min_dwell=min_dwell, seed=seed,
                                   feature_names=feature_names)
        except ModelError as exc:
            log.warning("scan K=%d: cannot be fitted: %s", k, exc)
            return {"n_states": k, "status": "pruned", "failed": str(exc)}
        log.info("scan K=%d: stability %.3f, separation %.2f, jump penalty %g (median run %s "
                 "bars on validation), %.1f s", k, row["stability"], row["separation"],
                 row["jump_penalty"], row["median_dwell_val"], time.perf_counter() - start)
        return {"status": "complete", **row}

    ks = sorted(select.grid.n_states)
    with threadpool_limits(1), ThreadPoolExecutor(max_workers=_workers(select.n_jobs)) as pool:
        rows = list(pool.map(one, ks))
    return {f"k{k}": row for k, row in zip(ks, rows)}


def _criterion_optimum(candidates: list[dict[str, Any]], criterion: str) -> int:
    """The state count at which the HMM criterion itself is best, before any tie rule."""
    done = [c for c in candidates if c.get("status") == "complete"]
    return min(done, key=lambda c: score_to_minimise(c, criterion))["n_states"]


def search_grid(
    X: np.ndarray, lengths: np.ndarray, X_val: np.ndarray, lengths_val: np.ndarray, *,
    select: SelectParams, hmm: HMMParams, seed: int, storage: str, name: str,
    feature_names: list[str] | None = None, collinear: Sequence[Sequence[Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Fit and score the HMM grid with Optuna, ``select.n_jobs`` candidates at a time.

    Parameters are those of :func:`run_selection`.

    Returns
    -------
    dict
        One row per grid point (see :func:`evaluate_candidate`), keyed
        ``k{K}_{type}`` in grid order, with ``status`` ``complete``, or
        ``pruned``/``fail`` and the reason in ``failed``.
    """
    grid_size = len(select.grid.n_states) * len(select.grid.covariance_type)
    n_trials = select.n_trials or grid_size
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        rdb = open_storage(storage)
        study = optuna.create_study(storage=rdb, study_name=name, direction="minimize",
                                    sampler=_make_sampler(select, seed), load_if_exists=True)
    except Exception as exc:  # SQLAlchemy/driver errors come in many types
        raise ParamsError(f"select.storage: cannot open {storage!r} "
                          f"({type(exc).__name__}: {exc})") from None

    states = optuna.trial.TrialState
    grid_mode = select.sampler == "grid"
    if grid_mode:
        # Queue the grid, costliest first, so the workers finish together. A point that a
        # shared study already holds (queued, running or done by another worker) is not
        # queued again; a queued trial keeps its point in system_attrs, not in params.
        grid = sorted(((k, c) for k in select.grid.n_states for c in select.grid.covariance_type),
                      key=lambda kc: (-_relative_cost(*kc), kc[0], kc[1]))
        for k, cov in grid:
            study.enqueue_trial({"n_states": k, "covariance_type": cov}, skip_if_exists=True)
    asked = 0

    def next_trial() -> optuna.Trial | None:
        nonlocal asked
        while True:
            _take_over_stale(study)
            waiting = study.get_trials(deepcopy=False, states=(states.WAITING,))
            if not waiting and (grid_mode or asked >= n_trials):
                return None
            asked += 1
            with warnings.catch_warnings():
                # Optuna's heartbeat thread runs in Study.optimize only; _Heartbeat beats here.
                warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                trial = study.ask()
            trial.suggest_categorical("n_states", list(select.grid.n_states))
            trial.suggest_categorical("covariance_type", list(select.grid.covariance_type))
            if not grid_mode or (holder := _earlier_holder(study, trial)) is None:
                return trial
            log.debug("trial %d: K=%d %s is trial %d's point; not fitted twice", trial.number,
                      trial.params["n_states"], trial.params["covariance_type"], holder)
            trial.set_user_attr("duplicate_of", holder)
            study.tell(trial, state=states.FAIL)

    def others_running() -> bool:
        """Wait while other workers run trials; True when some came back to the queue."""
        waited = 0.0
        while True:
            _take_over_stale(study)
            if study.get_trials(deepcopy=False, states=(states.WAITING,)):
                return True
            others = study.get_trials(deepcopy=False, states=(states.RUNNING,))
            if not others:
                return False
            if waited >= SHARED_STUDY_WAIT_S:
                raise ModelError(
                    f"select-states: {len(others)} trial(s) of study {name} are still running "
                    f"elsewhere after {waited / 3600:.0f} h; a worker may have died without "
                    "heartbeats: delete them from the study or use a new select.storage")
            log.info("waiting for %d trial(s) that other workers are running in %s",
                     len(others), name)
            time.sleep(POLL_S)
            waited += POLL_S

    def fit(trial: optuna.Trial) -> tuple[dict[str, Any], float]:
        start = time.perf_counter()
        row = evaluate_candidate(X, lengths, X_val, lengths_val,
                                 n_states=trial.params["n_states"],
                                 covariance_type=trial.params["covariance_type"],
                                 hmm=hmm, seed=seed, feature_names=feature_names,
                                 collinear=collinear)
        return row, time.perf_counter() - start

    # Ask-and-tell: this thread asks Optuna for trials and reports them, the pool fits.
    # Asking from one thread keeps a worker from racing itself for a queued trial, and
    # hmmlearn's E-step and numpy release the GIL, so threads use the cores.
    done = 0
    workers = _workers(select.n_jobs)
    # TPE proposes from what it has been told: asking in batches and telling in trial
    # order keeps its proposals independent of which fit happens to finish first.
    batches = select.sampler == "tpe"
    running: dict[Future[tuple[dict[str, Any], float]], optuna.Trial] = {}
    heartbeat = _Heartbeat(rdb, rdb.get_study_id_from_name(name), HEARTBEAT_INTERVAL_S)
    try:
        with (heartbeat, threadpool_limits(1),
              ThreadPoolExecutor(max_workers=workers) as pool):
            while True:
                while (not batches or not running) and len(running) < workers:
                    if (trial := next_trial()) is None:
                        break
                    heartbeat.add(trial)
                    running[pool.submit(fit, trial)] = trial
                if not running:
                    if others_running():
                        continue
                    break
                finished, _ = wait(running, return_when=ALL_COMPLETED if batches
                                   else FIRST_COMPLETED)
                for future in sorted(finished, key=lambda f: running[f].number):
                    trial = running.pop(future)
                    done += 1
                    heartbeat.remove(trial)
                    try:
                        _tell(study, trial, future, criterion=select.criterion,
                              progress=f"[{done}/{n_trials}]")
                    except optuna.exceptions.UpdateFinishedTrialError:
                        # Another worker heard no heartbeat for HEARTBEAT_GRACE_S (this
                        # machine was suspended, say), failed the trial and queued its
                        # point again: that retry's result stands, not this one.
                        log.warning("trial %d was taken over by another worker; its result "
                                    "here is dropped", trial.number)
    finally:
        # An error or an interrupt must not leave trials RUNNING in a shared study,
        # where other workers would wait for them.
        for trial in running.values():
            study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)

    candidates: dict[str, dict[str, Any]] = {}
    for frozen in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if "duplicate_of" in frozen.user_attrs or not frozen.params:
            continue  # a point's second trial, never fitted (see _earlier_holder)
        key = f"k{frozen.params['n_states']}_{frozen.params['covariance_type']}"
        if key in candidates and candidates[key]["status"] == "complete":
            continue  # a grid point two workers both ran: the results are the same
        if frozen.state == optuna.trial.TrialState.COMPLETE:
            candidates[key] = {"status": "complete", **frozen.user_attrs}
        else:
            candidates[key] = {"status": frozen.state.name.lower(),
                               "n_states": frozen.params["n_states"],
                               "covariance_type": frozen.params["covariance_type"],
                               "failed": frozen.user_attrs.get("failed", "")}
    return dict(sorted(candidates.items(), key=lambda kv: (
        kv[1]["n_states"], COVARIANCE_TYPES.index(kv[1]["covariance_type"]))))


def run_selection(
    X: np.ndarray, lengths: np.ndarray, X_val: np.ndarray, lengths_val: np.ndarray, *,
    select: SelectParams, hmm: HMMParams, seed: int, storage: str, name: str,
    jump: JumpParams | None = None, min_dwell: float = 24.0,
    feature_names: list[str] | None = None, collinear: Sequence[Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Search the HMM grid with Optuna, scan the regimes, and choose a model.

    Parameters
    ----------
    X, lengths : ndarray
        Training observations (n_samples, n_features) and sequence lengths.
    X_val, lengths_val : ndarray
        Validation observations and sequence lengths.
    select, hmm, jump : SelectParams, HMMParams, JumpParams
        The ``select``, ``hmm`` and ``jump`` params (``jump``: its defaults when None).
    seed : int
        ``model.seed``.
    storage : str
        An Optuna storage URL (``sqlite:///...`` or ``postgresql://...``).
    name : str
        The study name (see :func:`study_name`).
    min_dwell : float
        The median run, in bars, the scan calibrates the jump penalty to
        (see :func:`regimelab.choice.min_dwell_bars`).
    feature_names : list of str, optional
        Column names of ``X``; they pick the volatility feature that orders the states.
    collinear : sequence of ``[a, b, correlation]``, optional
        The scaler's collinear pairs: full covariances over them are refused.

    Returns
    -------
    dict
        ``choice`` (``n_states``, ``covariance_type``, ``at_grid_edge``,
        ``within_optimiser_noise``), ``criterion``, ``tie_tolerance``,
        ``n_train``, ``candidates`` (one entry per HMM grid point, keyed
        ``k{K}_{type}``), ``scan`` (one entry per state count, keyed ``k{K}``)
        and ``optimiser_noise``: for the HMM grid's part of the choice (the
        whole choice with ``bic``, ``aic`` or ``val_ll``; the covariance type
        at the chosen count with ``stability``) and for each of those three
        criteria's own optimum, the gap to the runner-up against the restarts'
        spread (see :func:`decision_noise`).
    """
    candidates = search_grid(X, lengths, X_val, lengths_val, select=select, hmm=hmm, seed=seed,
                             storage=storage, name=name, feature_names=feature_names,
                             collinear=collinear)
    rows = list(candidates.values())
    largest = max(select.grid.n_states)
    scan = run_scan(X, lengths, X_val, lengths_val, select=select,
                    jump=jump if jump is not None else JumpParams(), min_dwell=min_dwell,
                    seed=seed, feature_names=feature_names)
    scanned = [r for r in scan.values() if r["status"] == "complete"]
    if select.criterion == "stability":
        if not scanned:
            raise ModelError("select-states: the jump model could not be fitted at any state "
                             "count of select.grid.n_states; see the log for why")
        n_states, passed = choose_n_states(scanned, min_stability=select.min_stability,
                                           min_separation=select.min_separation)
        if not passed:
            log.warning("no state count has regimes that are both reproducible (stability >= "
                        "%g) and distinct (separation >= %g): taking the fewest, %d",
                        select.min_stability, select.min_separation, n_states)
        at_k = [c for c in rows if c.get("status") == "complete" and c["n_states"] == n_states]
        cov = (choose(at_k, criterion="bic", tie_tolerance=select.tie_tolerance,
                      n_train=len(X))["covariance_type"] if at_k
               else select.grid.covariance_type[0])
        choice = {"n_states": n_states, "covariance_type": cov}
        # The criterion's optimum lies at the edge when even the largest count passes.
        at_edge = n_states == largest and passed
        # The HMM grid decides only the covariance type here, by BIC among the count's.
        decided = [c for c in at_k if c["covariance_type"] == cov]
        noise = (decision_noise(at_k, chosen=decided[0], criterion="bic", n_train=len(X))
                 if decided else None)
    else:
        choice = choose(rows, criterion=select.criterion, tie_tolerance=select.tie_tolerance,
                        n_train=len(X))
        at_edge = _criterion_optimum(rows, select.criterion) == largest
        noise = decision_noise(rows, chosen=choice, criterion=select.criterion, n_train=len(X))
    noise_table = _criteria_noise(rows, n_train=len(X))
    within = None if noise is None else noise["within_optimiser_noise"]
    if within and noise is not None:
        log.warning("WITHIN OPTIMISER NOISE: %s %s over %s by %.4g %s, less than the restarts' "
                    "spread (%s, %s): another seed may decide otherwise; more restarts "
                    "(hmm.n_init, hmm.n_continue) narrow it", noise["criterion"].upper(),
                    noise["chosen"], noise["runner_up"], noise["gap"], noise["units"],
                    *(f"{s:.4g}" if s is not None else "unmeasured"
                      for s in (noise["restart_spread"], noise["runner_up_restart_spread"])))
    bic_optimum = _criterion_optimum(rows, "bic") if any(
        c.get("status") == "complete" for c in rows) else None
    if at_edge:
        log.warning("AT THE GRID'S EDGE: the %s criterion is best at %d states, the largest in "
                    "select.grid.n_states; more states may be better still: widen the grid or "
                    "fix model.n_states", select.criterion, largest)
    if bic_optimum == largest and select.criterion != "bic":
        log.warning("BIC alone would take %d states, the grid's edge: on market data it keeps "
                    "falling with more states (see the candidates table)", largest)
    return {
        "choice": {"n_states": choice["n_states"], "covariance_type": choice["covariance_type"],
                   "at_grid_edge": at_edge, "within_optimiser_noise": within},
        "criterion": select.criterion,
        "tie_tolerance": select.tie_tolerance,
        "min_stability": select.min_stability,
        "min_separation": select.min_separation,
        "min_dwell": min_dwell,
        "bic_optimum_n_states": bic_optimum,
        "n_train": len(X),
        "n_val": len(X_val),
        "study": name,
        "candidates": candidates,
        "scan": scan,
        "optimiser_noise": {"choice": noise, **noise_table},
    }


def _criteria_noise(rows: list[dict[str, Any]], *, n_train: int) -> dict[str, dict[str, Any]]:
    """For each of BIC, AIC and val_ll, its optimum's gap to the runner-up against the noise."""
    done = [c for c in rows if c.get("status") == "complete"]
    if not done:
        return {}
    return {criterion: decision_noise(
        done, chosen=min(done, key=lambda c: score_to_minimise(c, criterion)),
        criterion=criterion, n_train=n_train) for criterion in NOISE_CRITERIA}


def criteria_tables(selection: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """BIC, AIC and validation log-likelihood against n_states, one column per covariance type.

    Returns ``{'bic': frame, 'aic': frame, 'val_ll': frame}``, each with an
    ``n_states`` column and one per covariance type; a candidate that is not in
    the grid or could not be fitted is left empty.
    """
    rows = [c for c in selection["candidates"].values() if c.get("status") == "complete"]
    # Every covariance type gets a column (empty when not in the grid), so the plot
    # definitions in dvc.yaml hold whatever the grid is.
    covs = list(COVARIANCE_TYPES)
    ks = sorted({c["n_states"] for c in selection["candidates"].values()})
    tables = {}
    for name, key in (("bic", "bic"), ("aic", "aic"), ("val_ll", "val_ll_per_bar")):
        frame = pd.DataFrame({"n_states": ks})
        for cov in covs:
            values = {c["n_states"]: c[key] for c in rows if c["covariance_type"] == cov}
            frame[cov] = [values.get(k, np.nan) for k in ks]
        tables[name] = frame
    return tables


def scan_tables(selection: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """The regime scan as plot tables.

    ``scan``: per state count, ``stability``, ``separation``, the calibrated
    ``jump_penalty`` and its median run on validation, and the thresholds
    (``min_stability``, ``min_separation``) as constant columns so a plot draws
    them; ``persistence``: per state count, the median run on validation at
    every jump penalty tried (one column per count), against ``penalty``.
    """
    rows = [r for r in selection.get("scan", {}).values() if r.get("status") == "complete"]
    scan = pd.DataFrame({
        "n_states": [r["n_states"] for r in rows],
        "stability": [r["stability"] for r in rows],
        "separation": [r["separation"] for r in rows],
        "min_stability": selection["min_stability"],
        "min_separation": selection["min_separation"],
        "jump_penalty": [r["jump_penalty"] for r in rows],
        "median_dwell_val": [r["median_dwell_val"] for r in rows],
    })
    penalties = sorted({float(p) for r in rows for p in r["penalties"]})
    persistence = pd.DataFrame({"penalty": penalties})
    for r in rows:
        persistence[f"k{r['n_states']}"] = [r["penalties"].get(f"{p:g}") for p in penalties]
    persistence["min_dwell"] = selection["min_dwell"]
    return {"scan": scan, "persistence": persistence}
