"""atlas

Every table of the pattern atlas: runs, scenarios, heads, clusters, memberships, predictors,
sweep_points.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 04:56:23.238661
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), nullable=False)


def _run_id() -> sa.Column:
    return sa.Column("run_id", sa.Integer(), nullable=False)


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f(f"fk_{table}_run_id_runs"),
                                   ondelete="CASCADE")


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        "runs",
        _id(),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("tokenizer", sa.String(), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("layers", sa.Integer(), nullable=False),
        sa.Column("heads", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_name"), "runs", ["name"], unique=True)

    op.create_table(
        "scenarios",
        _id(),
        _run_id(),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("split", sa.String(), nullable=True),
        sa.Column("start", sa.Integer(), nullable=True),
        sa.Column("end", sa.Integer(), nullable=True),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("completion", sa.Text(), nullable=False),
        sa.Column("correct_exact", sa.Boolean(), nullable=False),
        sa.Column("correct_first_token", sa.Boolean(), nullable=False),
        sa.Column("logprob_target_first", sa.Float(), nullable=True),
        _run_fk("scenarios"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scenarios")),
        sa.UniqueConstraint("run_id", "key", name=op.f("uq_scenarios_run_id_key")),
    )
    op.create_index(op.f("ix_scenarios_run_id"), "scenarios", ["run_id"])
    op.create_index(op.f("ix_scenarios_task"), "scenarios", ["task"])

    op.create_table(
        "heads",
        _id(),
        _run_id(),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("head", sa.Integer(), nullable=False),
        sa.Column("n_clusters", sa.Integer(), nullable=False),
        sa.Column("noise_share", sa.Float(), nullable=False),
        sa.Column("importance", sa.Float(), nullable=True),
        _run_fk("heads"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_heads")),
        sa.UniqueConstraint("run_id", "layer", "head", name=op.f("uq_heads_run_id_layer_head")),
    )

    op.create_table(
        "clusters",
        _id(),
        sa.Column("head_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("medoid_scenario_id", sa.Integer(), nullable=True),
        sa.Column("exemplars", sa.JSON(), nullable=False),
        sa.Column("by_task", sa.JSON(), nullable=False),
        sa.Column("by_correct", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["head_id"], ["heads.id"], name=op.f("fk_clusters_head_id_heads"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["medoid_scenario_id"], ["scenarios.id"],
                                name=op.f("fk_clusters_medoid_scenario_id_scenarios"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clusters")),
        sa.UniqueConstraint("head_id", "label", name=op.f("uq_clusters_head_id_label")),
    )
    op.create_index(op.f("ix_clusters_head_id"), "clusters", ["head_id"])

    op.create_table(
        "memberships",
        sa.Column("scenario_id", sa.Integer(), nullable=False),
        sa.Column("head_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("x", sa.Float(), nullable=False),
        sa.Column("y", sa.Float(), nullable=False),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["scenario_id"], ["scenarios.id"],
                                name=op.f("fk_memberships_scenario_id_scenarios"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["head_id"], ["heads.id"],
                                name=op.f("fk_memberships_head_id_heads"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("scenario_id", "head_id", name=op.f("pk_memberships")),
    )
    op.create_index(op.f("ix_memberships_head_id_label"), "memberships", ["head_id", "label"])

    op.create_table(
        "predictors",
        _id(),
        _run_id(),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("features", sa.String(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        _created_at(),
        _run_fk("predictors"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictors")),
        sa.UniqueConstraint("run_id", "task", "features",
                            name=op.f("uq_predictors_run_id_task_features")),
    )

    op.create_table(
        "sweep_points",
        _id(),
        _run_id(),
        sa.Column("strategy", sa.String(), nullable=False),
        sa.Column("n_heads", sa.Integer(), nullable=False),
        sa.Column("repeat", sa.Integer(), server_default="0", nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=False),
        sa.Column("accuracy_exact", sa.Float(), nullable=True),
        sa.Column("incorrect_to_correct", sa.Integer(), nullable=False),
        sa.Column("correct_to_incorrect", sa.Integer(), nullable=False),
        sa.Column("loss_change", sa.Float(), nullable=True),
        sa.Column("heads", sa.JSON(), nullable=False),
        _run_fk("sweep_points"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweep_points")),
        sa.UniqueConstraint("run_id", "strategy", "n_heads", "repeat",
                            name=op.f("uq_sweep_points_run_id_strategy_n_heads_repeat")),
    )


def downgrade() -> None:
    """Drop children before parents; a table's indexes go with it."""
    for table in ("sweep_points", "predictors", "memberships", "clusters", "heads", "scenarios",
                  "runs"):
        op.drop_table(table)
