"""The atlas stages end to end on a tiny run: SQL rows, idempotent reruns, report sections."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from apmae.atlas.cluster_stage import cluster_run, head_assignments
from apmae.atlas.predictor_stage import predictor_run
from apmae.atlas.sweep_stage import sweep_run
from apmae.atlas.summaries import cluster_summary, intervention_summary
from apmae.configs import ClusterConfig, InterventionConfig, PredictorConfig, SweepConfig
from apmae.db.session import migrated_engine
from apmae.db import models as m
from apmae.db.session import session_scope
from apmae.run import Run
from apmae.store.arrays import StoreMeta


def _counts(engine) -> dict[str, int]:
    with session_scope(engine) as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t))
                for t in (m.Run, m.Scenario, m.Head, m.Cluster, m.Membership, m.Predictor, m.SweepPoint,
                          m.HeadEffect, m.Intervention)}


def test_stages_fill_sql_and_reruns_change_nothing(tmp_path, atlas_run, tiny_target):
    engine = migrated_engine(f"sqlite:///{tmp_path / 'atlas.db'}")
    heads = atlas_run.meta()["layers"] * atlas_run.meta()["heads"]
    assert cluster_run(atlas_run, ClusterConfig(), engine) == heads
    after_cluster = _counts(engine)
    n = len(list(atlas_run.results()))
    assert after_cluster["heads"] == heads and after_cluster["memberships"] == n * heads
    assert len(head_assignments(engine, "atlas")) == heads  # every head can place new patterns
    assert cluster_run(atlas_run, ClusterConfig(), engine) == 0  # every head done: skipped
    assert _counts(engine) == after_cluster
    summary = cluster_summary(engine, "atlas")
    assert summary["heads"] == heads and 0 <= summary["clustered_share"] <= 1

    cfg = PredictorConfig(max_iter=20, min_per_class=3, folds=3)
    section = predictor_run(atlas_run, cfg, engine)
    assert 0 <= section["by_task"]["all"]["balanced_accuracy"] <= 1
    assert "baseline_balanced_accuracy" in section["by_task"]["all"]
    predictor_run(atlas_run, cfg, engine)
    after_predictor = _counts(engine)
    scored = sum(1 for v in section["by_task"].values() if "skipped" not in v)
    held = section["heldout"]  # one row per held-out kind, or one saying why none was scored
    kinds = 1 if "skipped" in held else len(held["baselines"]) + len(held["variants"])
    assert after_predictor["predictors"] == 3 * scored + (len(section["by_task"]) - scored) + kinds

    # SHAP per task and pooled, two measures per head
    assert after_predictor["head_effects"] % heads == 0 and after_predictor["head_effects"] > 0

    small = InterventionConfig(train_per_task=2, heldout_per_task=2, sizes=(1, 2), random_sets=3,
                               greedy_candidates=2, bootstrap=50)
    sweep = sweep_run(atlas_run, SweepConfig(scenarios=8, repeats=2, batch_size=4), engine,
                      tiny_target, small)
    assert {p["strategy"] for p in sweep["points"]} >= {"causal", "random"}
    after_sweep = _counts(engine)
    assert after_sweep["head_effects"] > after_predictor["head_effects"]  # causal ones added
    section = intervention_summary(engine, "atlas")
    for task, methods in section["by_task"].items():
        assert set(methods["random"]) == {"1", "2"}
        for method in ("shap", "causal", "greedy"):
            for size, v in methods.get(method, {}).items():
                assert len(v["heads"]) == int(size) and 0 <= v["share_of_random_beaten"] <= 1
                lo, hi = v["accuracy_change_ci"]
                assert lo <= v["accuracy_change"] <= hi
    assert set(section["all"]) >= {"causal", "greedy"}
    assert section["verdict"]["best"]["method"] in section["all"]
    sweep_run(atlas_run, SweepConfig(scenarios=8, repeats=2, batch_size=4), engine, tiny_target,
              small)
    assert _counts(engine) == after_sweep


def test_stages_in_the_wrong_order_say_what_to_run(tmp_path, atlas_run, tiny_target):
    engine = migrated_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(ValueError, match="apmae cluster"):
        predictor_run(atlas_run, PredictorConfig(), engine)
    with pytest.raises(ValueError, match="apmae predictor train"):
        sweep_run(atlas_run, SweepConfig(), engine, tiny_target)


def test_cli_runs_the_stages_and_the_report_shows_them(tmp_path, atlas_run, monkeypatch, capsys):
    from apmae.cli import main

    home = tmp_path / "home"
    shutil.copytree(atlas_run.path, home / "runs" / "atlas")
    monkeypatch.setenv("APMAE_HOME", str(home))
    assert main(["cluster", "--run", "atlas"]) == 0
    assert main(["predictor", "train", "--run", "atlas", "--min-per-class", "3", "--folds", "3",
                 "--max-iter", "20"]) == 0
    capsys.readouterr()
    assert main(["report", "--run", "atlas", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clusters"]["heads"] == atlas_run.meta()["layers"] * atlas_run.meta()["heads"]
    assert "all" in report["predictor"]["by_task"]
    held = report["predictor"]["heldout"]
    assert held.get("skipped") or {"task_prior", "pattern_stats", "row_stats"} <= set(held["baselines"])
    assert main(["sweep", "--run", "nope"]) == 2


def _bytes_written() -> int:
    """Bytes this process has written so far, to any file (Linux's ``/proc/self/io``)."""
    return int(next(line.split()[1] for line in Path("/proc/self/io").read_text().splitlines()
                    if line.startswith("wchar:")))


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts bytes with /proc/self/io")
def test_storing_a_head_writes_as_much_however_many_heads_are_done(tmp_path, atlas_run,
                                                                   monkeypatch):
    """Clustering a wide run writes each head's own rows and nothing else, so the bytes
    written per head stay flat as heads accumulate (rewriting every head's arrays after each
    head grows with the heads done: quadratic at 720 heads). What is read back to place new
    patterns is exactly what clustering computed. Clustering itself is a fixed split into 3
    clusters here: only the writes are measured. Few scenarios: the memberships' index by
    scenario takes a head's rows at one place per scenario, so its pages touched per head grow
    with the heads done up to the number of scenarios (a bound, reached early), not beyond."""
    from apmae.atlas import cluster_stage
    from apmae.atlas.cluster import _summarise

    run = Run("wide", path=tmp_path / "wide")
    shutil.copytree(atlas_run.path, run.path, ignore=shutil.ignore_patterns("embeddings"))
    keys = [r["id"] for r in atlas_run.results()][:4]
    heads, width = 96, 1024
    store = run.embeddings(StoreMeta(layers=1, heads=heads, window=0, model="wide",
                                     dtype="float32", width=width))
    store.append(keys, np.random.default_rng(0).normal(size=(len(keys), 1, heads, width)))
    written, computed = [], []

    def split_in_3(x, cfg):
        written.append(_bytes_written())
        computed.append(_summarise(x, np.arange(len(x)) % 3, np.zeros((len(x), 2), np.float32), cfg))
        return computed[-1]

    monkeypatch.setattr(cluster_stage, "cluster_head", split_in_3)
    engine = migrated_engine(f"sqlite:///{tmp_path / 'wide.db'}")
    assert cluster_run(run, ClusterConfig(workers=1), engine) == heads
    per_head = np.diff(written)  # storing head i: up to the clustering of head i + 1
    early, late = np.median(per_head[:16]), np.median(per_head[-16:])
    assert late < 1.5 * early, f"a head's writes grew from {early:.0f} to {late:.0f} bytes"
    placing = head_assignments(engine, "wide")
    assert sorted(placing) == [(0, h) for h in range(heads)]
    for h, hc in enumerate(computed):
        for got, want in zip(placing[0, h], (hc.centers, hc.center_labels, hc.radii)):
            np.testing.assert_array_equal(got, want)


def test_a_head_without_centers_is_clustered_again(tmp_path, atlas_run):
    """A head clustered before medoids moved into SQL (migration 0006 leaves its centers
    null) places no pattern and is clustered again by the next run, alone."""
    engine = migrated_engine(f"sqlite:///{tmp_path / 'old.db'}")
    heads = atlas_run.meta()["layers"] * atlas_run.meta()["heads"]
    cfg = ClusterConfig(workers=1)
    assert cluster_run(atlas_run, cfg, engine) == heads
    before = head_assignments(engine, "atlas")
    with session_scope(engine) as s:
        head_id, *old = s.execute(select(m.Head.id, m.Head.layer, m.Head.head)
                                  .where(m.Head.n_clusters > 0).limit(1)).one()
        s.execute(m.Cluster.__table__.update().where(m.Cluster.head_id == head_id)
                  .values(center=None, radius=None))
    old = tuple(old)
    assert old not in head_assignments(engine, "atlas")
    assert cluster_run(atlas_run, cfg, engine) == 1
    after = head_assignments(engine, "atlas")
    assert sorted(after) == sorted(before)
    for a, b in zip(after[old], before[old]):
        np.testing.assert_array_equal(a, b)


def test_a_fingerprint_of_older_fields_reclusters_every_head(tmp_path, atlas_run):
    """Runs clustered before ``ClusterConfig.selection`` became ``cluster_selection`` hold the
    old field name in their stored settings: the next run reads them as other settings and
    clusters every head again under the new fingerprint, no error."""
    engine = migrated_engine(f"sqlite:///{tmp_path / 'renamed.db'}")
    heads = atlas_run.meta()["layers"] * atlas_run.meta()["heads"]
    cfg = ClusterConfig(workers=1)
    assert cluster_run(atlas_run, cfg, engine) == heads
    with session_scope(engine) as s:
        run = s.scalar(select(m.Run).where(m.Run.name == "atlas"))
        new = run.settings["cluster"]
        config = dict(new["config"])
        config["selection"] = config.pop("cluster_selection")
        run.settings = {**run.settings, "cluster": {**new, "config": config}}
    assert cluster_run(atlas_run, cfg, engine) == heads
    with session_scope(engine) as s:
        assert s.scalar(select(m.Run.settings).where(m.Run.name == "atlas"))["cluster"] == new
    assert len(head_assignments(engine, "atlas")) == heads


def test_heads_clustered_in_parallel_equal_one_process(tmp_path, atlas_run):
    def rows(workers: int) -> tuple[list, list, dict]:
        engine = migrated_engine(f"sqlite:///{tmp_path / f'w{workers}.db'}")
        cluster_run(atlas_run, ClusterConfig(workers=workers), engine)
        with session_scope(engine) as s:
            # by (layer, head): heads finish, and get their ids, in any order
            members = s.execute(select(m.Head.layer, m.Head.head, m.Scenario.key, m.Membership.label,
                                       m.Membership.x, m.Membership.y)
                                .join(m.Head, m.Head.id == m.Membership.head_id)
                                .join(m.Scenario, m.Scenario.id == m.Membership.scenario_id)
                                .order_by(m.Head.layer, m.Head.head, m.Scenario.key)).all()
            clusters = s.execute(select(m.Head.layer, m.Head.head, m.Cluster.label, m.Cluster.size,
                                        m.Cluster.exemplars).join(m.Head, m.Head.id == m.Cluster.head_id)
                                 .order_by(m.Head.layer, m.Head.head, m.Cluster.label)).all()
        placing = {head: [a.tolist() for a in arrays]
                   for head, arrays in sorted(head_assignments(engine, atlas_run.name).items())}
        return members, clusters, placing

    parallel, inline = rows(2), rows(1)
    assert parallel[1] == inline[1]  # clusters
    assert parallel[2] == inline[2]  # medoids and radii for assignment
    assert parallel[0] == inline[0]  # labels and map positions


def test_heads_are_chosen_on_the_train_split_and_tested_on_held_out_only(tmp_path, atlas_run,
                                                                        tiny_target, monkeypatch):
    """A leak would be a held-out scenario reaching the single-head effects or the greedy
    search (which choose heads), or a train-split one reaching the evaluation."""
    from apmae.atlas import sweep_stage

    engine = migrated_engine(f"sqlite:///{tmp_path / 'leak.db'}")
    cluster_run(atlas_run, ClusterConfig(), engine)
    predictor_run(atlas_run, PredictorConfig(max_iter=20, min_per_class=3, folds=3), engine)
    seen: dict[str, set] = {"choose": set(), "test": set()}

    def spy(name, fn):
        def wrapped(target, scenarios, *args, **kwargs):
            seen[name] |= {s.split for s in scenarios}
            return fn(target, scenarios, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(sweep_stage, "single_head_scores", spy("choose", sweep_stage.single_head_scores))
    monkeypatch.setattr(sweep_stage, "greedy", spy("choose", sweep_stage.greedy))
    monkeypatch.setattr(sweep_stage, "evaluate", spy("test", sweep_stage.evaluate))
    sweep_run(atlas_run, SweepConfig(scenarios=4, repeats=1, batch_size=4), engine, tiny_target,
              InterventionConfig(train_per_task=2, heldout_per_task=2, sizes=(1,), random_sets=2,
                                 greedy_candidates=2, bootstrap=20))
    assert seen == {"choose": {"train"}, "test": {"test"}}
