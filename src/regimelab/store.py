"""The prediction store: every inferred or served regime, appended to a database.

SQLite by default (``predictions.db`` in the working folder, or
``$REGIMELAB_STORE``); any SQLAlchemy URL (``postgresql://…``) shares one store
between machines. One row per bar and model: when it was predicted, the model
and its version, the bar, the state and the probabilities (a JSON array), and
the next-regime forecasts made with it (JSON: ``now`` and ``serve`` answers'
``forecasts``, one entry per horizon; NULL for ``infer``).
Both times are timezone-aware UTC (PostgreSQL's ``timestamptz``; SQLite, which
has no such type, keeps UTC and reads it back as UTC). An index on
``(model, symbol)`` serves ``regimelab history --model … --symbol …``.

The schema is versioned with Alembic (the scripts in ``regimelab/migrations``,
in a version table of its own, so an Optuna study may share the database). A
new, empty database is given the current schema when a store is first opened.
A store made by an older regimelab is never changed behind its users' backs
(other machines may still be writing to it): opening it is a one-line error,
and ``regimelab store upgrade --store URL`` brings it up to date, keeping its
rows.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from regimelab.exceptions import RegimelabError
from regimelab.stage import quiet

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///predictions.db"
ENV = "REGIMELAB_STORE"
#: Alembic's version table for this schema: not ``alembic_version``, which Optuna's
#: storage uses for its own tables when a study shares the database.
VERSION_TABLE = "regimelab_store_version"
MIGRATIONS = "regimelab:migrations"
#: The revision whose schema the stores of regimelab before Alembic have, and its columns.
UNVERSIONED = "0001"
UNVERSIONED_COLUMNS = frozenset({"id", "predicted_at", "source", "model", "model_version",
                                 "symbol", "timestamp", "state", "probabilities"})


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime in and out, on any database.

    PostgreSQL keeps it as ``timestamptz``; a database without a time-zone type
    (SQLite) keeps the UTC wall time and it is read back as UTC. A naive
    datetime is taken to be UTC, as everywhere in regimelab.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect
                           ) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect
                             ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_META = sa.MetaData()
PREDICTIONS = sa.Table(
    "predictions", _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("predicted_at", UTCDateTime, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # infer, now or serve
    sa.Column("model", sa.String(512), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("timestamp", UTCDateTime, nullable=False),
    sa.Column("state", sa.Integer, nullable=False),
    sa.Column("probabilities", sa.JSON, nullable=False),
    # The forecasts per horizon of `now` and serve (revision 0003); NULL for infer.
    sa.Column("forecasts", sa.JSON(none_as_null=True), nullable=True),
    # `history` filters by model and symbol and orders by id (never by timestamp).
    sa.Index("ix_predictions_model_symbol", "model", "symbol"),
)


class StoreError(RegimelabError):
    """The prediction store cannot be opened, written or read."""


def _reason(exc: Exception) -> str:
    # SQLAlchemy appends a "(Background on this error ...)" line: keep the first.
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    # Write-ahead logging: an append is one write to the log, not a rewrite of the
    # journal and the file with an fsync each, and `regimelab history` can read while
    # the service writes. A crash of the machine (not of the process) can lose the
    # last appends, never corrupt the file.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def store_url(url: str | None = None) -> str:
    """``url``, else ``$REGIMELAB_STORE``, else a SQLite file in the working folder."""
    return url or os.environ.get(ENV) or DEFAULT_URL


def _engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration: the package's scripts, run on ``connection``."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    # r0001_name.py: a revision's file is a valid module name (mypy checks them).
    config.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The schema revision this regimelab writes."""
    return str(ScriptDirectory.from_config(_config()).get_current_head())


def _state(connection: sa.Connection) -> tuple[str | None, bool]:
    """The store's schema revision (None before Alembic) and whether it has a table."""
    with quiet("alembic"):
        context = MigrationContext.configure(connection,
                                             opts={"version_table": VERSION_TABLE})
    return context.get_current_revision(), sa.inspect(connection).has_table("predictions")


def _upgrade_command(url: str) -> str:
    return f"regimelab store upgrade --store '{url}'"


