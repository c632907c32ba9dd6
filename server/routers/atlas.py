"""The built atlas, read-only: run overview and report, the layer × head grid, a head's
clusters and 2-D map, a cluster with its exemplars, scenarios with filters, stored patterns,
the ablation sweep."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session, aliased

from apmae.atlas.describe import METRICS, describe, enrichment, summarize
from apmae.atlas.similar import Incomparable, SimilarError, mean_embeddings, nearest, profiles
from apmae.atlas.sweep import STRATEGIES, collapse_points
from apmae.db import models as m
from apmae.db.session import session_scope
from apmae.heatmap import FLOOR, difference_matrix, log10_matrix, thumbnail_png
from apmae.report import build_report
from apmae.run import Run

from ..deps import db, explorer, run_id
from ..schemas import (
    ClusterDetailOut,
    ExportRow,
    HeadDetailOut,
    HeadEffectsOut,
    HeadSummary,
    HealthOut,
    InterventionsOut,
    MapOut,
    PatternOut,
    RunOut,
    ScenarioDetailOut,
    ScenarioOut,
    ScenarioPage,
    SimilarOut,
    SweepOut,
    errors,
)
from ..state import Explorer

router = APIRouter(prefix="/api", tags=["atlas"])

#: Integers that reach SQL, within its 32-bit INTEGER columns: a larger one is a 422 that says
#: so, not a database error (a 500).
INT32 = {"ge": -2**31, "le": 2**31 - 1}
PathInt = Annotated[int, Path(**INT32)]
QueryInt = Annotated[int | None, Query(**INT32)]


@router.get("/health", response_model=HealthOut)
def health(state: Explorer = Depends(explorer)) -> dict:
    """Liveness, and whether the run is loaded (``ready``) or what is missing (``problem``)."""
    return {"status": "ok", "run": state.run.name, "ready": state.atlas is not None,
            "problem": state.problem, "queue": state.pool.pending}


@router.get("/run", response_model=RunOut)
def run_overview(state: Explorer = Depends(explorer)) -> dict:
    """The run's report (model, per-task accuracy, AP-MAE evaluation, clusters, predictor,
    sweep), the model's shape, the tasks, and which atlas parts are missing."""
    if state.report is None:
        state.report = build_report(state.run, state.settings.database_url)
    atlas = state.atlas
    return {"report": state.report, "tasks": state.tasks, "ready": atlas is not None,
            "problem": state.problem, "missing": atlas.missing if atlas else [],
            "layers": atlas.target.layers if atlas else None,
            "heads": atlas.target.heads if atlas else None,
            "window": atlas.window if atlas else None,
            "model_card": "/api/model-card" if atlas and atlas.target.name == "default" else None}


@router.get("/model-card", response_class=Response,
            responses={200: {"content": {"text/markdown": {}}}, **errors(404)})
def model_card() -> Response:
    """The embedded default model's card (Markdown)."""
    from apmae.paths import DEFAULT_MODEL_DIR

    path = DEFAULT_MODEL_DIR / "README.md"
    if not path.exists():
        raise HTTPException(404, "the embedded model has no card")
    return Response(path.read_text(encoding="utf-8"), media_type="text/markdown")


def _head(session: Session, rid: int, layer: int, head: int) -> m.Head:
    row = session.scalar(select(m.Head).where(m.Head.run_id == rid, m.Head.layer == layer,
                                              m.Head.head == head))
    if row is None:
        raise HTTPException(404, f"head [{layer}, {head}] has no clusters in this run")
    return row


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
def heads(state: Explorer = Depends(explorer), session: Session = Depends(db)) -> list[dict]:
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
def head_effects(task: str = "all", state: Explorer = Depends(explorer),
                 session: Session = Depends(db)) -> dict:
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


@router.get("/interventions", response_model=InterventionsOut, responses=errors(404))
def interventions(state: Explorer = Depends(explorer)) -> dict:
    """Selective interventions: per task and method, the heads chosen on the train split and
    their held-out accuracy change with its interval beside random heads of equal count;
    pooled over tasks; and which method wins."""
    from apmae.atlas.build import intervention_summary

    run_id(state)
    section = intervention_summary(state.engine, state.run.name)
    if section is None:
        raise HTTPException(404, "no interventions in this run (run `apmae sweep`)")
    return section


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
    return dict(session.execute(_filtered(q, task, correct)).all())


