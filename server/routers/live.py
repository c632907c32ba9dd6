"""``POST /api/predict`` and ``POST /api/intervene``: complete pasted Java, predict whether the
completion is right, switch heads off; and the patterns of those results, head by head."""

from __future__ import annotations

from typing import Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from apmae.heatmap import FLOOR, difference_matrix, log10_matrix, thumbnail_png
from apmae.intervene import pattern_change
from apmae.live import Analysis, LiveError, Outcome, locate

from ..deps import ExplorerDep, ready_atlas
from ..schemas import (
    InterveneRequest,
    InterveneResponse,
    PatternOut,
    PredictRequest,
    PredictResponse,
    errors,
)
from ..state import Explorer

router = APIRouter(prefix="/api", tags=["live"])


def _analyze(state: Explorer, body: PredictRequest, ablate: list[list[int]]) -> Analysis:
    """Validate and run one request (blocking: runs in the inference pool)."""
    atlas = ready_atlas(state)
    size = len(body.code.encode("utf-8", "surrogatepass"))
    if size > state.settings.max_code_bytes:
        raise HTTPException(413, f"code is {size} bytes; the limit is {state.settings.max_code_bytes}")
    try:
        span = locate(body.code, atlas.lm.tokenizer, start=body.start, end=body.end,
                      task=body.task, cursor=body.cursor)
        return atlas.analyze(body.code, span, ablate)
    except LiveError as e:
        raise HTTPException(422, str(e)) from None


def _outcome(o: Outcome) -> dict:
    return {"completion": o.completion, "finished": o.finished, "first_token": o.first_token,
            "correct_exact": o.correct_exact, "correct_first_token": o.correct_first_token,
            "target_first_prob": o.target_first_prob, "target_first_logprob": o.target_first_logprob,
            "top_k": o.top_k, "predicted_correct": o.predicted_correct,
            "out_of_distribution": o.out_of_distribution,
            "lm_confidence": {**o.confidence, "predicted_correct": o.confidence_predicted}}


def _predictor(state: Explorer, a: Analysis) -> dict | None:
    """Which predictor answered, its held-out figures and the confidence baseline's."""
    p = state.atlas.predictor
    if p is None:
        return None
    conf = p.confidence_heldout or {}
    return {**p.summary(), "task": a.task,
            "lm_confidence_heldout_auc": conf.get("auc"),
            "lm_confidence_heldout_auc_ci": conf.get("auc_ci")}


def _heads(state: Explorer, rid: str, labels: np.ndarray | None) -> list[dict]:
    t = state.atlas.lm
    return [{"layer": l, "head": h, "cluster": None if labels is None else int(labels[l, h]),
             "pattern_url": f"/api/live/{rid}/heads/{l}/{h}/pattern",
             "thumb_url": f"/api/live/{rid}/heads/{l}/{h}/thumb.png"}
            for l in range(t.layers) for h in range(t.heads)]


def _common(state: Explorer, a: Analysis) -> tuple[str, dict]:
    entry = {"baseline": a.baseline.patterns.numpy()}
    if a.ablated is not None:
        entry["ablated"] = a.ablated.patterns.numpy()
    entry["tokens"] = np.array(a.tokens, dtype=object)
    rid = state.cache.put(entry)
    return rid, {"id": rid, "task": a.span.task, "target": a.span.target, "start": a.span.start,
                 "end": a.span.end, "tokens": a.tokens, "predictor": _predictor(state, a)}


@router.post("/predict", response_model=PredictResponse, responses=errors(400, 413, 422, 503, 504))
async def predict(body: PredictRequest, state: ExplorerDep) -> dict:
    """Complete the span, capture every head, place each head's pattern in its clusters and
    predict correctness from those clusters alone (the target is not used)."""
    a = await state.pool.run(_analyze, state, body, [])
    rid, out = _common(state, a)
    return {**out, **_outcome(a.baseline), "window": len(a.window.input_ids),
            "approximate": a.approximate, "missing": state.atlas.missing,
            "heads": _heads(state, rid, a.baseline.labels)}


