"""A tiny but wide model (2 layers x 24 heads, `apmae lm init`): the whole pipeline and the
explorer's API with more heads than the default model's 32, as a 3B's 720 will need."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from apmae.cli import main
from apmae.configs import DemoConfig
from apmae.pipeline import build_default_run
from apmae.run import Run

LAYERS, HEADS = 2, 24


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory, split_corpus):
    root = tmp_path_factory.mktemp("wide")
    model = root / "model"
    assert main(["lm", "init", "--out", str(model), "--layers", str(LAYERS), "--heads", str(HEADS),
                 "--kv-heads", "4", "--hidden", "96", "--intermediate", "192"]) == 0
    run = Run("wide", root / "run")
    cfg = DemoConfig(per_task=1, heldout_per_task=1, window=64, keep="sample:10", batch_size=8,
                     mae_steps=2, sweep_scenarios=4)
    url = f"sqlite:///{root / 'wide.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APMAE_DATABASE_URL", url)
        build_default_run(run, cfg, source=str(split_corpus), model=str(model))
    return run, url


def test_the_pipeline_clusters_every_head_of_a_wide_model(wide_run):
    from sqlalchemy import func, select

    from apmae.db import models as m
    from apmae.db.session import reading_engine, session_scope
    from apmae.report import build_report

    run, url = wide_run
    assert (run.meta()["layers"], run.meta()["heads"]) == (LAYERS, HEADS)
    report = build_report(run, url)
    assert report["clusters"]["heads"] == LAYERS * HEADS
    with session_scope(reading_engine(url)) as session:
        per_head = session.execute(select(m.Head.layer, m.Head.head, func.count())
                                   .join(m.Membership, m.Membership.head_id == m.Head.id)
                                   .group_by(m.Head.layer, m.Head.head)).all()
    assert len(per_head) == LAYERS * HEADS
    assert {n for *_, n in per_head} == {len(list(run.results()))}  # every scenario in every head


def test_the_sweep_of_a_wide_model_measures_only_its_candidates(wide_run):
    """A model that is never right has no SHAP to choose heads by: the sweep still measures
    causal effects, of a seeded random sample when the model has more heads than allowed."""
    from sqlalchemy import select

    from apmae.atlas.sweep_stage import sweep_run
    from apmae.configs import InterventionConfig, SweepConfig
    from apmae.db import models as m
    from apmae.db.session import migrated_engine, reading_engine, session_scope
    from apmae.lm.load import load_target

    run, url = wide_run
    sweep_run(run, SweepConfig(scenarios=2, repeats=1, batch_size=8), migrated_engine(url),
              load_target(run.meta()["model"]),
              InterventionConfig(train_per_task=1, heldout_per_task=1, sizes=(1,), random_sets=2,
                                 greedy_candidates=2, candidates=5, bootstrap=20))
    with session_scope(reading_engine(url)) as session:
        settings = session.scalar(select(m.Run.settings).where(m.Run.name == run.name))
        measured = session.execute(select(m.HeadEffect.layer, m.HeadEffect.head).where(
            m.HeadEffect.measure == "causal_accuracy", m.HeadEffect.task == "all")).all()
        methods = set(session.scalars(select(m.Intervention.method)))
    assert settings["intervention"]["heads_measured_by"] == "random"
    assert settings["intervention"]["heads_measured"] == len(measured) == 5
    assert "shap" not in methods and "causal" in methods


def test_the_explorer_lists_every_head_of_a_wide_model(wide_run):
    from server.app import create_app
    from server.settings import Settings
    from server.state import Explorer

    run, url = wide_run
    settings = Settings(run=run.name, database_url=url)
    with TestClient(create_app(settings, Explorer.load(settings, run=run))) as client:
        body = client.get("/api/run").json()
        assert (body["layers"], body["heads"]) == (LAYERS, HEADS)
        assert all(m.startswith("correctness predictor") for m in body["missing"])  # random: all wrong
        grid = client.get("/api/heads").json()
        assert [(h["layer"], h["head"]) for h in grid] == [(l, h) for l in range(LAYERS)
                                                           for h in range(HEADS)]
        assert all(h["n_clusters"] is not None for h in grid)
        last = client.get(f"/api/heads/{LAYERS - 1}/{HEADS - 1}").json()
        assert sum(c["size"] for c in last["clusters"]) > 0
        assert client.get(f"/api/heads/{LAYERS}/0").status_code == 404