def _filtered(query, task: str | None, correct: bool | None):
    if task:
        query = query.where(m.Scenario.task == task)
    if correct is not None:
        query = query.where(m.Scenario.correct_first_token == correct)
    return query


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
def head_detail(layer: PathInt, head: PathInt, task: str | None = None, correct: bool | None = None,
                metrics: bool = METRICS_QUERY, state: Explorer = Depends(explorer),
                session: Session = Depends(db)) -> dict:
    """One head: summary, pattern metrics and clusters (largest first), each with medoid,
    exemplars, mix, enrichment against the head, metrics and a description; with ``task`` or
    ``correct``, how many of each cluster's members pass that filter (``matching``)."""
    h = _head(session, run_id(state), layer, head)
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
def head_map(layer: PathInt, head: PathInt, task: str | None = None, correct: bool | None = None,
             state: Explorer = Depends(explorer), session: Session = Depends(db)) -> dict:
    """The head's 2-D map: one point per scenario with its cluster, task and correctness; and
    per cluster how many of its members pass the filter."""
    h = _head(session, run_id(state), layer, head)
    q = (select(m.Membership.x, m.Membership.y, m.Membership.label, m.Scenario.key,
                m.Scenario.task, m.Scenario.correct_first_token, m.Scenario.target,
                m.Scenario.completion)
         .join(m.Scenario, m.Scenario.id == m.Membership.scenario_id)
         .where(m.Membership.head_id == h.id))
    cols = ("x", "y", "cluster", "key", "task", "correct", "target", "completion")
    points = [dict(zip(cols, row)) for row in session.execute(_filtered(q, task, correct))]
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
def head_mean_pattern(layer: PathInt, head: PathInt, cluster: QueryInt = None,
                      state: Explorer = Depends(explorer), session: Session = Depends(db)) -> dict:
    """The head's mean attention weights over its kept patterns (``cluster``: over that
    cluster's kept members), as log10: what a medoid is read against. ``n`` patterns."""
    h = _head(session, run_id(state), layer, head)
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
def cluster_detail(cluster_id: PathInt, limit: int = Query(50, ge=1, le=500),
                   offset: int = Query(0, ge=0, le=INT32["le"]), metrics: bool = METRICS_QUERY,
                   state: Explorer = Depends(explorer), session: Session = Depends(db)) -> dict:
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
            "head": h.head, "members": [_scenario_out(s) for s in members], "offset": offset,
            "limit": limit}


@router.get("/clusters/{cluster_id}/difference-pattern", response_model=PatternOut,
            responses=errors(404, 422, 503, 504))
async def cluster_difference(cluster_id: PathInt, state: Explorer = Depends(explorer)) -> dict:
    """The cluster's medoid minus the head's mean pattern, in attention weight (scale
    ``difference``: positive where the medoid attends more than the head does on average)."""
    layer, head, medoid, labels = await run_in_threadpool(_cluster_lookup, state, cluster_id)
    if medoid is None:
        raise HTTPException(404, f"cluster {cluster_id} has no medoid (it is the noise)")
    packed = await _stored_pattern(state, medoid, layer, head)
    entry = await run_in_threadpool(state.head_patterns, layer, head, labels)
    if not len(entry["keys"]):
        raise HTTPException(404, f"head [{layer}, {head}] has no kept patterns to average")
    tokens = _tokens(state, medoid)
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
def similar_heads(layer: PathInt, head: PathInt,
                  run: str | None = Query(None, max_length=100, description="another run to search "
                                          "(its model may differ); default: this run"),
                  k: int = Query(10, ge=1, le=200),
                  by: Literal["embedding", "profile"] | None = Query(None, description="default: "
                      "embedding when both runs were embedded by one AP-MAE (always within a "
                      "run), else profile"),
                  state: Explorer = Depends(explorer)) -> dict:
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


def _scenario_out(s: m.Scenario) -> dict:
    return {"key": s.key, "task": s.task, "path": s.path, "split": s.split, "start": s.start,
            "end": s.end, "target": s.target, "completion": s.completion,
            "correct_exact": s.correct_exact, "correct_first_token": s.correct_first_token,
            "logprob_target_first": s.logprob_target_first, "predicted_correct": s.predicted_correct}


#: Columns the scenario list sorts by (ties broken by key).
SORTS = tuple(ScenarioOut.model_fields)


