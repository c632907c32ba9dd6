"""The atlas's SQL store: migrations create exactly the models' schema and undo it, bulk writes
are idempotent, transactions are all or nothing, deleting a run cascades. On SQLite always, on
PostgreSQL too when ``APMAE_TEST_POSTGRES_URL`` names a scratch database (its tables are
dropped)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select

from apmae.cli import main
from apmae.db.models import Base, Cluster, Head, Membership, Run, Scenario
from apmae.db.session import (
    downgrade,
    get_or_create_run,
    make_engine,
    session_scope,
    upgrade,
    upsert_rows,
)
from apmae.paths import apmae_home

POSTGRES_URL = os.environ.get("APMAE_TEST_POSTGRES_URL")
TABLES = {"runs", "scenarios", "heads", "clusters", "memberships", "predictors", "sweep_points"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(
    not POSTGRES_URL, reason="APMAE_TEST_POSTGRES_URL not set"))])
def url(request, tmp_path) -> Iterator[str]:
    """An empty database, left empty again afterwards."""
    url = f"sqlite:///{tmp_path / 'atlas.db'}" if request.param == "sqlite" else POSTGRES_URL
    downgrade(url)  # a scratch PostgreSQL database may hold a failed test's tables
    yield url
    downgrade(url)


@pytest.fixture
def engine(url) -> Iterator[Engine]:
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _run(session, name: str = "r") -> Run:
    return get_or_create_run(session, name, model="m", tokenizer="t", window=64, layers=2,
                             heads=4, settings={"seed": 0})


def _scenario_rows(run_id: int, completion: str) -> list[dict]:
    return [{"run_id": run_id, "key": f"k{i}", "task": "eol", "path": "p/A.java", "split": "test",
             "start": i, "end": i + 2, "target": ";\n", "completion": completion,
             "correct_exact": completion == ";\n", "correct_first_token": True,
             "logprob_target_first": -0.5} for i in range(7)]


def test_upgrade_downgrade_upgrade(url):
    assert upgrade(url) == "0006"
    assert TABLES <= _tables(url)
    assert downgrade(url) is None
    assert not TABLES & _tables(url)
    assert upgrade(url) == "0006"
    assert TABLES <= _tables(url)


def test_models_match_the_migration(engine):
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_upsert_rows_is_idempotent(engine):
    with session_scope(engine) as session:
        run_id = _run(session).id
        upsert_rows(session, Scenario, _scenario_rows(run_id, "x"), ["run_id", "key"],
                    ["completion", "correct_exact"], chunk=3)
    with session_scope(engine) as session:
        upsert_rows(session, Scenario, _scenario_rows(run_id, ";\n"), ["run_id", "key"],
                    ["completion", "correct_exact"], chunk=3)
        rows = session.execute(select(Scenario.completion, Scenario.correct_exact)).all()
    assert sorted(rows) == [(";\n", True)] * 7


def test_get_or_create_run_updates(engine):
    with session_scope(engine) as session:
        first = _run(session).id
    with session_scope(engine) as session:
        run = get_or_create_run(session, "r", window=128)
        assert (run.id, run.window, run.model) == (first, 128, "m")
        with pytest.raises(TypeError, match="nope"):
            get_or_create_run(session, "r", nope=1)


def test_failed_transaction_leaves_nothing(engine):
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        upsert_rows(session, Scenario, _scenario_rows(_run(session).id, "x"), ["run_id", "key"],
                    ["completion"])
        raise RuntimeError("stage crashed")
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0
        assert session.scalar(select(func.count()).select_from(Scenario)) == 0


def test_deleting_a_run_cascades(engine):
    with session_scope(engine) as session:
        run = _run(session)
        upsert_rows(session, Scenario, _scenario_rows(run.id, "x"), ["run_id", "key"], [])
        scenario = session.scalar(select(Scenario).where(Scenario.key == "k0"))
        head = Head(run_id=run.id, layer=0, head=1, n_clusters=1, noise_share=0.0)
        session.add(head)
        session.flush()
        session.add_all([
            Cluster(head_id=head.id, label=0, size=1, medoid_scenario_id=scenario.id,
                    exemplars=["k0"], by_task={"eol": 1},
                    by_correct={"correct": 0, "incorrect": 1}),
            Membership(scenario_id=scenario.id, head_id=head.id, label=0, x=0.5, y=-1.0),
        ])
    with session_scope(engine) as session:
        session.delete(session.scalar(select(Run)))
    with session_scope(engine) as session:
        for model in (Run, Scenario, Head, Cluster, Membership):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model


def test_cli_upgrade_default_database(capsys):
    assert main(["db", "upgrade"]) == 0
    assert (apmae_home() / "apmae.db").is_file()
    assert "at revision 0006" in capsys.readouterr().out
    assert main(["db", "downgrade"]) == 0
    assert "at revision base" in capsys.readouterr().out


def test_cli_honours_database_url(tmp_path: Path, monkeypatch, capsys):
    other = tmp_path / "sub" / "other.db"
    monkeypatch.setenv("APMAE_DATABASE_URL", f"sqlite:///{other}")
    assert main(["db", "upgrade"]) == 0
    assert other.is_file() and not (apmae_home() / "apmae.db").exists()
    assert TABLES <= _tables(f"sqlite:///{other}")
    assert main(["db", "upgrade", "--revision", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("apmae: error: ") and "nope" in err and "\n" not in err


def test_cli_masks_the_password(monkeypatch, capsys):
    monkeypatch.setenv("APMAE_DATABASE_URL", "nodriver://user:s3cret@host/db")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "s3cret" not in err and "user:***@host" in err
