"""Scaling out: worker processes on one Optuna study, on SQLite and on a real PostgreSQL.

Each test starts its workers as separate processes (tests/shared_study_worker.py)
and counts their fits from the log they append to. The PostgreSQL server is
started by the tests themselves (``initdb`` and ``pg_ctl`` into a temporary
folder, on loopback); without its binaries the PostgreSQL tests are skipped on a
developer's machine and fail in CI (``CI`` set), where ``.ci/run`` installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from glob import glob
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

from regimelab.store import PredictionStore, StoreError, _config, head, upgrade_store

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "shared_study_worker.py"
GRID_POINTS = {(k, cov) for k in (2, 3, 4) for cov in ("diag", "full")}


# -- a PostgreSQL server of the tests' own -------------------------------------------------


def _postgres_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on the PATH, else Debian's newest."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    debian = sorted(glob("/usr/lib/postgresql/*/bin/initdb"),
                    key=lambda p: int(Path(p).parts[-3]))
    return Path(debian[-1]).parent if debian else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server on 127.0.0.1 for this session; yields its base URL (psycopg 3)."""
    bindir = _postgres_bin()
    if bindir is None:
        message = "PostgreSQL's initdb and pg_ctl are not installed (Debian: postgresql-15)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install them (.ci/run does)")
        pytest.skip(message)
    # initdb refuses to run as root: as root (CI), the server runs as the postgres user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="regimelab-pg-"))
    if as_user:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "regimelab",
                    "--auth=trust", "-E", "UTF8", "--no-locale"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l",
                    str(folder / "server.log"), "-w", "-t", "60", "-o",
                    f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://regimelab@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres: str) -> str:
    """A new, empty database on the session's server: its SQLAlchemy URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = postgres.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres}/{name}"


# -- workers -------------------------------------------------------------------------------


def start_worker(storage: str, name: str, out: Path, fits: Path, *extra: str
                 ) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with open(out.with_suffix(".log"), "w") as log:  # the child keeps its own copy
        return subprocess.Popen([sys.executable, str(WORKER), storage, name, str(out),
                                 "--fits", str(fits), *extra], env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def finish(worker: subprocess.Popen, out: Path, timeout: float = 240.0) -> dict[str, Any]:
    assert worker.wait(timeout=timeout) == 0, out.with_suffix(".log").read_text()[-3000:]
    return json.loads(out.read_text())


def fits(log: Path) -> tuple[Counter, Counter]:
    """How often each grid point's fit started and ended, over every worker."""
    started, ended = Counter(), Counter()
    text = log.read_text()
    for line in text.splitlines()[:text.count("\n")]:  # a line being written is left out
        event, _pid, k, cov = line.split()
        (started if event == "start" else ended)[(int(k), cov)] += 1
    return started, ended


