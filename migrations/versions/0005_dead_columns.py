"""dead columns

``sweep_points.accuracy_exact`` (always written null: a sweep scores first tokens only) and
``memberships.probability`` (HDBSCAN's membership strength, never read) are dropped.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 03:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sweep_points") as batch:
        batch.drop_column("accuracy_exact")
    with op.batch_alter_table("memberships") as batch:
        batch.drop_column("probability")


def downgrade() -> None:
    with op.batch_alter_table("memberships") as batch:
        batch.add_column(sa.Column("probability", sa.Float(), nullable=True))
    with op.batch_alter_table("sweep_points") as batch:
        batch.add_column(sa.Column("accuracy_exact", sa.Float(), nullable=True))