class ScenarioFilters:
    """The scenario list's search, filters and order, shared by the list and its export."""

    def __init__(self, q: str | None = Query(None, max_length=200, description="text in the path, "
                                             "target, completion or the prompt's code (prefix, "
                                             "suffix), ignoring case"),
                 task: str | None = None, correct: bool | None = None, split: str | None = None,
                 path: str | None = Query(None, max_length=500),
                 layer: QueryInt = None, head: QueryInt = None, cluster: QueryInt = None,
                 sort: Literal[SORTS] = Query("task", description="column to sort by"),
                 order: Literal["asc", "desc"] = "asc") -> None:
        self.q, self.task, self.correct, self.split, self.path = q, task, correct, split, path
        self.layer, self.head, self.cluster, self.sort, self.order = layer, head, cluster, sort, order

    def select(self, state: Explorer, session: Session, rid: int):
        """``select(Scenario)`` with the filters applied and the order set (4xx for bad ones)."""
        query = _filtered(select(m.Scenario).where(m.Scenario.run_id == rid), self.task, self.correct)
        if self.q:
            like = f"%{self.q}%"
            in_code = state.scenarios.code_matches(self.q)
            query = query.where(or_(m.Scenario.path.like(like), m.Scenario.target.like(like),
                                    m.Scenario.completion.like(like),
                                    m.Scenario.key.in_(bindparam("in_code", in_code, expanding=True,
                                                                 literal_execute=True))))
        if self.split:
            query = query.where(m.Scenario.split == self.split)
        if self.path:
            query = query.where(m.Scenario.path == self.path)
        if self.cluster is not None:
            if self.layer is None or self.head is None:
                raise HTTPException(422, "cluster needs layer and head")
            h = _head(session, rid, self.layer, self.head)
            query = query.join(m.Membership, m.Membership.scenario_id == m.Scenario.id).where(
                m.Membership.head_id == h.id, m.Membership.label == self.cluster)
        column = getattr(m.Scenario, self.sort)
        first = (column.desc() if self.order == "desc" else column.asc()).nulls_last()
        return query.order_by(first, *([m.Scenario.key] if self.sort != "key" else []))


@router.get("/scenarios", response_model=ScenarioPage, responses=errors(404, 422))
def scenarios(filters: ScenarioFilters = Depends(), limit: int = Query(50, ge=1, le=500),
              offset: int = Query(0, ge=0, le=INT32["le"]), state: Explorer = Depends(explorer),
              session: Session = Depends(db)) -> dict:
    """Scenarios with search, filters (task, correctness, split, file, cluster of a head) and
    order (``sort`` any column, ``order``), a page at a time."""
    query = filters.select(state, session, run_id(state))
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.scalars(query.offset(offset).limit(limit))
    return {"total": total, "offset": offset, "limit": limit, "sort": filters.sort,
            "order": filters.order, "items": [_scenario_out(s) for s in rows]}


#: A head as the pages name it.
HEAD_NAME = re.compile(r"^L(\d{1,4})H(\d{1,4})$")
MAX_EXPORT_HEADS = 64


@router.get("/scenarios/export", response_class=StreamingResponse,
            responses={200: {"model": list[ExportRow], "description": "every scenario that passes "
                             "the filters, in order; CSV or a JSON array",
                             "content": {"text/csv": {}}}, **errors(404, 422)})
