"""Heads and their clusters: the grid, a head's clusters described and filtered, its map, mean
pattern and nearest heads, and each cluster's members."""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from apmae.atlas.describe import METRICS, describe, enrichment, summarize
from apmae.atlas.similar import Incomparable, SimilarError, mean_embeddings, nearest, profiles
from apmae.db import models as m
from apmae.db.session import session_scope
from apmae.heatmap import FLOOR, difference_matrix, log10_matrix
from apmae.run import Run

from ..deps import (
    INT32,
    ExplorerDep,
    PathInt,
    QueryInt,
    SessionDep,
    filtered,
    head_row,
    run_id,
)
from ..schemas import (
    ClusterDetailOut,
    HeadDetailOut,
    HeadEffectsOut,
    HeadSummary,
    MapOut,
    PatternOut,
    SimilarOut,
    errors,
)
from ..state import Explorer
from .scenarios import prompt_tokens, scenario_out, stored_pattern

router = APIRouter(prefix="/api", tags=["heads"])


def _causal(session: Session, rid: int, task: str = "all") -> dict[tuple[int, int], m.HeadEffect]:
    return {(e.layer, e.head): e for e in session.scalars(select(m.HeadEffect).where(
        m.HeadEffect.run_id == rid, m.HeadEffect.task == task,
        m.HeadEffect.measure == "causal_accuracy"))}


def _effect_fields(e: m.HeadEffect | None) -> dict:
    """A head's pooled causal effect, and whether the explorer suggests ablating it: its
    single ablation raised train-split accuracy, interval above zero."""
    return {"causal_accuracy": e.value if e else None,
            "causal_accuracy_ci": [e.lo, e.hi] if e else None,
            "suggested_ablation": bool(e and e.lo > 0)}


@router.get("/heads", response_model=list[HeadSummary], responses=errors(404))
def heads(state: ExplorerDep, session: SessionDep) -> list[dict]:
    """Every head with its clustering summary, its SHAP in the correctness predictor
    (``importance``) and its causal single-ablation effect: the layer × head grid."""
    rid = run_id(state)
    causal = _causal(session, rid)
    return [{"layer": h.layer, "head": h.head, "n_clusters": h.n_clusters,
             "noise_share": h.noise_share, "importance": h.importance,
             **_effect_fields(causal.get((h.layer, h.head)))}
            for h in session.scalars(select(m.Head).where(m.Head.run_id == rid)
                                     .order_by(m.Head.layer, m.Head.head))]


@router.get("/head-effects", response_model=HeadEffectsOut, responses=errors(404, 422))
def head_effects(state: ExplorerDep, session: SessionDep, task: str = "all") -> dict:
    """Per head, every measure of how much it matters for ``task`` (``all``: pooled): SHAP in
    the correctness predictor and the causal effect of ablating it alone, each with its 95%
    interval and the number of train-split scenarios it was measured on."""
    rid = run_id(state)
    e = m.HeadEffect
    rows = session.scalars(select(e).where(e.run_id == rid, e.task == task)
                           .order_by(e.measure, e.layer, e.head)).all()
    tasks = session.scalars(select(e.task).where(e.run_id == rid).distinct().order_by(e.task)).all()
    if not rows and task not in tasks:
        raise HTTPException(404, f"no head effects for task {task!r} (tasks: {', '.join(tasks)}); "
                                 "run `apmae predictor train` and `apmae sweep`")
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r.measure, []).append({"layer": r.layer, "head": r.head, "value": r.value,
                                              "ci": [r.lo, r.hi], "n": r.n})
    return {"task": task, "tasks": tasks, "measures": out}


def _labels(session: Session, head_id: int) -> dict[str, int]:
    """Scenario key -> the head's cluster for it."""
    return dict(session.execute(select(m.Scenario.key, m.Membership.label)
                                .join(m.Membership, m.Membership.scenario_id == m.Scenario.id)
                                .where(m.Membership.head_id == head_id)).all())


