"""Scenarios: the list (filtered, sorted, searched in the code), its whole export, one scenario
and its stored patterns."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session, aliased

from apmae.db import models as m
from apmae.db.session import session_scope
from apmae.heatmap import FLOOR, log10_matrix, thumbnail_png

from ..deps import INT32, ExplorerDep, QueryInt, SessionDep, filtered, head_row, run_id
from ..schemas import (
    ExportRow,
    PatternOut,
    ScenarioDetailOut,
    ScenarioOut,
    ScenarioPage,
    errors,
)
from ..state import Explorer

router = APIRouter(prefix="/api", tags=["scenarios"])


def scenario_out(s: m.Scenario) -> dict:
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
        query = filtered(select(m.Scenario).where(m.Scenario.run_id == rid), self.task, self.correct)
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
            h = head_row(session, rid, self.layer, self.head)
            query = query.join(m.Membership, m.Membership.scenario_id == m.Scenario.id).where(
                m.Membership.head_id == h.id, m.Membership.label == self.cluster)
        column = getattr(m.Scenario, self.sort)
        first = (column.desc() if self.order == "desc" else column.asc()).nulls_last()
        return query.order_by(first, *([m.Scenario.key] if self.sort != "key" else []))


@router.get("/scenarios", response_model=ScenarioPage, responses=errors(404, 422))
def scenarios(state: ExplorerDep, session: SessionDep, filters: ScenarioFilters = Depends(),
              limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=INT32["le"])) -> dict:
    """Scenarios with search, filters (task, correctness, split, file, cluster of a head) and
    order (``sort`` any column, ``order``), a page at a time."""
    query = filters.select(state, session, run_id(state))
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.scalars(query.offset(offset).limit(limit))
    return {"total": total, "offset": offset, "limit": limit, "sort": filters.sort,
            "order": filters.order, "items": [scenario_out(s) for s in rows]}


#: A head as the pages name it.
HEAD_NAME = re.compile(r"^L(\d{1,4})H(\d{1,4})$")
MAX_EXPORT_HEADS = 64


@router.get("/scenarios/export", response_class=StreamingResponse,
            responses={200: {"model": list[ExportRow], "description": "every scenario that passes "
                             "the filters, in order; CSV or a JSON array",
                             "content": {"text/csv": {}}}, **errors(404, 422)})
def export_scenarios(state: ExplorerDep, session: SessionDep, filters: ScenarioFilters = Depends(),
                     format: Literal["csv", "json"] = "csv",
                     heads: str | None = Query(None, max_length=2000, description="heads whose "
                                               "cluster each row carries, e.g. L1H4,L0H2")) -> StreamingResponse:
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
        h = head_row(session, rid, int(found[1]), int(found[2]))
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
            yield {**scenario_out(row[0]), **dict(zip(columns, row[1:]))}


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
def scenario_detail(key: str, state: ExplorerDep, session: SessionDep) -> dict:
    """One scenario: its result, the prompt's prefix and suffix text, its cluster per head."""
    rid = run_id(state)
    s = session.scalar(select(m.Scenario).where(m.Scenario.run_id == rid, m.Scenario.key == key))
    if s is None:
        raise HTTPException(404, f"no scenario {key} in this run")
    full = state.scenarios.get(key)
    labels = session.execute(select(m.Head.layer, m.Head.head, m.Membership.label)
                             .join(m.Membership, m.Membership.head_id == m.Head.id)
                             .where(m.Membership.scenario_id == s.id)).all()
    return {**scenario_out(s), "prefix": full.prefix if full else None,
            "suffix": full.suffix if full else None,
            "heads": [{"layer": l, "head": h, "cluster": c} for l, h, c in labels]}


async def stored_pattern(state: Explorer, key: str, layer: int, head: int):
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


def prompt_tokens(state: Explorer, key: str) -> list[str]:
    """The stored scenario's prompt tokens (empty without the model's tokenizer)."""
    return [state.atlas.lm.tokenizer.decode([i]) for i in state.scenarios.get(key).input_ids] \
        if state.atlas else []


@router.get("/scenarios/{key}/heads/{layer}/{head}/pattern", response_model=PatternOut,
            responses=errors(404, 422, 503, 504))
async def scenario_pattern(key: str, layer: int, head: int, state: ExplorerDep) -> dict:
    """One head's pattern of a stored scenario (recomputed when it was not kept)."""
    packed = await stored_pattern(state, key, layer, head)
    return {"layer": layer, "head": head, "tokens": prompt_tokens(state, key), "z": log10_matrix(packed),
            "floor": FLOOR}


@router.get("/scenarios/{key}/heads/{layer}/{head}/thumb.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, **errors(404, 422, 503, 504)})
async def scenario_thumb(key: str, layer: int, head: int, state: ExplorerDep) -> Response:
    packed = await stored_pattern(state, key, layer, head)
    return Response(thumbnail_png(packed), media_type="image/png",
                    headers={"Cache-Control": "public, max-age=86400"})
