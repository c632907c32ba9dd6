"""cluster centers

Each cluster's medoid vector and assignment radius (``clusters.center``, ``clusters.radius``;
null for the noise), written in the transaction of the head's other rows. They were kept in
the run folder's ``atlas/assign.npz``, rewritten whole after every head; heads clustered before
this revision have none and are clustered again by the next ``apmae cluster``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 05:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(sa.Column("center", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("radius", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.drop_column("radius")
        batch.drop_column("center")
