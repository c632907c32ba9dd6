"""Alembic environment of the atlas: the schema is ``apmae.db.models.Base.metadata``.

The URL is ``-x url=...`` on the command line, else ``sqlalchemy.url`` (set by
``apmae.db.session.upgrade``), else ``apmae.db.session.database_url()``. SQLite migrations run in
batch mode (it cannot ALTER most things in place) with foreign keys off (see ``make_engine``).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from apmae.db.models import Base
from apmae.db.session import database_url, make_engine

config = context.config
if config.config_file_name:  # the alembic command with alembic.ini: its logging section
    fileConfig(config.config_file_name, disable_existing_loggers=False)

url = (context.get_x_argument(as_dictionary=True).get("url")
       or config.get_main_option("sqlalchemy.url") or database_url())


def run_offline() -> None:
    """``--sql``: print the SQL for a DBA instead of running it."""
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True,
                      render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(url, foreign_keys=False)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=Base.metadata,
                              render_as_batch=connection.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


run_offline() if context.is_offline_mode() else run_online()
