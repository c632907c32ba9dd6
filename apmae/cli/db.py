"""``apmae db``: the pattern atlas's SQL store; and where a writing command migrates it (a
writer migrates where it starts, a read never does)."""

from __future__ import annotations

import argparse

from .common import UserError


def atlas_engine():
    """The atlas database's engine, migrated to the newest revision: for commands that write."""
    from ..db.session import migrated_engine

    return migrated_engine()


def _migrate(direction: str, revision: str) -> None:
    """Run ``apmae.db.session.upgrade``/``downgrade``; a bad URL or revision, a missing driver
    or an unreachable server is a one-line error."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from ..db import session

    url = session.database_url()
    try:
        at = getattr(session, direction)(url, revision)
    except (CommandError, SQLAlchemyError) as e:
        raise UserError(f"{session.masked_url(url)}: {str(e).splitlines()[0]}") from e
    except ImportError as e:  # the URL's driver, e.g. psycopg
        raise UserError(f"{session.masked_url(url)}: {e} "
                        "(PostgreSQL: pip install -e '.[postgres]')") from e
    print(f"{session.masked_url(url)}: at revision {at or 'base'}")


def cmd_db_upgrade(args: argparse.Namespace) -> None:
    _migrate("upgrade", args.revision)


def cmd_db_downgrade(args: argparse.Namespace) -> None:
    _migrate("downgrade", args.revision)


def add_commands(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="the SQL store of the pattern atlas (migrations)") \
        .add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", help="create or migrate the database's tables")
    p.add_argument("--revision", default="head", help="Alembic revision (default: head)")
    p.set_defaults(func=cmd_db_upgrade)
    p = db.add_parser("downgrade", help="migrate the database back (base: drops every table)")
    p.add_argument("--revision", default="base", help="Alembic revision (default: base)")
    p.set_defaults(func=cmd_db_downgrade)
