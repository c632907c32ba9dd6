"""Engines, sessions, migrations and idempotent bulk writes for the atlas.

The database is ``APMAE_DATABASE_URL`` if set, else SQLite at ``$APMAE_HOME/apmae.db``. The
schema is owned by Alembic: :func:`upgrade` runs the repository's ``migrations/`` in process, with
a configuration built here, so it works from any working directory. ``migrations/`` sits beside
the ``apmae`` package in the checkout, outside it: this assumes apmae runs from its checkout (an
editable install, ``pip install -e .``), which is how it is installed; a wheel would not carry it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, Table, create_engine, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session

from ..paths import apmae_home
from .models import Base, Run

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def database_url() -> str:
    """``APMAE_DATABASE_URL``, else the SQLite file beside the runs under ``APMAE_HOME``."""
    url = os.environ.get("APMAE_DATABASE_URL")
    if url:
        return url
    home = apmae_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'apmae.db'}"


def masked_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable database URL>"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (plain or ``file:`` URI form); None for another database or
    an in-memory one."""
    parsed = make_url(url)
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return None
    return Path(path[len("file:"):] if path.startswith("file:") else path)


def make_engine(url: str | None = None, *, foreign_keys: bool = True) -> Engine:
    """An engine for ``url`` (default :func:`database_url`).

    SQLite gets its folder created, WAL (readers do not block the writer) and enforced foreign
    keys, which it leaves off by default and the cascades need. Migrations pass
    ``foreign_keys=False``: batch mode rebuilds a table by dropping it, which with foreign keys on
    would cascade-delete the rows that point at it.
    """
    url = url or database_url()
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    path = parsed.database
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


def _alembic_config(url: str) -> Config:
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise FileNotFoundError(f"{MIGRATIONS_DIR}: no Alembic migrations here "
                                "(install apmae from its checkout: pip install -e .)")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser syntax
    return config


def current_revision(url: str | None = None) -> str | None:
    """The database's Alembic revision; None before the first upgrade."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str | None = None, revision: str = "head") -> str | None:
    """Migrate the database up to ``revision``; returns the revision it is at."""
    url = url or database_url()
    command.upgrade(_alembic_config(url), revision)
    return current_revision(url)


def head_revision() -> str:
    """The latest schema revision this code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()


def migrated_engine(url: str | None = None) -> Engine:
    """The database, migrated to the latest schema: for the commands that write it and for the
    server's start, never for a read (a report or a page must not change a shared database)."""
    upgrade(url)
    return make_engine(url)


def reading_engine(url: str | None = None) -> Engine:
    """The database as it is, for reading: one whose schema is not the latest is refused with
    the command that migrates it, since reading it with this code's models could fail anywhere."""
    url = url or database_url()
    have, want = current_revision(url), head_revision()
    if have != want:
        raise ValueError(f"the atlas database {masked_url(url)} is at schema revision {have}, this "
                         f"apmae reads {want}: run `apmae db upgrade` (a read never migrates)")
    return make_engine(url)


def downgrade(url: str | None = None, revision: str = "base") -> str | None:
    """Migrate the database down to ``revision`` (``base``: no tables); returns where it is."""
    url = url or database_url()
    command.downgrade(_alembic_config(url), revision)
    return current_revision(url)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed if the block succeeds, rolled back if it raises."""
    with Session(engine) as session, session.begin():
        yield session


def get_or_create_run(session: Session, name: str, **fields: Any) -> Run:
    """The run named ``name``, created with ``fields`` or updated to them."""
    unknown = set(fields) - set(Run.__table__.columns.keys())
    if unknown:
        raise TypeError(f"runs has no column {', '.join(sorted(unknown))}")
    run = session.scalar(select(Run).where(Run.name == name))
    if run is None:
        run = Run(name=name, **fields)
        session.add(run)
    else:
        for key, value in fields.items():
            setattr(run, key, value)
    session.flush()
    return run


def upsert_rows(session: Session, table: type[Base] | Table, rows: list[dict[str, Any]],
                keys: list[str], update: list[str], chunk: int = 500) -> None:
    """Insert ``rows``, or update the ``update`` columns of those whose ``keys`` exist.

    Idempotent, so a stage can be rerun after an interruption. ``keys`` must be a unique
    constraint of the table; every row must have the same columns. Rows go ``chunk`` per
    statement, well under SQLite's and PostgreSQL's limits on bound parameters. ORM objects
    already loaded in the session are not refreshed.
    """
    dialect = session.get_bind().dialect.name
    if dialect not in _INSERTS:
        raise ValueError(f"upsert_rows supports sqlite and postgresql, not {dialect}")
    target = table if isinstance(table, Table) else table.__table__
    for i in range(0, len(rows), chunk):
        stmt = _INSERTS[dialect](target).values(rows[i:i + chunk])
        if update:
            stmt = stmt.on_conflict_do_update(index_elements=keys,
                                              set_={c: stmt.excluded[c] for c in update})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        session.execute(stmt)