def _enrichment(clusters: list[m.Cluster]) -> dict[int, dict]:
    return enrichment({c.label: c.by_task for c in clusters},
                      {c.label: c.by_correct.get("correct", 0) for c in clusters})


def _metrics(state: Explorer, session: Session, h: m.Head) -> tuple[dict, dict[int, dict]]:
    """The head's pattern metrics and each cluster's, from its kept patterns."""
    entry = state.head_patterns(h.layer, h.head, _labels(session, h.id))
    per = entry["metrics"]
    return summarize(per), {int(g): summarize(per[entry["labels"] == g])
                            for g in entry["cluster_labels"]}


def _matching(session: Session, head_id: int, task: str | None, correct: bool | None
              ) -> dict[int, int] | None:
    """Per cluster, the members that pass the task / correctness filter; None without one."""
    if not task and correct is None:
        return None
    q = (select(m.Membership.label, func.count()).join(m.Scenario, m.Scenario.id == m.Membership.scenario_id)
         .where(m.Membership.head_id == head_id).group_by(m.Membership.label))
    return dict(session.execute(filtered(q, task, correct)).all())


def _cluster_out(c: m.Cluster, medoid_key: str | None, enriched: dict, metrics: dict | None,
                 reference: dict | None, matching: dict[int, int] | None = None) -> dict:
    return {"id": c.id, "label": c.label, "size": c.size, "medoid": medoid_key,
            "exemplars": c.exemplars, "by_task": c.by_task, "by_correct": c.by_correct,
            "enrichment": enriched, "metrics": metrics,
            "description": describe(metrics, reference) if metrics else None,
            "matching": None if matching is None else matching.get(c.label, 0)}


#: ``metrics=false`` skips reading the head's kept patterns (for a page that needs only clusters).
METRICS_QUERY = Query(True, description="pattern metrics and descriptions, read from the head's "
                                        "kept patterns (slower on a head's first request)")


@router.get("/heads/{layer}/{head}", response_model=HeadDetailOut, responses=errors(404, 422))
def head_detail(state: ExplorerDep, session: SessionDep, layer: PathInt, head: PathInt,
                task: str | None = None, correct: bool | None = None,
                metrics: bool = METRICS_QUERY) -> dict:
    """One head: summary, pattern metrics and clusters (largest first), each with medoid,
    exemplars, mix, enrichment against the head, metrics and a description; with ``task`` or
    ``correct``, how many of each cluster's members pass that filter (``matching``)."""
    h = head_row(session, run_id(state), layer, head)
    rows = session.execute(select(m.Cluster, m.Scenario.key)
                           .outerjoin(m.Scenario, m.Scenario.id == m.Cluster.medoid_scenario_id)
                           .where(m.Cluster.head_id == h.id).order_by(m.Cluster.size.desc())).all()
    enriched = _enrichment([c for c, _ in rows])
    whole, per = _metrics(state, session, h) if metrics else (None, {})
    matching = _matching(session, h.id, task, correct)
    return {"layer": layer, "head": head, "n_clusters": h.n_clusters, "noise_share": h.noise_share,
            "importance": h.importance, **_effect_fields(_causal(session, h.run_id).get((layer, head))),
            "metrics": whole, "description": describe(whole) if whole else None,
            "matching_total": None if matching is None else sum(matching.values()),
            "clusters": [_cluster_out(c, key, enriched[c.label], per.get(c.label, summarize(np.empty((0, len(METRICS)))))
                                      if metrics else None, whole, matching) for c, key in rows]}


