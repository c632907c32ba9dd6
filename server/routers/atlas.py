"""The built atlas, read-only: run overview and report, the layer × head grid, a head's
clusters and 2-D map, a cluster with its exemplars, scenarios with filters, stored patterns,
the ablation sweep."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import Response
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from apmae.atlas.sweep import STRATEGIES, collapse_points
from apmae.db import models as m
from apmae.heatmap import FLOOR, log10_matrix, thumbnail_png
from apmae.report import build_report

from ..deps import db, explorer, run_id
from ..schemas import HealthOut, PatternOut, errors
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


@router.get("/run")
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


@router.get("/heads", responses=errors(404))
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


@router.get("/head-effects", responses=errors(404, 422))
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


@router.get("/interventions", responses=errors(404))
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


def _cluster_out(c: m.Cluster, medoid_key: str | None) -> dict:
    return {"id": c.id, "label": c.label, "size": c.size, "medoid": medoid_key,
            "exemplars": c.exemplars, "by_task": c.by_task, "by_correct": c.by_correct}


@router.get("/heads/{layer}/{head}", responses=errors(404, 422))
def head_detail(layer: PathInt, head: PathInt, state: Explorer = Depends(explorer),
                session: Session = Depends(db)) -> dict:
    """One head: summary and clusters (largest first), each with medoid, exemplars and mix."""
    h = _head(session, run_id(state), layer, head)
    rows = session.execute(select(m.Cluster, m.Scenario.key)
                           .outerjoin(m.Scenario, m.Scenario.id == m.Cluster.medoid_scenario_id)
                           .where(m.Cluster.head_id == h.id).order_by(m.Cluster.size.desc())).all()
    return {"layer": layer, "head": head, "n_clusters": h.n_clusters, "noise_share": h.noise_share,
            "importance": h.importance, **_effect_fields(_causal(session, h.run_id).get((layer, head))),
            "clusters": [_cluster_out(c, key) for c, key in rows]}


@router.get("/heads/{layer}/{head}/map", responses=errors(404, 422))
def head_map(layer: PathInt, head: PathInt, task: str | None = None, correct: bool | None = None,
             state: Explorer = Depends(explorer), session: Session = Depends(db)) -> dict:
    """The head's 2-D map: one point per scenario with its cluster, task and correctness."""
    h = _head(session, run_id(state), layer, head)
    q = (select(m.Membership.x, m.Membership.y, m.Membership.label, m.Scenario.key,
                m.Scenario.task, m.Scenario.correct_first_token, m.Scenario.target,
                m.Scenario.completion)
         .join(m.Scenario, m.Scenario.id == m.Membership.scenario_id)
         .where(m.Membership.head_id == h.id))
    if task:
        q = q.where(m.Scenario.task == task)
    if correct is not None:
        q = q.where(m.Scenario.correct_first_token == correct)
    cols = ("x", "y", "cluster", "key", "task", "correct", "target", "completion")
    points = [dict(zip(cols, row)) for row in session.execute(q)]
    return {"layer": layer, "head": head, "points": points}


@router.get("/clusters/{cluster_id}", responses=errors(404, 422))
def cluster_detail(cluster_id: PathInt, limit: int = Query(50, ge=1, le=500),
                   offset: int = Query(0, ge=0, le=INT32["le"]), state: Explorer = Depends(explorer),
                   session: Session = Depends(db)) -> dict:
    """A cluster with its head, exemplars and a page of member scenarios."""
    rid = run_id(state)
    row = session.execute(select(m.Cluster, m.Head).join(m.Head, m.Head.id == m.Cluster.head_id)
                          .where(m.Cluster.id == cluster_id, m.Head.run_id == rid)).first()
    if row is None:
        raise HTTPException(404, f"no cluster {cluster_id} in this run")
    c, h = row
    medoid = session.scalar(select(m.Scenario.key).where(m.Scenario.id == c.medoid_scenario_id))
    members = session.scalars(select(m.Scenario).join(m.Membership, m.Membership.scenario_id == m.Scenario.id)
                              .where(m.Membership.head_id == h.id, m.Membership.label == c.label)
                              .order_by(m.Scenario.key).offset(offset).limit(limit)).all()
    return {**_cluster_out(c, medoid), "layer": h.layer, "head": h.head,
            "members": [_scenario_out(s) for s in members], "offset": offset, "limit": limit}


def _scenario_out(s: m.Scenario) -> dict:
    return {"key": s.key, "task": s.task, "path": s.path, "split": s.split, "start": s.start,
            "end": s.end, "target": s.target, "completion": s.completion,
            "correct_exact": s.correct_exact, "correct_first_token": s.correct_first_token,
            "logprob_target_first": s.logprob_target_first}


@router.get("/scenarios", responses=errors(404, 422))
def scenarios(q: str | None = Query(None, max_length=200, description="text in path, target or completion"),
              task: str | None = None, correct: bool | None = None, split: str | None = None,
              path: str | None = Query(None, max_length=500),
              layer: QueryInt = None, head: QueryInt = None, cluster: QueryInt = None,
              limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=INT32["le"]),
              state: Explorer = Depends(explorer), session: Session = Depends(db)) -> dict:
    """Scenarios with search and filters (task, correctness, split, file, cluster of a head)."""
    rid = run_id(state)
    query = select(m.Scenario).where(m.Scenario.run_id == rid)
    if q:
        like = f"%{q}%"
        query = query.where(or_(m.Scenario.path.like(like), m.Scenario.target.like(like),
                                m.Scenario.completion.like(like)))
    if task:
        query = query.where(m.Scenario.task == task)
    if correct is not None:
        query = query.where(m.Scenario.correct_first_token == correct)
    if split:
        query = query.where(m.Scenario.split == split)
    if path:
        query = query.where(m.Scenario.path == path)
    if cluster is not None:
        if layer is None or head is None:
            raise HTTPException(422, "cluster needs layer and head")
        h = _head(session, rid, layer, head)
        query = query.join(m.Membership, m.Membership.scenario_id == m.Scenario.id).where(
            m.Membership.head_id == h.id, m.Membership.label == cluster)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(m.Scenario.task, m.Scenario.key).offset(offset).limit(limit))
    return {"total": total, "offset": offset, "limit": limit, "items": [_scenario_out(s) for s in rows]}


@router.get("/scenarios/{key}", responses=errors(404, 422))
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


@router.get("/scenarios/{key}/heads/{layer}/{head}/pattern", response_model=PatternOut,
            responses=errors(404, 422, 503, 504))
async def scenario_pattern(key: str, layer: int, head: int, state: Explorer = Depends(explorer)) -> dict:
    """One head's pattern of a stored scenario (recomputed when it was not kept)."""
    packed = await _stored_pattern(state, key, layer, head)
    tokens = [state.atlas.target.tokenizer.decode([i]) for i in state.scenarios.get(key).input_ids] \
        if state.atlas else []
    return {"layer": layer, "head": head, "tokens": tokens, "z": log10_matrix(packed), "floor": FLOOR}


@router.get("/scenarios/{key}/heads/{layer}/{head}/thumb.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, **errors(404, 422, 503, 504)})
async def scenario_thumb(key: str, layer: int, head: int, state: Explorer = Depends(explorer)) -> Response:
    packed = await _stored_pattern(state, key, layer, head)
    return Response(thumbnail_png(packed), media_type="image/png",
                    headers={"Cache-Control": "public, max-age=86400"})


@router.get("/sweep", responses=errors(404, 422))
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