@pytest.fixture(scope="module")
def single_worker(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What one worker alone chooses: the reference every shared run must equal."""
    folder = tmp_path_factory.mktemp("single")
    out = folder / "single.json"
    result = finish(start_worker(f"sqlite:///{folder / 's.db'}", "shared", out,
                                 folder / "fits.log"), out)
    started, ended = fits(folder / "fits.log")
    assert set(started) == GRID_POINTS and set(started.values()) == {1} and ended == started
    return result


@contextmanager
def loaded(storage: str, name: str = "shared") -> Iterator[optuna.Study]:
    """The study, its database connections closed afterwards."""
    rdb = optuna.storages.RDBStorage(storage)
    try:
        yield optuna.load_study(study_name=name, storage=rdb)
    finally:
        rdb.engine.dispose()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shared.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return request.getfixturevalue("postgres_db")


def test_two_workers_fit_each_point_once_and_agree(storage: str, tmp_path: Path,
                                                   single_worker: dict[str, Any]) -> None:
    log = tmp_path / "fits.log"
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    workers = [start_worker(storage, "shared", a, log), start_worker(storage, "shared", b, log)]
    results = [finish(w, out) for w, out in zip(workers, (a, b))]

    started, ended = fits(log)
    assert set(started) == GRID_POINTS
    assert started == ended and set(started.values()) == {1}, started
    assert results[0] == results[1] == single_worker
    with loaded(storage) as study:
        trials = study.trials
    assert Counter((t.params["n_states"], t.params["covariance_type"]) for t in trials
                   if t.state.is_finished() and "duplicate_of" not in t.user_attrs
                   ) == Counter(GRID_POINTS)


def test_a_killed_worker_s_trials_are_taken_over(storage: str, tmp_path: Path,
                                                 single_worker: dict[str, Any]) -> None:
    log = tmp_path / "fits.log"
    doomed = start_worker(storage, "shared", tmp_path / "doomed.json", log,
                          "--slow", "600", "--n-jobs", "2")
    # Wait until the doomed worker has started two fits (so it holds two running trials,
    # each with its point and a heartbeat), then kill it outright.
    deadline = time.monotonic() + 120
    while not log.exists() or sum(fits(log)[0].values()) < 2:
        assert time.monotonic() < deadline and doomed.poll() is None, "the worker never ran"
        time.sleep(0.2)
    with loaded(storage) as study:
        held = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert len(held) == 2
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    killed = {(t.params["n_states"], t.params["covariance_type"]) for t in held}

    out = tmp_path / "survivor.json"
    result = finish(start_worker(storage, "shared", out, log), out)

    assert result == single_worker
    started, ended = fits(log)
    # The killed worker started its two fits and finished none; the survivor fitted
    # every point once, the two it took over included.
    assert ended == Counter(GRID_POINTS)
    assert started == Counter(GRID_POINTS) + Counter(killed)
    with loaded(storage) as study:
        trials = study.trials
    by_number = {t.number: t for t in trials}
    for trial in held:
        assert by_number[trial.number].state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if "failed_trial" in t.system_attrs]
    assert {t.system_attrs["failed_trial"] for t in retried} == {t.number for t in held}
    assert all(t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL
               for t in retried)


def test_a_point_queued_twice_is_fitted_once(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers that start together can both queue a point; only one trial fits it."""
    from regimelab import selection
    from regimelab.params import GridParams, HMMParams, SelectParams

    storage = sqlite_url(tmp_path)
    grid = [{"n_states": k, "covariance_type": "diag"} for k in (2, 3)]
    study = optuna.create_study(storage=storage, study_name="twice")
    for point in grid + grid:  # as if a second worker queued the grid at the same moment
        study.enqueue_trial(point)
    del study
    calls: list[tuple[int, str]] = []
    evaluate = selection.evaluate_candidate

    def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append((kwargs["n_states"], kwargs["covariance_type"]))
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(selection, "evaluate_candidate", counted)
    X = np.random.default_rng(0).normal(size=(300, 1))
    result = selection.run_selection(
        X, np.array([300]), X, np.array([300]),
        select=SelectParams(grid=GridParams(n_states=(2, 3), covariance_type=("diag",)),
                            criterion="bic", resamples=1, penalties=(5.0,), n_jobs=2),
        hmm=HMMParams(n_init=1), seed=0, storage=storage, name="twice")
    assert sorted(calls) == [(2, "diag"), (3, "diag")]
    assert sorted(result["candidates"]) == ["k2_diag", "k3_diag"]
    with loaded(storage, "twice") as study:
        duplicates = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert sorted(t.number for t in duplicates) == [2, 3]


# -- the prediction store on the same server -----------------------------------------------


def test_the_prediction_store_works_on_postgresql(postgres_db: str) -> None:
    stamps = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    table = pd.DataFrame({"timestamp": stamps, "symbol": "BTCUSDT", "state": [0, 1, 1],
                          "p_filter_0": [0.9, 0.2, 0.1], "p_filter_1": [0.1, 0.8, 0.9]})
    writer, reader = PredictionStore(postgres_db), PredictionStore(postgres_db)
    assert writer.append(table, source="infer", model="models/hmm", version="0.1.0") == 3
    assert writer.append([{"timestamp": stamps[-1], "symbol": "ETHUSDT", "state": 0,
                           "p_filter_0": 0.7, "p_filter_1": 0.3}],
                         source="serve", model="models/hmm", version="0.1.0") == 1

    stored = reader.history()
    assert list(stored["symbol"]) == ["BTCUSDT"] * 3 + ["ETHUSDT"]
    assert list(stored["source"]) == ["infer"] * 3 + ["serve"]
    # timestamptz read back as the same UTC times; a JSON column as lists.
    assert list(stored["timestamp"]) == [*stamps, stamps[-1]]
    assert str(stored["predicted_at"].dt.tz) == "UTC"
    assert list(stored["probabilities"]) == [[0.9, 0.1], [0.2, 0.8], [0.1, 0.9], [0.7, 0.3]]
    last_btc = reader.history(symbol="BTCUSDT", limit=1)
    assert list(last_btc["state"]) == [1]
    assert last_btc["timestamp"].iloc[0] == stamps[-1]
    assert reader.history(model="models/dssm").empty
    writer.engine.dispose()
    reader.engine.dispose()


def test_an_older_store_on_postgresql_is_upgraded_in_place(postgres_db: str) -> None:
    """The store as regimelab wrote it before Alembic (text times and JSON), converted
    by ALTER ... USING, with its rows and its id sequence; and converted back."""
    import sqlalchemy as sa
    from alembic import command

    old = [("2024-05-01T10:00:00.123+00:00", "infer", "/m/hmm", "abc", "BTCUSDT",
            "2024-01-01T00:00:00+00:00", 1, "[0.25, 0.75]"),
           ("2024-05-01T10:00:01.000+00:00", "serve", "/m/hmm", "abc", "ETHUSDT",
            "2024-01-01T01:00:00+00:00", 0, "[0.9, 0.1]")]
    engine = sa.create_engine(postgres_db)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE predictions (id SERIAL PRIMARY KEY, predicted_at VARCHAR(32) NOT "
            "NULL, source VARCHAR(16) NOT NULL, model VARCHAR(512) NOT NULL, model_version "
            "VARCHAR(64) NOT NULL, symbol VARCHAR(64) NOT NULL, timestamp VARCHAR(32) NOT "
            "NULL, state INTEGER NOT NULL, probabilities TEXT NOT NULL)")
        for row in old:
            conn.exec_driver_sql("INSERT INTO predictions (predicted_at, source, model, "
                                 "model_version, symbol, timestamp, state, probabilities) "
                                 "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", row)
    with pytest.raises(StoreError, match="made by an older regimelab"):
        PredictionStore(postgres_db)
    assert upgrade_store(postgres_db) == (None, head())
    store = PredictionStore(postgres_db)
    stored = store.history()
    assert list(stored["timestamp"]) == list(pd.date_range("2024-01-01", periods=2, freq="h",
                                                           tz="UTC"))
    assert stored["predicted_at"].iloc[0] == pd.Timestamp("2024-05-01T10:00:00.123Z")
    assert list(stored["probabilities"]) == [[0.25, 0.75], [0.9, 0.1]]
    store.append([{"timestamp": pd.Timestamp("2024-01-01 02:00", tz="UTC"), "symbol": "BTCUSDT",
                   "state": 0, "p_filter_0": 0.5, "p_filter_1": 0.5}],
                 source="now", model="/m/hmm", version="abc")
    assert list(store.history()["id"]) == [1, 2, 3]
    store.engine.dispose()
    with engine.begin() as conn:
        command.downgrade(_config(conn), "0001")
    with engine.connect() as conn:
        rows = [tuple(r)[1:] for r in conn.exec_driver_sql(
            "SELECT * FROM predictions WHERE id < 3 ORDER BY id")]
    assert rows == old
    engine.dispose()


def test_a_result_whose_trial_was_taken_over_meanwhile_is_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that was silent past the grace period (a suspended machine) and comes back
    finds its trial failed and queued again: it drops its result and the retry stands."""
    import warnings

    from regimelab import selection
    from regimelab.params import GridParams, HMMParams, SelectParams

    storage = sqlite_url(tmp_path)
    evaluate = selection.evaluate_candidate
    calls: list[tuple[int, str]] = []

    def taken_over(*args: Any, **kwargs: Any) -> dict[str, Any]:
        point = (kwargs["n_states"], kwargs["covariance_type"])
        calls.append(point)
        if calls.count(point) == 1 and point == (2, "diag"):
            # What another worker's fail_stale_trials does to this trial, meanwhile.
            rdb = optuna.storages.RDBStorage(storage)
            study = optuna.load_study(study_name="late", storage=rdb)
            [mine] = [t for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
                      if (t.params["n_states"], t.params["covariance_type"]) == point]
            rdb.set_trial_state_values(rdb.get_trial_id_from_study_id_trial_number(
                rdb.get_study_id_from_name("late"), mine.number), optuna.trial.TrialState.FAIL)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.RetryHeartbeatStaleTrialCallback()(study, mine)
            rdb.engine.dispose()
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(selection, "evaluate_candidate", taken_over)
    X = np.random.default_rng(1).normal(size=(300, 1))
    select = SelectParams(grid=GridParams(n_states=(2, 3), covariance_type=("diag",)),
                          criterion="bic", resamples=1, penalties=(5.0,), n_jobs=1)
    result = selection.run_selection(X, np.array([300]), X, np.array([300]), select=select,
                                     hmm=HMMParams(n_init=1), seed=0, storage=storage,
                                     name="late")
    assert sorted(calls) == [(2, "diag"), (2, "diag"), (3, "diag")]
    assert {k: c["status"] for k, c in result["candidates"].items()} == {
        "k2_diag": "complete", "k3_diag": "complete"}
    monkeypatch.setattr(selection, "evaluate_candidate", evaluate)
    alone = selection.run_selection(X, np.array([300]), X, np.array([300]), select=select,
                                    hmm=HMMParams(n_init=1), seed=0,
                                    storage=f"sqlite:///{tmp_path / 'alone.db'}", name="late")
    assert result == alone
