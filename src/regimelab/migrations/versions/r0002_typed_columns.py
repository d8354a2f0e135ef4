"""Typed columns: timezone-aware times, JSON probabilities, an index on (model, symbol).

PostgreSQL converts the columns in place (``ALTER ... USING``). SQLite cannot
change a column's type: the table is rebuilt, its rows copied in pages by id
and converted in Python (exactly: pandas parses any ISO-8601 time the old store
wrote), keeping their ids.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

INDEX = "ix_predictions_model_symbol"
_PAGE = 10_000
# In SQL a bare "timestamp" is the type's name.
_TIMES = {"predicted_at": "predicted_at", "timestamp": '"timestamp"'}


def _columns(time: sa.types.TypeEngine[Any], probabilities: sa.types.TypeEngine[Any]
             ) -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("predicted_at", time, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("model", sa.String(512), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("timestamp", time, nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("probabilities", probabilities, nullable=False),
    ]


def _rebuild(columns: list[sa.Column[Any]], convert: Callable[[dict[str, Any]], dict[str, Any]]
             ) -> None:
    """Replace the table by one with ``columns``, each row passed through ``convert``."""
    conn = op.get_bind()
    op.rename_table("predictions", "predictions_old")
    old = sa.Table("predictions_old", sa.MetaData(), autoload_with=conn)
    new = op.create_table("predictions", *columns)
    last = -1
    while True:
        rows = conn.execute(sa.select(old).where(old.c.id > last).order_by(old.c.id)
                            .limit(_PAGE)).mappings().all()
        if not rows:
            break
        conn.execute(new.insert(), [convert(dict(row)) for row in rows])
        last = rows[-1]["id"]
    op.drop_table("predictions_old")


def _utc(text: str) -> datetime:
    """An ISO-8601 time of the old store as a naive UTC datetime (a naive one is UTC)."""
    stamp = pd.Timestamp(text)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.tz_localize(None).to_pydatetime(warn=False)


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "predicted_at": _utc(row["predicted_at"]), "timestamp": _utc(row["timestamp"]),
            "probabilities": json.loads(row["probabilities"])}


def _text(row: dict[str, Any]) -> dict[str, Any]:
    def iso(value: datetime, **kwargs: str) -> str:
        return value.replace(tzinfo=UTC).isoformat(**kwargs)

    return {**row, "predicted_at": iso(row["predicted_at"], timespec="milliseconds"),
            "timestamp": iso(row["timestamp"]),
            "probabilities": json.dumps(row["probabilities"])}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column, sql in _TIMES.items():
            op.alter_column("predictions", column, type_=sa.DateTime(timezone=True),
                            existing_type=sa.String(32), existing_nullable=False,
                            postgresql_using=f"{sql}::timestamptz")
        op.alter_column("predictions", "probabilities", type_=sa.JSON(),
                        existing_type=sa.Text(), existing_nullable=False,
                        postgresql_using="probabilities::json")
    else:
        _rebuild(_columns(sa.DateTime(timezone=True), sa.JSON()), _typed)
    op.create_index(INDEX, "predictions", ["model", "symbol"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="predictions")
    if op.get_bind().dialect.name == "postgresql":
        for column, sql in _TIMES.items():
            # The old store's isoformat(): milliseconds for predicted_at, seconds for bars.
            fraction = ".MS" if column == "predicted_at" else ""
            op.alter_column("predictions", column, type_=sa.String(32),
                            existing_type=sa.DateTime(timezone=True), existing_nullable=False,
                            postgresql_using=(f"to_char({sql} AT TIME ZONE 'UTC', "
                                              f"'YYYY-MM-DD\"T\"HH24:MI:SS{fraction}') "
                                              "|| '+00:00'"))
        op.alter_column("predictions", "probabilities", type_=sa.Text(),
                        existing_type=sa.JSON(), existing_nullable=False,
                        postgresql_using="probabilities::text")
    else:
        _rebuild(_columns(sa.String(32), sa.Text()), _text)