@router.get("/heads/{layer}/{head}/map", response_model=MapOut, responses=errors(404, 422))
def head_map(state: ExplorerDep, session: SessionDep, layer: PathInt, head: PathInt,
             task: str | None = None, correct: bool | None = None) -> dict:
    """The head's 2-D map: one point per scenario with its cluster, task and correctness; and
    per cluster how many of its members pass the filter."""
    h = head_row(session, run_id(state), layer, head)
    q = (select(m.Membership.x, m.Membership.y, m.Membership.label, m.Scenario.key,
                m.Scenario.task, m.Scenario.correct_first_token, m.Scenario.target,
                m.Scenario.completion)
         .join(m.Scenario, m.Scenario.id == m.Membership.scenario_id)
         .where(m.Membership.head_id == h.id))
    cols = ("x", "y", "cluster", "key", "task", "correct", "target", "completion")
    points = [dict(zip(cols, row)) for row in session.execute(filtered(q, task, correct))]
    matching = _matching(session, h.id, task, correct)
    counts = [{"label": label, "size": size,
               "matching": size if matching is None else matching.get(label, 0)}
              for label, size in session.execute(select(m.Cluster.label, m.Cluster.size)
                                                 .where(m.Cluster.head_id == h.id)
                                                 .order_by(m.Cluster.size.desc()))]
    return {"layer": layer, "head": head, "points": points, "counts": counts}


def _mean_pattern(layer: int, head: int, probs: np.ndarray, n: int) -> dict:
    return {"layer": layer, "head": head, "tokens": [], "floor": FLOOR, "scale": "log10", "n": n,
            "z": log10_matrix(np.log(np.maximum(probs, 1e-30)))}


@router.get("/heads/{layer}/{head}/mean-pattern", response_model=PatternOut, responses=errors(404, 422))
def head_mean_pattern(state: ExplorerDep, session: SessionDep, layer: PathInt, head: PathInt,
                      cluster: QueryInt = None) -> dict:
    """The head's mean attention weights over its kept patterns (``cluster``: over that
    cluster's kept members), as log10: what a medoid is read against. ``n`` patterns."""
    h = head_row(session, run_id(state), layer, head)
    entry = state.head_patterns(layer, head, _labels(session, h.id))
    if cluster is None:
        probs, n = entry["mean"], len(entry["keys"])
    else:
        at = np.flatnonzero(entry["cluster_labels"] == cluster)
        probs, n = (entry["cluster_means"][at[0]], int(entry["cluster_n"][at[0]])) if len(at) else (None, 0)
    if not n:
        raise HTTPException(404, f"head [{layer}, {head}]" + (f" cluster {cluster}" if cluster is not None else "")
                            + " has no kept patterns (the run keeps a sample: `apmae extract --keep`)")
    return _mean_pattern(layer, head, probs, n)


def _cluster_row(session: Session, rid: int, cluster_id: int) -> tuple[m.Cluster, m.Head]:
    row = session.execute(select(m.Cluster, m.Head).join(m.Head, m.Head.id == m.Cluster.head_id)
                          .where(m.Cluster.id == cluster_id, m.Head.run_id == rid)).first()
    if row is None:
        raise HTTPException(404, f"no cluster {cluster_id} in this run")
    return row


@router.get("/clusters/{cluster_id}", response_model=ClusterDetailOut, responses=errors(404, 422))
def cluster_detail(state: ExplorerDep, session: SessionDep, cluster_id: PathInt,
                   limit: int = Query(50, ge=1, le=500),
                   offset: int = Query(0, ge=0, le=INT32["le"]), metrics: bool = METRICS_QUERY) -> dict:
    """A cluster with its head, exemplars, enrichment, pattern metrics against the head's and a
    page of member scenarios."""
    c, h = _cluster_row(session, run_id(state), cluster_id)
    medoid = session.scalar(select(m.Scenario.key).where(m.Scenario.id == c.medoid_scenario_id))
    members = session.scalars(select(m.Scenario).join(m.Membership, m.Membership.scenario_id == m.Scenario.id)
                              .where(m.Membership.head_id == h.id, m.Membership.label == c.label)
                              .order_by(m.Scenario.key).offset(offset).limit(limit)).all()
    enriched = _enrichment(session.scalars(select(m.Cluster).where(m.Cluster.head_id == h.id)).all())
    whole, per = _metrics(state, session, h) if metrics else (None, {})
    own = per.get(c.label, summarize(np.empty((0, len(METRICS))))) if metrics else None
    return {**_cluster_out(c, medoid, enriched[c.label], own, whole), "layer": h.layer,
            "head": h.head, "members": [scenario_out(s) for s in members], "offset": offset,
            "limit": limit}


