"""predictor protocol

Predictor rows name how they were measured: ``kfold`` (out-of-fold scores per task, the
paper's balanced design) or ``heldout`` (fitted on the train split, scored on the held-out
split); one row per run, protocol, task and feature kind.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 22:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("predictors") as batch:
        batch.add_column(sa.Column("protocol", sa.String(), nullable=False, server_default="kfold"))
        batch.drop_constraint(op.f("uq_predictors_run_id_task_features"), type_="unique")
        batch.create_unique_constraint(op.f("uq_predictors_run_id_protocol_task_features"),
                                       ["run_id", "protocol", "task", "features"])


def downgrade() -> None:
    op.execute("DELETE FROM predictors WHERE protocol <> 'kfold'")
    with op.batch_alter_table("predictors") as batch:
        batch.drop_constraint(op.f("uq_predictors_run_id_protocol_task_features"), type_="unique")
        batch.create_unique_constraint(op.f("uq_predictors_run_id_task_features"),
                                       ["run_id", "task", "features"])
        batch.drop_column("protocol")
