"""The prediction store: every inferred or served regime, appended to a database.

SQLite by default (``predictions.db`` in the working folder, or
``$REGIMELAB_STORE``); any SQLAlchemy URL (``postgresql://…``) shares one store
between machines. One row per bar and model: when it was predicted, the model
and its version, the bar, the state and the probabilities (JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from regimelab.exceptions import RegimelabError

DEFAULT_URL = "sqlite:///predictions.db"
ENV = "REGIMELAB_STORE"

_META = sa.MetaData()
PREDICTIONS = sa.Table(
    "predictions", _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("predicted_at", sa.String(32), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # infer, now or serve
    sa.Column("model", sa.String(512), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("timestamp", sa.String(32), nullable=False),
    sa.Column("state", sa.Integer, nullable=False),
    sa.Column("probabilities", sa.Text, nullable=False),
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


class PredictionStore:
    """Appends predictions to, and reads them back from, one database."""

    def __init__(self, url: str | None = None) -> None:
        self.url = store_url(url)
        try:
            self.engine = sa.create_engine(self.url)
            if self.engine.dialect.name == "sqlite":
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            _META.create_all(self.engine)
        except (SQLAlchemyError, ValueError) as exc:
            raise StoreError(f"prediction store {self.url}: cannot open it ({_reason(exc)})"
                             ) from None

    def append(self, rows: pd.DataFrame | list[dict[str, Any]], *, source: str, model: str,
               version: str) -> int:
        """Add one row per bar: a table or records with ``timestamp``, ``symbol``,
        ``state`` and the ``p_filter_k`` probabilities; returns the number of rows.

        The service appends one record a request, which as records costs a tenth
        of a millisecond and as a DataFrame a few milliseconds of pandas.
        """
        if isinstance(rows, pd.DataFrame):
            proba = [c for c in rows.columns if c.startswith("p_filter_")]
            records: Iterable[tuple[Any, Any, Any, Any]] = zip(
                rows["symbol"], rows["timestamp"], rows["state"], rows[proba].to_numpy())
        else:
            records = ((r["symbol"], r["timestamp"], r["state"],
                        [p for key, p in r.items() if key.startswith("p_filter_")])
                       for r in rows)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        values = [
            {"predicted_at": now, "source": source, "model": model, "model_version": version,
             "symbol": str(sym), "timestamp": ts.isoformat(), "state": int(state),
             "probabilities": json.dumps([round(float(p), 6) for p in probs])}
            for sym, ts, state, probs in records]
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
        """The stored predictions, oldest first (the last ``limit`` of them)."""
        query = sa.select(PREDICTIONS).order_by(PREDICTIONS.c.id.desc())
        if model:
            query = query.where(PREDICTIONS.c.model == model)
        if symbol:
            query = query.where(PREDICTIONS.c.symbol == symbol)
        if limit:
            query = query.limit(limit)
        try:
            with self.engine.connect() as conn:
                frame = pd.read_sql(query, conn)
        except SQLAlchemyError as exc:
            raise StoreError(f"prediction store {self.url}: cannot read ({_reason(exc)})"
                             ) from None
        return frame.iloc[::-1].reset_index(drop=True)