@router.get("/clusters/{cluster_id}/difference-pattern", response_model=PatternOut,
            responses=errors(404, 422, 503, 504))
async def cluster_difference(cluster_id: PathInt, state: ExplorerDep) -> dict:
    """The cluster's medoid minus the head's mean pattern, in attention weight (scale
    ``difference``: positive where the medoid attends more than the head does on average)."""
    layer, head, medoid, labels = await run_in_threadpool(_cluster_lookup, state, cluster_id)
    if medoid is None:
        raise HTTPException(404, f"cluster {cluster_id} has no medoid (it is the noise)")
    packed = await stored_pattern(state, medoid, layer, head)
    entry = await run_in_threadpool(state.head_patterns, layer, head, labels)
    if not len(entry["keys"]):
        raise HTTPException(404, f"head [{layer}, {head}] has no kept patterns to average")
    tokens = prompt_tokens(state, medoid)
    return {"layer": layer, "head": head, "tokens": tokens, "floor": -1.0, "scale": "difference",
            "n": len(entry["keys"]), "z": difference_matrix(np.exp(packed), entry["mean"])}


def _cluster_lookup(state: Explorer, cluster_id: int) -> tuple[int, int, str | None, dict[str, int]]:
    with session_scope(state.engine) as session:
        c, h = _cluster_row(session, run_id(state), cluster_id)
        medoid = session.scalar(select(m.Scenario.key).where(m.Scenario.id == c.medoid_scenario_id))
        return h.layer, h.head, medoid, _labels(session, h.id)


#: A run's name as ``apmae`` writes it: no path separators, no leading dot.
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _vectors(state: Explorer, run: Run, by: str):
    """A run's head vectors by ``by`` (cached per run for the server's life)."""
    key = (run.name, by)
    if key not in state.similar:
        state.similar[key] = (mean_embeddings if by == "embedding" else profiles)(run)
    return state.similar[key]


@router.get("/heads/{layer}/{head}/similar", response_model=SimilarOut, responses=errors(404, 422))
def similar_heads(state: ExplorerDep, layer: PathInt, head: PathInt,
                  run: str | None = Query(None, max_length=100, description="another run to search "
                                          "(its model may differ); default: this run"),
                  k: int = Query(10, ge=1, le=200),
                  by: Literal["embedding", "profile"] | None = Query(None, description="default: "
                      "embedding when both runs were embedded by one AP-MAE (always within a "
                      "run), else profile")) -> dict:
    """The ``k`` heads nearest to this one by the distribution of their patterns
    (apmae.atlas.similar), in this run or in ``run``."""
    meta = state.run.meta()
    if not (0 <= layer < meta.get("layers", 0) and 0 <= head < meta.get("heads", 0)):
        raise HTTPException(404, f"no head [{layer}, {head}] in run {state.run.name}")
    other = state.run
    if run not in (None, state.run.name):
        if not RUN_NAME.match(run):
            raise HTTPException(422, f"run: {run!r} is not a run name (letters, digits, . _ -)")
        other = Run(run)
        if not other.meta().get("layers"):
            raise HTTPException(404, f"no extracted run named {run!r}")
    if by is None:
        try:
            same = _vectors(state, state.run, "embedding").source == _vectors(state, other, "embedding").source
        except SimilarError:  # a run without embeddings still has profiles
            same = False
        by = "embedding" if same else "profile"
    try:
        mine, theirs = _vectors(state, state.run, by), _vectors(state, other, by)
        items = nearest(mine, layer, head, theirs if other is not state.run else mine, k, by)
    except SimilarError as e:
        raise HTTPException(422 if isinstance(e, Incomparable) else 404, str(e)) from None
    return {"layer": layer, "head": head, "run": state.run.name, "other_run": other.name, "by": by,
            "n": mine.n, "other_n": theirs.n, "items": items}
