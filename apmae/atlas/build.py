"""What the atlas stages share as they write a run into SQL: the run and its scenarios
mirrored from the run's folder, each stage's settings, and the head-effect rows two stages fill.

The stages themselves, each the one writer of its rows, run in this order (each reads what
the one before wrote): :mod:`.cluster_stage` (``apmae cluster``), :mod:`.predictor_stage`
(``apmae predictor train``), :mod:`.sweep_stage` (``apmae sweep``). Each reads the run's folder,
computes with the pure functions of :mod:`apmae.atlas`, and writes in transactions with upserts
on natural keys, so a rerun after an interruption neither duplicates nor loses rows.
"""

from __future__ import annotations

import json

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ..db import models as m
from ..db.session import get_or_create_run, session_scope, upsert_rows
from ..run import Run
from .importance import HeadEffects


def sync_run(engine: Engine, run: Run) -> int:
    """Mirror the run and its scenarios' results into SQL; returns the SQL run id."""
    meta = run.meta()
    if "layers" not in meta:
        raise ValueError(f"run {run.name} has no extraction results (run `apmae extract` first)")
    scenarios = {s.id: s for s in run.scenarios()}
    with session_scope(engine) as session:
        known = session.scalar(select(m.Run.settings).where(m.Run.name == run.name))
        db_run = get_or_create_run(session, run.name, model=meta["model"], tokenizer=meta["tokenizer"],
                                   window=len(next(iter(scenarios.values())).input_ids),
                                   layers=meta["layers"], heads=meta["heads"], settings=known or {})
        rows = [{"run_id": db_run.id, "key": r["id"], "task": r["task"], "path": r["path"] or "",
                 "split": r["split"], "start": scenarios[r["id"]].start, "end": scenarios[r["id"]].end,
                 "target": scenarios[r["id"]].target, "completion": r["completion"],
                 "correct_exact": r["correct_exact"], "correct_first_token": r["correct_first_token"],
                 "logprob_target_first": r.get("logprob_target_first")}
                for r in run.results() if r["id"] in scenarios]
        upsert_rows(session, m.Scenario, rows, ["run_id", "key"],
                    ["completion", "correct_exact", "correct_first_token", "logprob_target_first"])
        return db_run.id


def set_settings(session: Session, run_id: int, **stage: object) -> None:
    """Record a stage's settings in the transaction that writes its rows: both land or neither."""
    db_run = session.get(m.Run, run_id)
    db_run.settings = {**(db_run.settings or {}), **stage}


#: What a stage records beside its settings: how much it used, not how it was asked to run.
USED = ("scenarios_used", "train_used", "heldout_used", "heads_measured", "heads_measured_by")


def run_settings(engine: Engine, run_name: str) -> dict:
    """Each stage's settings as it last recorded them, by stage (a stage is there once it has
    written its rows: both land in one transaction)."""
    with session_scope(engine) as session:
        return session.scalar(select(m.Run.settings).where(m.Run.name == run_name)) or {}


def settled(engine: Engine, run_name: str, **stages: dict) -> bool:
    """Whether each of ``stages`` last ran on this run with exactly these settings (settings
    land in the transaction of the stage's rows, so settled settings mean whole rows; a stage
    recorded by older code with other fields is not settled)."""
    stored = run_settings(engine, run_name)
    want = json.loads(json.dumps(stages))  # tuples as the JSON lists they were stored as
    return all(isinstance(stored.get(name), dict)
               and {k: v for k, v in stored[name].items() if k not in USED} == values
               for name, values in want.items())


def scenario_ids(engine: Engine, run_id: int) -> dict[str, int]:
    """The run's scenarios' SQL ids by key."""
    with session_scope(engine) as session:
        return dict(session.execute(select(m.Scenario.key, m.Scenario.id)
                                    .where(m.Scenario.run_id == run_id)).all())


def labels_of(engine: Engine, run_id: int, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Task and first-token correctness of the scenarios ``keys``, in that order."""
    with session_scope(engine) as session:
        rows = {k: (t, c) for k, t, c in session.execute(
            select(m.Scenario.key, m.Scenario.task, m.Scenario.correct_first_token)
            .where(m.Scenario.run_id == run_id))}
    return (np.array([rows[k][0] for k in keys]), np.array([bool(rows[k][1]) for k in keys]))


def store_effects(session: Session, run_id: int, effects: list[HeadEffects],
                  measures: tuple[str, ...], heads_per_layer: int) -> None:
    """Replace the run's ``measures`` rows by ``effects`` (the predictor stage writes the SHAP
    measures, the sweep stage the causal ones)."""
    session.execute(delete(m.HeadEffect).where(m.HeadEffect.run_id == run_id,
                                               m.HeadEffect.measure.in_(measures)))
    rows = [{"run_id": run_id, **r} for e in effects for r in e.rows(heads_per_layer)]
    if rows:
        session.execute(m.HeadEffect.__table__.insert(), rows)


def effects_of(engine: Engine, run_id: int) -> dict[tuple[str, str], HeadEffects]:
    """The run's stored head effects, ``{(measure, task): HeadEffects}``, NaN where a head has
    no row (a causal measure covers only the heads the sweep ablated)."""
    e = m.HeadEffect
    with session_scope(engine) as session:
        layers, heads = session.execute(select(m.Run.layers, m.Run.heads).where(m.Run.id == run_id)).one()
        rows = session.execute(select(e.measure, e.task, e.layer, e.head, e.value, e.lo, e.hi, e.n)
                               .where(e.run_id == run_id)).all()
    out: dict[tuple[str, str], HeadEffects] = {}
    for r in rows:
        if (r.measure, r.task) not in out:
            out[(r.measure, r.task)] = HeadEffects(r.measure, r.task, *np.full((3, layers * heads), np.nan),
                                                   r.n)
        effect, i = out[(r.measure, r.task)], r.layer * heads + r.head
        effect.value[i], effect.lo[i], effect.hi[i] = r.value, r.lo, r.hi
    return out
