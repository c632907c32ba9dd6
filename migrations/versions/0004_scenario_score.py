"""scenario score

Each held-out scenario's probability of a right first token from the chosen held-out predictor
(``scenarios.predicted_correct``; null elsewhere), for the scenario list and its export.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 02:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scenarios") as batch:
        batch.add_column(sa.Column("predicted_correct", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scenarios") as batch:
        batch.drop_column("predicted_correct")
