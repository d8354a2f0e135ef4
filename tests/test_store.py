"""The prediction store on SQLite: typed rows read back as written, a schema managed by
Alembic, and a store of an older regimelab upgraded with its rows."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from regimelab.cli import main
from regimelab.store import (
    _META,
    VERSION_TABLE,
    PredictionStore,
    StoreError,
    head,
    upgrade_store,
)

STAMPS = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
# Rows as regimelab wrote them before the store had a schema version: text times, JSON text.
OLD_TABLE = """CREATE TABLE predictions (
    id INTEGER NOT NULL PRIMARY KEY, predicted_at VARCHAR(32) NOT NULL,
    source VARCHAR(16) NOT NULL, model VARCHAR(512) NOT NULL,
    model_version VARCHAR(64) NOT NULL, symbol VARCHAR(64) NOT NULL,
    timestamp VARCHAR(32) NOT NULL, state INTEGER NOT NULL, probabilities TEXT NOT NULL)"""
OLD_ROWS = [
    (3, "2024-05-01T10:00:00.123+00:00", "infer", "/m/hmm", "abc", "BTCUSDT",
     "2024-01-01T00:00:00+00:00", 1, "[0.25, 0.75]"),
    (7, "2024-05-01T10:00:01.000+00:00", "serve", "/m/hmm", "abc", "ETHUSDT",
     "2024-01-01T01:00:00+00:00", 0, "[0.9, 0.1]"),
]


def url(tmp_path: Path, name: str = "p.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def table() -> pd.DataFrame:
    return pd.DataFrame({"timestamp": STAMPS, "symbol": "BTCUSDT", "state": [0, 1, 1],
                         "p_filter_0": [0.9, 0.2, 0.1], "p_filter_1": [0.1, 0.8, 0.9]})


def old_store(tmp_path: Path) -> str:
    address = url(tmp_path, "old.db")
    engine = sa.create_engine(address)
    with engine.begin() as conn:
        conn.exec_driver_sql(OLD_TABLE)
        for row in OLD_ROWS:
            conn.exec_driver_sql("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 row)
    engine.dispose()
    return address


def test_rows_are_read_back_as_written_with_utc_times(tmp_path: Path) -> None:
    store = PredictionStore(url(tmp_path))
    before = datetime.now(UTC)
    assert store.append(table(), source="infer", model="/m/hmm", version="v1") == 3
    # A naive time is UTC; another zone is converted.
    assert store.append([{"timestamp": pd.Timestamp("2024-01-01 05:00"), "symbol": "ETHUSDT",
                          "state": 0, "p_filter_0": 0.7, "p_filter_1": 0.3},
                         {"timestamp": pd.Timestamp("2024-01-01 08:00+03:00"),
                          "symbol": "ETHUSDT", "state": 1, "p_filter_0": 0.4,
                          "p_filter_1": 0.6}],
                        source="serve", model="/m/dssm", version="v2") == 2
    stored = PredictionStore(url(tmp_path)).history()  # a second connection reads them
    assert str(stored["timestamp"].dt.tz) == "UTC" and str(stored["predicted_at"].dt.tz) == "UTC"
    assert list(stored["timestamp"]) == [*STAMPS, pd.Timestamp("2024-01-01 05:00", tz="UTC"),
                                         pd.Timestamp("2024-01-01 05:00", tz="UTC")]
    assert stored["predicted_at"].between(before, datetime.now(UTC)).all()
    assert list(stored["probabilities"]) == [[0.9, 0.1], [0.2, 0.8], [0.1, 0.9], [0.7, 0.3],
                                             [0.4, 0.6]]
    assert list(stored["source"]) == ["infer"] * 3 + ["serve"] * 2
    last = store.history(model="/m/hmm", symbol="BTCUSDT", limit=2)
    assert list(last["state"]) == [1, 1] and list(last["timestamp"]) == list(STAMPS[1:])
    assert store.history(symbol="SOLUSDT").empty


def test_forecasts_are_stored_with_their_regime(tmp_path: Path) -> None:
    """``now`` and the service store each answer's forecasts (to six decimals) on its row;
    a row without forecasts (``infer``) has none, SQL NULL."""
    store = PredictionStore(url(tmp_path))
    forecasts = [{"horizon": 1, "markov": [0.912345678, 0.087654322],
                  "markov_switch": 0.0123456789, "learned": [0.8, 0.2],
                  "learned_model": "gru"}]
    store.append([{"timestamp": STAMPS[0], "symbol": "BTCUSDT", "state": 0,
                   "p_filter_0": 0.9, "p_filter_1": 0.1, "forecasts": forecasts}],
                 source="serve", model="/m/jump", version="v1")
    store.append(table().assign(forecasts=[forecasts, None, forecasts]), source="now",
                 model="/m/jump", version="v1")
    store.append(table(), source="infer", model="/m/jump", version="v1")
    stored = PredictionStore(url(tmp_path)).history()
    rounded = [{**forecasts[0], "markov": [0.912346, 0.087654], "markov_switch": 0.012346}]
    assert list(stored["forecasts"]) == [rounded, rounded, None, rounded, None, None, None]
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM predictions WHERE forecasts IS NULL"
                                    ).scalar() == 4


def test_a_new_store_has_the_migrations_schema_and_the_index(tmp_path: Path) -> None:
    store = PredictionStore(url(tmp_path))
    with store.engine.connect() as conn:
        # What Alembic built is what the code reads and writes: no difference left.
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, _META) == []
        inspector = sa.inspect(conn)
        assert {"name": "ix_predictions_model_symbol", "column_names": ["model", "symbol"]
                } in [{k: i[k] for k in ("name", "column_names")}
                      for i in inspector.get_indexes("predictions")]
        revision = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
    assert revision == head() == "0003"


def test_a_database_shared_with_optuna_keeps_both_versions(tmp_path: Path) -> None:
    """Optuna's storage keeps its schema revision in Alembic's default table."""
    engine = sa.create_engine(url(tmp_path))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('v3.2.0.a')")
    store = PredictionStore(url(tmp_path))
    store.append(table(), source="infer", model="m", version="v")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == (
            "v3.2.0.a")
    assert len(PredictionStore(url(tmp_path)).history()) == 3


def test_an_older_store_is_refused_in_one_line_until_upgraded(tmp_path: Path) -> None:
    address = old_store(tmp_path)
    with pytest.raises(StoreError, match=r"made by an older regimelab .*"
                                         r"regimelab store upgrade --store"):
        PredictionStore(address)
    assert upgrade_store(address) == (None, "0003")
    store = PredictionStore(address)
    stored = store.history()
    assert list(stored["id"]) == [3, 7]  # the rows, with their ids
    assert list(stored["timestamp"]) == list(STAMPS[:2])
    assert list(stored["predicted_at"]) == [
        pd.Timestamp("2024-05-01T10:00:00.123Z"), pd.Timestamp("2024-05-01T10:00:01Z")]
    assert list(stored["probabilities"]) == [[0.25, 0.75], [0.9, 0.1]]
    assert list(stored["symbol"]) == ["BTCUSDT", "ETHUSDT"]
    assert list(stored["forecasts"]) == [None, None]  # made before forecasts were stored
    store.append(table(), source="now", model="/m/hmm", version="abc")
    assert list(store.history()["id"]) == [3, 7, 8, 9, 10]
    assert upgrade_store(address) == ("0003", "0003")  # again: nothing to do


def test_the_upgrade_reverses_to_the_old_rows(tmp_path: Path) -> None:
    from alembic import command

    from regimelab.store import _config

    address = old_store(tmp_path)
    upgrade_store(address)
    engine = sa.create_engine(address)
    with engine.begin() as conn:
        command.downgrade(_config(conn), "0001")
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM predictions")] == OLD_ROWS


def test_not_a_prediction_store_is_not_upgraded(tmp_path: Path) -> None:
    engine = sa.create_engine(url(tmp_path))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE predictions (id INTEGER PRIMARY KEY, x TEXT)")
    with pytest.raises(StoreError, match="columns id, x; not a regimelab prediction store"):
        upgrade_store(url(tmp_path))


def test_the_cli_upgrades_an_older_store(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    address = old_store(tmp_path)
    assert main(["history", "--store", address]) == 2
    refused = capsys.readouterr().err.strip().splitlines()
    assert refused[-1].startswith("error: prediction store ") and refused[-1].endswith(
        f"run `regimelab store upgrade --store '{address}'` once")
    assert main(["store", "upgrade", "--store", address]) == 0
    assert capsys.readouterr().out == f"{address}: schema unversioned or new -> 0003\n"
    assert main(["history", "--csv", "--store", address]) == 0
    assert len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == 2
