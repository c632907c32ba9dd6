"""The run as a whole: health, overview, model card, the sweep and the interventions."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from apmae.atlas.summaries import collapse_points, sweep_points
from apmae.configs import STRATEGIES
from apmae.report import build_report

from ..deps import ExplorerDep, SessionDep, run_id
from ..schemas import HealthOut, InterventionsOut, RunOut, SweepOut, errors

router = APIRouter(prefix="/api", tags=["run"])


@router.get("/health", response_model=HealthOut)
def health(state: ExplorerDep) -> dict:
    """Liveness, and whether the run is loaded (``ready``) or what is missing (``problem``)."""
    return {"status": "ok", "run": state.run.name, "ready": state.atlas is not None,
            "problem": state.problem, "queue": state.pool.pending}


@router.get("/run", response_model=RunOut)
def run_overview(state: ExplorerDep) -> dict:
    """The run's report (model, per-task accuracy, AP-MAE evaluation, clusters, predictor,
    sweep), the model's shape, the tasks, and which atlas parts are missing."""
    if state.report is None:
        state.report = build_report(state.run, state.settings.database_url)
    atlas = state.atlas
    return {"report": state.report, "tasks": state.tasks, "ready": atlas is not None,
            "problem": state.problem, "missing": atlas.missing if atlas else [],
            "layers": atlas.lm.layers if atlas else None,
            "heads": atlas.lm.heads if atlas else None,
            "window": atlas.window if atlas else None,
            "model_card": "/api/model-card" if atlas and atlas.lm.name == "default" else None}


@router.get("/model-card", response_class=Response,
            responses={200: {"content": {"text/markdown": {}}}, **errors(404)})
def model_card() -> Response:
    """The embedded default model's card (Markdown)."""
    from apmae.paths import DEFAULT_MODEL_DIR

    path = DEFAULT_MODEL_DIR / "README.md"
    if not path.exists():
        raise HTTPException(404, "the embedded model has no card")
    return Response(path.read_text(encoding="utf-8"), media_type="text/markdown")


@router.get("/interventions", response_model=InterventionsOut, responses=errors(404))
def interventions(state: ExplorerDep) -> dict:
    """Selective interventions: per task and method, the heads chosen on the train split and
    their held-out accuracy change with its interval beside random heads of equal count;
    pooled over tasks; and which method wins."""
    from apmae.atlas.summaries import intervention_summary

    run_id(state)
    section = intervention_summary(state.engine, state.run.name)
    if section is None:
        raise HTTPException(404, "no interventions in this run (run `apmae sweep`)")
    return section


@router.get("/sweep", response_model=SweepOut, responses=errors(404, 422))
def sweep(state: ExplorerDep, session: SessionDep, strategy: Literal[STRATEGIES] | None = None) -> dict:
    """Accuracy against the number of ablated heads per strategy, flips, collapse points."""
    points = sweep_points(session, run_id(state), with_heads=True)
    collapse = collapse_points(points) if any(p["strategy"] == "none" for p in points) else {}
    if strategy:
        points = [p for p in points if p["strategy"] in (strategy, "none")]
    return {"points": points, "collapse": collapse}