def _rounded(value: Any) -> Any:
    """A JSON value with every float kept to six decimals (None stays None: SQL NULL)."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {key: _rounded(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


class PredictionStore:
    """Appends predictions to, and reads them back from, one database."""

    def __init__(self, url: str | None = None) -> None:
        self.url = store_url(url)
        try:
            self.engine = _engine(self.url)
        except (SQLAlchemyError, ValueError) as exc:
            raise StoreError(f"prediction store {self.url}: cannot open it ({_reason(exc)})"
                             ) from None
        try:
            self._open()
        except (SQLAlchemyError, ValueError) as exc:
            self.engine.dispose()
            raise StoreError(f"prediction store {self.url}: cannot open it ({_reason(exc)})"
                             ) from None
        except StoreError:
            self.engine.dispose()  # no connection left for the garbage collector to close
            raise

    def _open(self) -> None:
        """Create the schema in an empty database; refuse one at another revision."""
        for attempt in range(2):
            with self.engine.connect() as conn:
                revision, has_table = _state(conn)
            if revision is not None or has_table:
                break
            try:
                with self.engine.begin() as conn, quiet("alembic"):
                    command.upgrade(_config(conn), "head")
                log.info("prediction store %s: created (schema %s)", self.url, head())
                return
            except SQLAlchemyError:
                if attempt:  # not another process creating it at the same moment
                    raise
        current = head()
        if revision == current:
            return
        known = {script.revision for script in
                 ScriptDirectory.from_config(_config()).walk_revisions()}
        if revision is not None and revision not in known:
            raise StoreError(f"prediction store {self.url}: schema revision {revision} is "
                             f"newer than this regimelab's ({current}); upgrade regimelab")
        raise StoreError(f"prediction store {self.url}: made by an older regimelab (schema "
                         f"{revision or 'before versioning'}, this one writes {current}); "
                         f"back it up and run `{_upgrade_command(self.url)}` once")

    def append(self, rows: pd.DataFrame | list[dict[str, Any]], *, source: str, model: str,
               version: str) -> int:
        """Add one row per bar: a table or records with ``timestamp``, ``symbol``,
        ``state``, the ``p_filter_k`` probabilities and optionally ``forecasts`` (JSON:
        :func:`~regimelab.forecast.apply.horizon_answers`); returns the number of rows.

        The service appends one record a request, which as records costs a tenth
        of a millisecond and as a DataFrame a few milliseconds of pandas. Every
        probability is kept to six decimals.
        """
        if isinstance(rows, pd.DataFrame):
            proba = [c for c in rows.columns if c.startswith("p_filter_")]
            forecasts = (rows["forecasts"] if "forecasts" in rows.columns
                         else [None] * len(rows))
            records: Iterable[tuple[Any, Any, Any, Any, Any]] = zip(
                rows["symbol"], rows["timestamp"], rows["state"], rows[proba].to_numpy(),
                forecasts)
        else:
            records = ((r["symbol"], r["timestamp"], r["state"],
                        [p for key, p in r.items() if key.startswith("p_filter_")],
                        r.get("forecasts")) for r in rows)
        now = datetime.now(UTC)
        values = [
            {"predicted_at": now, "source": source, "model": model, "model_version": version,
             "symbol": str(sym), "timestamp": pd.Timestamp(ts).to_pydatetime(warn=False),
             "state": int(state), "probabilities": [round(float(p), 6) for p in probs],
             "forecasts": _rounded(ahead)}
            for sym, ts, state, probs, ahead in records]
        try:
            with self.engine.begin() as conn:
                if values:
                    conn.execute(PREDICTIONS.insert(), values)
        except SQLAlchemyError as exc:
            raise StoreError(f"prediction store {self.url}: cannot write ({_reason(exc)})"
                             ) from None
        return len(values)

    def history(self, *, model: str | None = None, symbol: str | None = None,
                limit: int | None = None) -> pd.DataFrame:
        """The stored predictions, oldest first (the last ``limit`` of them): both times
        as UTC timestamps, the probabilities as lists."""
        query = sa.select(PREDICTIONS).order_by(PREDICTIONS.c.id.desc())
        if model:
            query = query.where(PREDICTIONS.c.model == model)
        if symbol:
            query = query.where(PREDICTIONS.c.symbol == symbol)
        if limit:
            query = query.limit(limit)
        try:
            with self.engine.connect() as conn:
                result = conn.execute(query)
                frame = pd.DataFrame(result.fetchall()[::-1], columns=list(result.keys()))
        except SQLAlchemyError as exc:
            raise StoreError(f"prediction store {self.url}: cannot read ({_reason(exc)})"
                             ) from None
        for column in ("predicted_at", "timestamp"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame


def upgrade_store(url: str | None = None) -> tuple[str | None, str]:
    """Bring a store's schema up to this regimelab's, keeping its rows; returns the
    revisions before and after (before is None for a store made before versioning,
    or for a new one).

    A store from before Alembic has revision ``0001``'s schema: it is marked as
    such, then upgraded.
    """
    url = store_url(url)
    engine: sa.Engine | None = None
    try:
        engine = _engine(url)
        with engine.begin() as conn:
            before, has_table = _state(conn)
            if before is None and has_table:
                columns = {c["name"] for c in sa.inspect(conn).get_columns("predictions")}
                if columns != UNVERSIONED_COLUMNS:
                    raise StoreError(f"prediction store {url}: its table predictions has "
                                     f"columns {', '.join(sorted(columns))}; not a regimelab "
                                     "prediction store")
                command.stamp(_config(conn), UNVERSIONED)
            command.upgrade(_config(conn), "head")
            after, _ = _state(conn)
    except (SQLAlchemyError, ValueError) as exc:
        raise StoreError(f"prediction store {url}: cannot upgrade it ({_reason(exc)})"
                         ) from None
    finally:
        if engine is not None:
            engine.dispose()
    return before, str(after)
