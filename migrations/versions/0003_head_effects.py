"""head effects and interventions

Per task, each head's SHAP and causal single-ablation effects with intervals
(``head_effects``), and the selective interventions tested on held-out scenarios
(``interventions``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _run_columns(table: str) -> list:
    return [sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("run_id", sa.Integer(), nullable=False),
            sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f(f"fk_{table}_run_id_runs"),
                                    ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}"))]


def upgrade() -> None:
    op.create_table(
        "head_effects", *_run_columns("head_effects"),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("measure", sa.String(), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("head", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("lo", sa.Float(), nullable=False),
        sa.Column("hi", sa.Float(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.UniqueConstraint("run_id", "task", "measure", "layer", "head",
                            name=op.f("uq_head_effects_run_id_task_measure_layer_head")))
    op.create_table(
        "interventions", *_run_columns("interventions"),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("heads", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.UniqueConstraint("run_id", "task", "method", "size",
                            name=op.f("uq_interventions_run_id_task_method_size")))


def downgrade() -> None:
    op.drop_table("interventions")
    op.drop_table("head_effects")
