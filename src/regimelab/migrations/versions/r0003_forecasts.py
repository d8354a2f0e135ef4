"""Forecasts: the next-regime forecasts made with a regime, stored on its row.

A nullable JSON column: ``regimelab now`` and the service store the answer's
``forecasts`` (one entry per horizon); ``infer`` and the rows written before
this revision have none (NULL). Adding a nullable column keeps every row, on
SQLite and PostgreSQL alike.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("forecasts", sa.JSON(), nullable=True))


def downgrade() -> None:
    # SQLite before 3.35 cannot drop a column: batch mode rebuilds the table there.
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("forecasts")
