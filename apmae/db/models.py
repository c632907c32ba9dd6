"""The atlas's tables (SQLAlchemy 2 typed declarative).

Only portable column types, so one schema serves SQLite and PostgreSQL; every constraint and
index is named by ``NAMING`` so Alembic migrations render and compare deterministically. A run's
rows hang off it with ``ON DELETE CASCADE``: deleting the run removes them in the database,
without loading them into the session.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _run_fk(index: bool = False) -> Mapped[int]:
    return mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=index)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class Run(Base):
    """One analysed model over one set of scenarios (mirrors the run folder's ``run.json``)."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True, index=True)
    model: Mapped[str] = mapped_column(String)
    tokenizer: Mapped[str] = mapped_column(String)  # the tokenizer's fingerprint
    window: Mapped[int] = mapped_column(Integer)
    layers: Mapped[int] = mapped_column(Integer)
    heads: Mapped[int] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)  # configs and seeds of every stage
    created_at: Mapped[datetime] = _created_at()


class Scenario(Base):
    """One completion scenario and how the model did on it (a line of ``results.jsonl``)."""

    __tablename__ = "scenarios"
    __table_args__ = (UniqueConstraint("run_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk(index=True)
    key: Mapped[str] = mapped_column(String)  # the scenario id in results.jsonl
    task: Mapped[str] = mapped_column(String, index=True)
    path: Mapped[str] = mapped_column(String)
    split: Mapped[str | None] = mapped_column(String)
    start: Mapped[int | None] = mapped_column(Integer)
    end: Mapped[int | None] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(Text)
    completion: Mapped[str] = mapped_column(Text)
    correct_exact: Mapped[bool] = mapped_column(Boolean)
    correct_first_token: Mapped[bool] = mapped_column(Boolean)
    logprob_target_first: Mapped[float | None] = mapped_column(Float)
    # the held-out predictor's probability of a right first token (apmae.atlas.heldout): only
    # for held-out scenarios, which its fit never saw; null on the train split and the noise
    predicted_correct: Mapped[float | None] = mapped_column(Float)


class Head(Base):
    """One attention head of a run, with the summary of its clustering."""

    __tablename__ = "heads"
    __table_args__ = (UniqueConstraint("run_id", "layer", "head"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    layer: Mapped[int] = mapped_column(Integer)
    head: Mapped[int] = mapped_column(Integer)
    n_clusters: Mapped[int] = mapped_column(Integer)
    noise_share: Mapped[float] = mapped_column(Float)
    importance: Mapped[float | None] = mapped_column(Float)


class Cluster(Base):
    """One cluster of a head's patterns; label -1 is the noise."""

    __tablename__ = "clusters"
    __table_args__ = (UniqueConstraint("head_id", "label"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    head_id: Mapped[int] = mapped_column(ForeignKey("heads.id", ondelete="CASCADE"), index=True)
    label: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    medoid_scenario_id: Mapped[int | None] = mapped_column(
        ForeignKey("scenarios.id", ondelete="SET NULL"))
    exemplars: Mapped[list[str]] = mapped_column(JSON)  # scenario keys, best first
    by_task: Mapped[dict[str, int]] = mapped_column(JSON)  # {task: count}
    by_correct: Mapped[dict[str, int]] = mapped_column(JSON)  # {"correct": n, "incorrect": n}
    # what places a new pattern here (apmae.atlas.cluster.assign): the medoid's unit vector as
    # little-endian float32 bytes, and the cosine radius; null for the noise
    center: Mapped[bytes | None] = mapped_column(LargeBinary)
    radius: Mapped[float | None] = mapped_column(Float)


class Membership(Base):
    """Where one scenario's pattern of one head landed: its cluster and 2-D map position."""

    __tablename__ = "memberships"
    __table_args__ = (Index(None, "head_id", "label"),)
    scenario_id: Mapped[int] = mapped_column(
        ForeignKey("scenarios.id", ondelete="CASCADE"), primary_key=True)
    head_id: Mapped[int] = mapped_column(
        ForeignKey("heads.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[int] = mapped_column(Integer)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)


class Predictor(Base):
    """How well one feature set predicts correctness on one task (or "all")."""

    __tablename__ = "predictors"
    __table_args__ = (UniqueConstraint("run_id", "protocol", "task", "features"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    # "kfold": out-of-fold per task (the paper's balanced design); "heldout": fitted on the
    # train split, scored on the held-out split (apmae.atlas.heldout)
    protocol: Mapped[str] = mapped_column(String, default="kfold", server_default="kfold")
    task: Mapped[str] = mapped_column(String)
    features: Mapped[str] = mapped_column(String)  # a feature kind (apmae.atlas.heldout.KINDS, ...)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = _created_at()


class SweepPoint(Base):
    """One point of an ablation sweep: ``n_heads`` heads switched off by ``strategy``."""

    __tablename__ = "sweep_points"
    __table_args__ = (UniqueConstraint("run_id", "strategy", "n_heads", "repeat"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    strategy: Mapped[str] = mapped_column(String)
    n_heads: Mapped[int] = mapped_column(Integer)
    repeat: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    accuracy: Mapped[float] = mapped_column(Float)
    incorrect_to_correct: Mapped[int] = mapped_column(Integer)
    correct_to_incorrect: Mapped[int] = mapped_column(Integer)
    loss_change: Mapped[float | None] = mapped_column(Float)
    heads: Mapped[list[list[int]]] = mapped_column(JSON)  # [[layer, head], ...]


class HeadEffect(Base):
    """How much one head matters for one task (or "all"), by one measure of
    :mod:`apmae.atlas.importance` (``shap_abs``, ``shap``, ``causal_accuracy``,
    ``causal_logprob``), with its 95% bootstrap interval over ``n`` train-split scenarios."""

    __tablename__ = "head_effects"
    __table_args__ = (UniqueConstraint("run_id", "task", "measure", "layer", "head"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    task: Mapped[str] = mapped_column(String)
    measure: Mapped[str] = mapped_column(String)
    layer: Mapped[int] = mapped_column(Integer)
    head: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    lo: Mapped[float] = mapped_column(Float)
    hi: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)


class Intervention(Base):
    """One selective intervention tested on held-out scenarios (:mod:`apmae.atlas.intervention`):
    ``size`` heads chosen by ``method`` for ``task`` (or "all", pooled), their accuracy change
    with its interval and where it falls among random heads of equal count."""

    __tablename__ = "interventions"
    __table_args__ = (UniqueConstraint("run_id", "task", "method", "size"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    task: Mapped[str] = mapped_column(String)
    method: Mapped[str] = mapped_column(String)  # apmae.atlas.intervention.METHODS or "random"
    size: Mapped[int] = mapped_column(Integer)
    heads: Mapped[list[str]] = mapped_column(JSON)  # ["L1H4", ...]; conditional: "L1H4@3" (cluster 3)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
