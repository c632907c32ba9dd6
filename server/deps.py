"""Dependencies of the routes: the shared state, a database session, a built run."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import HTTPException, Request
from sqlalchemy.orm import Session

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