def export_scenarios(filters: ScenarioFilters = Depends(),
                     format: Literal["csv", "json"] = "csv",
                     heads: str | None = Query(None, max_length=2000, description="heads whose "
                                               "cluster each row carries, e.g. L1H4,L0H2"),
                     state: Explorer = Depends(explorer), session: Session = Depends(db)
                     ) -> StreamingResponse:
    """Every scenario that passes the filters (not a page), streamed, with its cluster at each
    head in ``heads`` (a column per head, -1 noise) and the held-out predictor's score
    (``predicted_correct``, held-out scenarios only)."""
    rid = run_id(state)
    query = filters.select(state, session, rid)
    names = [n.strip() for n in heads.split(",") if n.strip()] if heads else []
    if len(names) > MAX_EXPORT_HEADS:
        raise HTTPException(422, f"heads: {len(names)} heads; at most {MAX_EXPORT_HEADS}")
    columns = []
    for name in dict.fromkeys(names):
        found = HEAD_NAME.match(name)
        if not found:
            raise HTTPException(422, f"heads: {name!r} is not a head like L1H4")
        h = _head(session, rid, int(found[1]), int(found[2]))
        member = aliased(m.Membership)
        query = query.outerjoin(member, (member.scenario_id == m.Scenario.id) & (member.head_id == h.id)
                                ).add_columns(member.label)
        columns.append(name)
    fields = [*SORTS, *columns]
    body = _csv_lines(state, query, fields, columns) if format == "csv" else \
        _json_lines(state, query, columns)
    media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
    return StreamingResponse(body, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="scenarios.{format}"'})


def _export_rows(state: Explorer, query, columns: list[str]) -> Iterator[dict]:
    """The query's rows as export rows, read in batches in a session of their own (the
    request's is closed by the time the response streams)."""
    with session_scope(state.engine) as session:
        for row in session.execute(query.execution_options(yield_per=500)):
            yield {**_scenario_out(row[0]), **dict(zip(columns, row[1:]))}


def _csv_lines(state: Explorer, query, fields: list[str], columns: list[str]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fields)
    writer.writeheader()
    for i, row in enumerate(_export_rows(state, query, columns), 1):
        writer.writerow(row)
        if i % 500 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def _json_lines(state: Explorer, query, columns: list[str]) -> Iterator[str]:
    yield "["
    for i, row in enumerate(_export_rows(state, query, columns)):
        yield ("," if i else "") + json.dumps(row)
    yield "]"


@router.get("/scenarios/{key}", response_model=ScenarioDetailOut, responses=errors(404, 422))
def scenario_detail(key: str, state: Explorer = Depends(explorer), session: Session = Depends(db)) -> dict:
    """One scenario: its result, the prompt's prefix and suffix text, its cluster per head."""
    rid = run_id(state)
    s = session.scalar(select(m.Scenario).where(m.Scenario.run_id == rid, m.Scenario.key == key))
    if s is None:
        raise HTTPException(404, f"no scenario {key} in this run")
    full = state.scenarios.get(key)
    labels = session.execute(select(m.Head.layer, m.Head.head, m.Membership.label)
                             .join(m.Membership, m.Membership.head_id == m.Head.id)
                             .where(m.Membership.scenario_id == s.id)).all()
    return {**_scenario_out(s), "prefix": full.prefix if full else None,
            "suffix": full.suffix if full else None,
            "heads": [{"layer": l, "head": h, "cluster": c} for l, h, c in labels]}


async def _stored_pattern(state: Explorer, key: str, layer: int, head: int):
    if key not in state.scenarios:
        raise HTTPException(404, f"no scenario {key} in this run")
    try:
        patterns = await state.pool.run(state.scenario_patterns, key)
    except LookupError:
        raise HTTPException(503, f"scenario {key}'s patterns were not kept and the model to "
                                 f"recompute them is not loaded: {state.problem}") from None
    if not (0 <= layer < patterns.shape[0] and 0 <= head < patterns.shape[1]):
        raise HTTPException(404, f"no head [{layer}, {head}]")
    return patterns[layer, head]


def _tokens(state: Explorer, key: str) -> list[str]:
    """The stored scenario's prompt tokens (empty without the model's tokenizer)."""
    return [state.atlas.target.tokenizer.decode([i]) for i in state.scenarios.get(key).input_ids] \
        if state.atlas else []


@router.get("/scenarios/{key}/heads/{layer}/{head}/pattern", response_model=PatternOut,
            responses=errors(404, 422, 503, 504))
async def scenario_pattern(key: str, layer: int, head: int, state: Explorer = Depends(explorer)) -> dict:
    """One head's pattern of a stored scenario (recomputed when it was not kept)."""
    packed = await _stored_pattern(state, key, layer, head)
    return {"layer": layer, "head": head, "tokens": _tokens(state, key), "z": log10_matrix(packed),
            "floor": FLOOR}


@router.get("/scenarios/{key}/heads/{layer}/{head}/thumb.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, **errors(404, 422, 503, 504)})
async def scenario_thumb(key: str, layer: int, head: int, state: Explorer = Depends(explorer)) -> Response:
    packed = await _stored_pattern(state, key, layer, head)
    return Response(thumbnail_png(packed), media_type="image/png",
                    headers={"Cache-Control": "public, max-age=86400"})


@router.get("/sweep", response_model=SweepOut, responses=errors(404, 422))
def sweep(strategy: Literal[STRATEGIES] | None = None,
          state: Explorer = Depends(explorer), session: Session = Depends(db)) -> dict:
    """Accuracy against the number of ablated heads per strategy, flips, collapse points."""
    rid = run_id(state)
    q = select(m.SweepPoint).where(m.SweepPoint.run_id == rid)
    rows = session.scalars(q.order_by(m.SweepPoint.strategy, m.SweepPoint.n_heads, m.SweepPoint.repeat)).all()
    points = [{"strategy": p.strategy, "n_heads": p.n_heads, "repeat": p.repeat, "accuracy": p.accuracy,
               "incorrect_to_correct": p.incorrect_to_correct,
               "correct_to_incorrect": p.correct_to_incorrect, "loss_change": p.loss_change,
               "heads": p.heads} for p in rows]
    collapse = collapse_points(points) if any(p["strategy"] == "none" for p in points) else {}
    if strategy:
        points = [p for p in points if p["strategy"] in (strategy, "none")]
    return {"points": points, "collapse": collapse}