@router.post("/intervene", response_model=InterveneResponse, responses=errors(400, 413, 422, 503, 504))
async def intervene(body: InterveneRequest, state: ExplorerDep) -> dict:
    """The same completion twice: as is, and with the ``ablate`` heads switched off."""
    if not body.ablate:
        raise HTTPException(422, "ablate is empty: name at least one [layer, head]")
    a = await state.pool.run(_analyze, state, body, body.ablate)
    rid, out = _common(state, a)
    before, after = a.baseline.labels, a.ablated.labels
    changed = [] if before is None else [
        {"layer": int(l), "head": int(h), "before": int(before[l, h]), "after": int(after[l, h])}
        for l, h in zip(*np.nonzero(before != after))]
    moved = pattern_change(a.baseline.patterns.numpy(), a.ablated.patterns.numpy())
    off = set(a.ablate)
    heads = [{**entry, "ablated": (entry["layer"], entry["head"]) in off,
              "ablated_pattern_url": f"{entry['pattern_url']}?which=ablated",
              "ablated_thumb_url": f"{entry['thumb_url']}?which=ablated",
              "difference_pattern_url": f"{entry['pattern_url']}?which=difference",
              "pattern_change": float(moved[entry["layer"], entry["head"]])}
             for entry in _heads(state, rid, before)]
    b, c = a.baseline.target_first_logprob, a.ablated.target_first_logprob
    return {**out, "ablate": [list(h) for h in a.ablate],
            "baseline": _outcome(a.baseline),
            "ablated": {**_outcome(a.ablated), "changed_heads": changed},
            "target_logprob_change": None if b is None or c is None else c - b,
            "heads": heads}


def _live_pattern(state: Explorer, rid: str, which: str, layer: int, head: int) -> tuple[np.ndarray, list[str]]:
    entry = state.cache.get(rid)
    if entry is None:
        raise HTTPException(404, f"result {rid} is gone (results are kept while memory allows); run it again")
    if which not in entry:
        raise HTTPException(404, f"result {rid} has no {which} patterns (only an intervene result has)")
    patterns = entry[which]
    if not (0 <= layer < patterns.shape[0] and 0 <= head < patterns.shape[1]):
        raise HTTPException(404, f"no head [{layer}, {head}]")
    return patterns[layer, head], entry["tokens"].tolist()


@router.get("/live/{rid}/heads/{layer}/{head}/pattern", response_model=PatternOut,
            responses=errors(404, 422))
def live_pattern(state: ExplorerDep, rid: str, layer: int, head: int,
                 which: Literal["baseline", "ablated", "difference"] = Query(
                     "baseline", description="difference: ablated − baseline attention weights")) -> dict:
    """One head's pattern of a live result, as log10 weights with the prompt's tokens (or the
    ablated run's minus the baseline's, in weights)."""
    if which == "difference":
        after, tokens = _live_pattern(state, rid, "ablated", layer, head)
        before, _ = _live_pattern(state, rid, "baseline", layer, head)
        return {"layer": layer, "head": head, "tokens": tokens, "floor": -1.0, "scale": "difference",
                "z": difference_matrix(np.exp(after.astype(np.float32)), np.exp(before.astype(np.float32)))}
    packed, tokens = _live_pattern(state, rid, which, layer, head)
    return {"layer": layer, "head": head, "tokens": tokens, "z": log10_matrix(packed), "floor": FLOOR}


@router.get("/live/{rid}/heads/{layer}/{head}/thumb.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, **errors(404, 422)})
def live_thumb(state: ExplorerDep, rid: str, layer: int, head: int,
               which: Literal["baseline", "ablated"] = Query("baseline")) -> Response:
    packed, _ = _live_pattern(state, rid, which, layer, head)
    return Response(thumbnail_png(packed), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})
