"""Dependencies of the routes (the shared state, a database session, a built run) and the
lookups and filters several routers share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from apmae.db import models as m

from apmae.db.session import session_scope
from apmae.live import LiveAtlas

from .state import Explorer


def explorer(request: Request) -> Explorer:
    return request.app.state.explorer


def db(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.explorer.engine) as session:
        yield session


def ready_atlas(state: Explorer) -> LiveAtlas:
    """The loaded run, or a 503 that says how to build it."""
    if state.atlas is None:
        raise HTTPException(503, f"the run is not ready: {state.problem}")
    return state.atlas


def run_id(state: Explorer) -> int:
    """The run's id in SQL, or a 404 that says how to fill it."""
    if state.run_id is None:
        raise HTTPException(404, f"run {state.run.name} has no atlas in the database "
                                 "(build it with `apmae demo`, or `apmae cluster`)")
    return state.run_id


ExplorerDep = Annotated[Explorer, Depends(explorer)]
SessionDep = Annotated[Session, Depends(db)]

#: Integers that reach SQL, within its 32-bit INTEGER columns: a larger one is a 422 that says
#: so, not a database error (a 500).
INT32 = {"ge": -2**31, "le": 2**31 - 1}
PathInt = Annotated[int, Path(**INT32)]
QueryInt = Annotated[int | None, Query(**INT32)]


def head_row(session: Session, rid: int, layer: int, head: int) -> m.Head:
    """A head of run ``rid`` in SQL, or a 404 that says it has no clusters."""
    row = session.scalar(select(m.Head).where(m.Head.run_id == rid, m.Head.layer == layer,
                                              m.Head.head == head))
    if row is None:
        raise HTTPException(404, f"head [{layer}, {head}] has no clusters in this run")
    return row


def filtered(query, task: str | None, correct: bool | None):
    """``query`` (over scenarios) narrowed to one task and/or one correctness."""
    if task:
        query = query.where(m.Scenario.task == task)
    if correct is not None:
        query = query.where(m.Scenario.correct_first_token == correct)
    return query
