"""Faults: ``kill -9`` in the middle of each stage, then the same command again.

Each test starts the real CLI (``python -m apmae ...``) in a session of its own, waits for the
stage's first durable progress, SIGKILLs it there, and checks what the kill left: every file
under its real name is whole (temporary ``.name.*.tmp`` files may lie about; nothing reads
them) and the SQL store holds only whole units. Then it runs the same command again to the end
(in this process) and compares the result with the same command run without a kill on a
second copy (in a thread of this process while the killed one starts): the same results, the
same store ids and contents, the same SQL rows counted by natural key, a model that loads.

A kill must land mid-stage: a stage that finished first is retried at a longer size, and a
test fails rather than pass on a kill that came too late.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select

import apmae
from apmae.atlas.cluster_stage import cluster_run
from apmae.atlas.predictor_stage import predictor_run
from apmae.atlas.sweep_stage import sweep_run
from apmae.cli import main
from apmae.configs import ClusterConfig, InterventionConfig, PredictorConfig, SweepConfig
from apmae.db import models as m
from apmae.db.session import migrated_engine
from apmae.db.session import make_engine, session_scope
from apmae.mae.model import APMAEModel
from apmae.run import Run
from apmae.scenarios import mine, write_scenarios
from apmae.store.arrays import ArrayStore

#: One thread everywhere: the killed process, its rerun and the straight run compute alike.
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
#: The checkout whose apmae this process imports, which the killed processes run too.
CHECKOUT = Path(apmae.__file__).resolve().parents[1]
#: Folders of a built run that a stage's test starts without (it builds them itself).
BUILT = ("mae", "embeddings", "pattern_stats")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the kill ---------------------------------------------------------------------------------


@dataclass
class Killed:
    returncode: int
    stdout: str
    stderr: str

    @property
    def by_sigkill(self) -> bool:
        return self.returncode == -signal.SIGKILL


def kill_when(args: list[str], home: Path, url: str | None, progressed: Callable[[], bool],
              meanwhile: Callable[[], None] | None = None, timeout: float = 300) -> Killed:
    """Run ``apmae <args>`` under ``home`` (and database ``url``) and SIGKILL it as soon as
    ``progressed()``; ``meanwhile`` (the straight run the killed one is compared with) runs in
    a thread of this process meanwhile, and is waited for. A process that ends by itself is not
    killed; the caller tells a kill mid-stage from one too late."""
    env = {**os.environ, **THREADS, "APMAE_HOME": str(home),
           # the code under test, not whichever checkout is installed (a worktree's tests)
           "PYTHONPATH": os.pathsep.join([str(CHECKOUT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("APMAE_DEBUG", None)
    if url:
        env["APMAE_DATABASE_URL"] = url
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "apmae", *args], env=env, cwd=home,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
    pool = ThreadPoolExecutor(1)
    try:
        straight = pool.submit(meanwhile) if meanwhile else None
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if progressed():
                os.kill(proc.pid, signal.SIGKILL)
                break
            assert time.monotonic() < deadline, f"apmae {args[0]}: no progress in {timeout} s"
            time.sleep(0.005)
        proc.wait()
        if straight is not None:
            straight.result()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: it and any child
            proc.wait()
        pool.shutdown(wait=True)
    return Killed(proc.returncode, (logs / "stdout").read_text(errors="replace"),
                  (logs / "stderr").read_text(errors="replace"))


def succeeds(args: list[str]) -> Callable[[], None]:
    """``apmae <args>`` in this process, which must succeed: the straight run."""
    def run() -> None:
        assert main(args) == 0, f"apmae {' '.join(args)} failed"
    return run


def not_midway(killed: Killed, why: str) -> str:
    """The line logged when a kill came too late and the stage is retried longer; a stage
    that failed by itself fails the test at once."""
    assert killed.returncode in (0, -signal.SIGKILL), f"apmae failed by itself:\n{killed.stderr}"
    return (f"kill not mid-stage ({why}; exit {killed.returncode}); retrying a longer stage\n"
            f"{killed.stderr[-500:]}")


def use_home(monkeypatch, home: Path, url: str | None = None) -> None:
    """Point this process's CLI at ``home`` (and ``url``)."""
    monkeypatch.setenv("APMAE_HOME", str(home))
    if url:
        monkeypatch.setenv("APMAE_DATABASE_URL", url)


def copy_run(source: Run, home: Path, name: str, keep: tuple[str, ...] = ()) -> Run:
    """A copy of ``source`` as run ``name`` under ``home``, without the stages built on it
    but those in ``keep``."""
    path = home / "runs" / name
    shutil.copytree(source.path, path,
                    ignore=shutil.ignore_patterns(*(b for b in BUILT if b not in keep)))
    return Run(name, path=path)


# --- what a kill may leave --------------------------------------------------------------------


def assert_whole_files(root: Path) -> None:
    """Every file under a real name is complete: a kill may leave hidden temporaries
    (``.name.*.tmp``, :func:`apmae.paths.atomic_path`) and a torn last result line (cut on
    the next append, ignored until then), never a half-written file under its real name."""
    from safetensors.torch import load_file

    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(p.startswith(".") for p in path.relative_to(root).parts):
            continue
        name = path.name
        try:
            if name.endswith(".npy"):
                np.load(path)
            elif name.endswith(".npz"):
                with np.load(path) as z:
                    [z[k] for k in z.files]
            elif name.endswith(".json"):
                json.loads(path.read_text())
            elif name.endswith(".jsonl"):
                for line in path.read_bytes().split(b"\n")[:-1]:  # the last is b"" or torn
                    json.loads(line)
            elif name.endswith(".pt"):
                torch.load(path, weights_only=False)
            elif name.endswith(".safetensors"):
                load_file(path)
        except Exception as e:
            raise AssertionError(f"{path.relative_to(root)} is not whole: {e!r}") from e


def assert_store_committed(root: Path) -> ArrayStore:
    """Every shard an ids file commits loads with one row per id; no id is stored twice."""
    ids = []
    for ids_file in sorted((root / "shards").glob("*.ids.json")):
        rows = json.loads(ids_file.read_text())
        shard = np.load(ids_file.with_name(ids_file.name.replace(".ids.json", ".npy")))
        assert shard.shape[0] == len(rows), ids_file
        ids += rows
    assert len(ids) == len(set(ids)), f"{root}: an id stored twice"
    store = ArrayStore(root)
    assert store.ids() == ids
    return store


def assert_same_store(a: ArrayStore, b: ArrayStore) -> None:
    assert a.ids() == b.ids()
    for i in a.ids():
        np.testing.assert_array_equal(a.get(i), b.get(i), err_msg=i)


def complete_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


#: Natural key length of each table's rows in :func:`sql_rows`.
NATURAL = {"runs": 1, "scenarios": 1, "heads": 2, "clusters": 3, "memberships": 3,
           "sweep_points": 3, "head_effects": 4, "interventions": 3}


def sql_rows(url: str) -> dict[str, list[tuple]]:
    """Every row of every table, by natural key instead of surrogate ids, sorted by it;
    asserts no natural key occurs twice."""
    engine = make_engine(url)
    try:
        with session_scope(engine) as s:
            key = dict(s.execute(select(m.Scenario.id, m.Scenario.key)).all())
            head = {i: (l, h) for i, l, h in s.execute(select(m.Head.id, m.Head.layer, m.Head.head))}
            rows = {
                "runs": s.execute(select(m.Run.name, m.Run.model, m.Run.window, m.Run.layers,
                                         m.Run.heads)).all(),
                "scenarios": s.execute(select(
                    m.Scenario.key, m.Scenario.task, m.Scenario.split, m.Scenario.target,
                    m.Scenario.completion, m.Scenario.correct_exact, m.Scenario.correct_first_token,
                    m.Scenario.logprob_target_first)).all(),
                "heads": s.execute(select(m.Head.layer, m.Head.head, m.Head.n_clusters,
                                          m.Head.noise_share, m.Head.importance)).all(),
                "clusters": [(*head[c.head_id], c.label, c.size, key.get(c.medoid_scenario_id),
                              json.dumps(c.exemplars), json.dumps(c.by_task, sort_keys=True),
                              json.dumps(c.by_correct, sort_keys=True), c.center, c.radius)
                             for c in s.scalars(select(m.Cluster))],
                "memberships": [(*head[hid], key[sid], label, x, y) for sid, hid, label, x, y in
                                s.execute(select(m.Membership.scenario_id, m.Membership.head_id,
                                                 m.Membership.label, m.Membership.x, m.Membership.y))],
                "sweep_points": s.execute(select(
                    m.SweepPoint.strategy, m.SweepPoint.n_heads, m.SweepPoint.repeat,
                    m.SweepPoint.accuracy,
                    m.SweepPoint.incorrect_to_correct, m.SweepPoint.correct_to_incorrect,
                    m.SweepPoint.loss_change, m.SweepPoint.heads)).all(),
                "head_effects": s.execute(select(
                    m.HeadEffect.task, m.HeadEffect.measure, m.HeadEffect.layer, m.HeadEffect.head,
                    m.HeadEffect.value, m.HeadEffect.lo, m.HeadEffect.hi, m.HeadEffect.n)).all(),
                "interventions": [(t, meth, size, json.dumps(h), json.dumps(mt, sort_keys=True))
                                  for t, meth, size, h, mt in s.execute(select(
                                      m.Intervention.task, m.Intervention.method,
                                      m.Intervention.size, m.Intervention.heads,
                                      m.Intervention.metrics))],
            }
    finally:
        engine.dispose()
    out = {}
    for table, table_rows in rows.items():
        k = NATURAL[table]
        table_rows = sorted((tuple(r) for r in table_rows), key=lambda r: r[:k])
        keys = [r[:k] for r in table_rows]
        assert len(set(keys)) == len(keys), f"{table}: duplicate rows"
        out[table] = table_rows
    return out


def heads_in_sql(db: Path) -> int:
    """Heads committed so far, read while the stage writes (WAL: the reader blocks nothing)."""
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.05)) as conn:
            return conn.execute("SELECT count(*) FROM heads").fetchone()[0]
    except sqlite3.Error:  # not migrated yet, or locked for a moment
        return 0


# --- extract ----------------------------------------------------------------------------------


def test_extract_killed_mid_run_resumes_to_the_same_run(tmp_path, split_corpus, tiny_model_dir,
                                                       tiny_target, monkeypatch):
    """``apmae extract`` killed after its first result lines: every result line and committed
    shard it left is whole; the rerun adds exactly the missing scenarios, and results and
    pattern store equal a straight extraction's, byte for byte and id for id."""
    for per_task in (8, 30):  # 80 scenarios, then (if it finished before the kill) more
        scenarios = tmp_path / f"scenarios-{per_task}.jsonl"
        total = write_scenarios(mine(str(split_corpus), tiny_target.tokenizer, per_task=per_task,
                                     seed=0, window=64), scenarios)
        args = ["extract", "--scenarios", str(scenarios), "--model", str(tiny_model_dir),
                "--run", "ex", "--batch-size", "1"]
        home, straight_home = tmp_path / f"killed-{per_task}", tmp_path / f"straight-{per_task}"
        run, straight = Run("ex", path=home / "runs" / "ex"), Run("ex", path=straight_home / "runs" / "ex")
        use_home(monkeypatch, straight_home)
        killed = kill_when(args, home, None, lambda run=run: complete_lines(run.results_path) >= 1,
                           meanwhile=succeeds(args))
        done = len(list(run.results()))
        if killed.by_sigkill and done < total:
            break
        print(not_midway(killed, f"{done} of {total} results"))
    else:
        pytest.fail(f"extract finished before every kill: {killed}")
    print(f"extract killed after {done} of {total} results")

    assert_whole_files(run.path)
    store = assert_store_committed(run.patterns_path)
    ids = [r["id"] for r in run.results()]
    assert len(ids) == len(set(ids)) == done
    assert set(ids) <= set(store.ids())  # patterns are durable before their results
    assert len(store) <= done + 1  # at most the batch in flight beyond the results

    use_home(monkeypatch, home)
    assert main(args) == 0
    assert run.results_path.read_bytes() == straight.results_path.read_bytes()
    assert_same_store(assert_store_committed(run.patterns_path), straight.pattern_store())
    assert len(run.pattern_store()) == total
    assert_whole_files(run.path)


# --- AP-MAE training --------------------------------------------------------------------------


def test_mae_train_killed_mid_run_resumes_to_the_same_model(tmp_path, pattern_run, monkeypatch):
    """``apmae mae train --resume`` killed after its first checkpoint: the checkpoint loads
    and no model is saved yet; the rerun continues from the checkpoint to exactly the weights
    and loss curve of a straight run, each step logged once."""
    for steps in (24, 120):
        args = ["mae", "train", "--run", "mt", "--resume", "--batch-size", "8", "--steps",
                str(steps), "--warmup", "1", "--head-fraction", "0.5", "--checkpoint-every", "2",
                "--threads", "1"]
        home, straight_home = tmp_path / f"killed-{steps}", tmp_path / f"straight-{steps}"
        run, straight = copy_run(pattern_run, home, "mt"), copy_run(pattern_run, straight_home, "mt")
        out = run.path / "mae"
        use_home(monkeypatch, straight_home)
        killed = kill_when(args, home, None, lambda out=out: (out / "checkpoint.pt").exists(),
                           meanwhile=succeeds(args))
        if killed.by_sigkill and not (out / "model").exists():
            break
        print(not_midway(killed, "model saved"))
    else:
        pytest.fail(f"mae train finished before every kill: {killed}")

    assert_whole_files(run.path)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    at = ckpt["state"]["step"]
    print(f"mae train killed with its checkpoint at step {at} of {steps}")
    assert 2 <= at <= steps and (at % 2 == 0 or at == steps)
    assert [s["step"] for s in ckpt["state"]["log"]] == list(range(1, at + 1))
    assert not (out / "train_log.json").exists()

    use_home(monkeypatch, home)
    assert main(args) == 0
    model, reference = APMAEModel.from_pretrained(out / "model"), APMAEModel.from_pretrained(
        straight.path / "mae" / "model")
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0, msg=name)
    logs = [[(s["step"], s["loss"], s["lr"]) for s in json.loads(p.read_text())["log"]]
            for p in (out / "train_log.json", straight.path / "mae" / "train_log.json")]
    assert logs[0] == logs[1] and [s for s, _, _ in logs[0]] == list(range(1, steps + 1))
    assert_whole_files(run.path)


# --- encode -----------------------------------------------------------------------------------


def test_encode_killed_mid_run_resumes_to_the_same_embeddings(tmp_path, atlas_run, monkeypatch):
    """``apmae encode`` killed after its first embedding shard: the shards it committed load,
    every embedded scenario has its statistics (they are written first); the rerun embeds
    exactly the rest, to the embeddings and statistics of a straight run."""
    total = len(list(atlas_run.results()))
    for extra in ([], ["--no-bf16"]):  # fp32 is the slower encoder
        args = ["encode", "--run", "en", "--batch-size", "1", *extra]
        name = "-".join(["x", *extra])
        home, straight_home = tmp_path / f"killed{name}", tmp_path / f"straight{name}"
        run = copy_run(atlas_run, home, "en", keep=("mae",))
        straight = copy_run(atlas_run, straight_home, "en", keep=("mae",))
        shards = run.embeddings_path / "shards"
        use_home(monkeypatch, straight_home)
        killed = kill_when(args, home, None, lambda shards=shards: any(shards.glob("*.ids.json")),
                           meanwhile=succeeds(args))
        done = len(run.embeddings()) if shards.exists() else 0
        if killed.by_sigkill and done < total:
            break
        print(not_midway(killed, f"{done} of {total} embedded"))
    else:
        pytest.fail(f"encode finished before every kill: {killed}")

    assert_whole_files(run.path)
    embedded = assert_store_committed(run.embeddings_path)
    stats = assert_store_committed(run.pattern_stats_path)
    assert 1 <= len(embedded) < total
    print(f"encode killed after {len(embedded)} of {total} scenarios")
    assert set(embedded.ids()) <= set(stats.ids())

    use_home(monkeypatch, home)
    assert main(args) == 0
    assert len(run.embeddings()) == total
    assert_same_store(assert_store_committed(run.embeddings_path), straight.embeddings())
    assert_same_store(assert_store_committed(run.pattern_stats_path), straight.pattern_stats())
    assert_whole_files(run.path)


# --- cluster ----------------------------------------------------------------------------------


def test_cluster_killed_mid_run_resumes_without_duplicate_or_partial_rows(tmp_path, atlas_run,
                                                                          monkeypatch, capsys):
    """``apmae cluster --workers 1`` killed after its first head's commit: every head in SQL
    is whole (clusters, each with what places a new pattern in it, and a membership per
    scenario). The rerun clusters exactly the heads not in SQL, to the rows of a straight run:
    no duplicate, no stale, no missing row."""
    meta = atlas_run.meta()
    total, scenarios = meta["layers"] * meta["heads"], len(list(atlas_run.results()))
    for epochs in (200, 2000):  # UMAP's optimisation: the longer head
        args = ["cluster", "--run", "cl", "--workers", "1", "--n-epochs", str(epochs)]
        home, straight_home = tmp_path / f"killed-{epochs}", tmp_path / f"straight-{epochs}"
        run = copy_run(atlas_run, home, "cl", keep=("mae", "embeddings", "pattern_stats"))
        copy_run(atlas_run, straight_home, "cl", keep=("mae", "embeddings", "pattern_stats"))
        db, url = home / "atlas.db", f"sqlite:///{home / 'atlas.db'}"
        straight_url = f"sqlite:///{straight_home / 'atlas.db'}"
        use_home(monkeypatch, straight_home, straight_url)
        killed = kill_when(args, home, url, lambda db=db: heads_in_sql(db) >= 1,
                           meanwhile=succeeds(args))
        done = len(sql_rows(url)["heads"]) if db.exists() else 0
        if killed.by_sigkill and done < total:
            break
        print(not_midway(killed, f"{done} of {total} heads"))
    else:
        pytest.fail(f"cluster finished before every kill: {killed}")
    capsys.readouterr()

    assert_whole_files(run.path)
    rows = sql_rows(url)
    in_sql = {(l, h) for l, h, *_ in rows["heads"]}
    assert 1 <= len(in_sql) < total
    assert len(rows["memberships"]) == scenarios * len(in_sql)
    for layer, head in in_sql:
        clusters = [r for r in rows["clusters"] if r[:2] == (layer, head)]
        assert sum(r[3] for r in clusters) == scenarios, f"head {layer},{head} is partial"
        # center and radius: present for a cluster, absent for the noise
        assert all((r[-2] is None) == (r[-1] is None) == (r[2] == -1) for r in clusters)
    assert len(rows["scenarios"]) == scenarios

    use_home(monkeypatch, home, url)
    assert main(args) == 0
    clustered = int(re.search(r"clustered (\d+) heads", capsys.readouterr().err).group(1))
    print(f"cluster killed after {len(in_sql)} of {total} heads")
    assert clustered == total - len(in_sql)  # resumed: the heads done are not redone
    assert sql_rows(url) == sql_rows(straight_url)
    assert_whole_files(run.path)


def test_cluster_interrupted_under_new_settings_keeps_no_stale_head(tmp_path, atlas_run,
                                                                     monkeypatch):
    """A clustering under new settings stopped between heads (each head commits on its own,
    so in SQL this is any kill between two heads' commits) over a run clustered with other
    settings, then rerun: it resumes, and every head has the new settings' clusters, none the
    old, as a straight clustering with the new settings into an empty database."""
    from apmae.atlas import cluster_stage

    old = ClusterConfig(workers=1, n_epochs=50)
    new = ClusterConfig(workers=1, n_epochs=50, n_neighbors=5, min_samples=2, min_cluster_size=3)
    built = ("mae", "embeddings", "pattern_stats")
    run = copy_run(atlas_run, tmp_path / "a", "cl", keep=built)
    url = f"sqlite:///{tmp_path / 'a' / 'atlas.db'}"
    engine = migrated_engine(url)
    meta = atlas_run.meta()
    total = meta["layers"] * meta["heads"]
    assert cluster_run(run, old, engine) == total
    before = sql_rows(url)

    real, stored = cluster_stage.store_head, []

    def dies_after_3(*a, **kw):
        if len(stored) == 3:
            raise KeyboardInterrupt  # the process dies here: 3 heads committed
        stored.append(real(*a, **kw))

    monkeypatch.setattr(cluster_stage, "store_head", dies_after_3)
    with pytest.raises(KeyboardInterrupt):
        cluster_run(run, new, engine)
    monkeypatch.setattr(cluster_stage, "store_head", real)
    assert cluster_run(run, new, engine) == total - 3

    straight = copy_run(atlas_run, tmp_path / "b", "cl", keep=built)
    straight_url = f"sqlite:///{tmp_path / 'b' / 'atlas.db'}"
    assert cluster_run(straight, new, migrated_engine(straight_url)) == total
    after, reference = sql_rows(url), sql_rows(straight_url)
    assert reference["memberships"] != before["memberships"]  # the settings make a difference
    assert after == reference


# --- sweep ------------------------------------------------------------------------------------


#: A line of ``apmae sweep``'s progress bar once it has scored a point.
SCORED = re.compile(rb"sweep:[^\r\n]*?\| *[1-9]\d*/\d+ ")


def _sweep_ready(source: Run, home: Path, target) -> str:
    """A copy of the encoded ``source`` as run ``sw``, clustered and with its predictor (and so
    its heads' SHAP) in SQL, and an earlier, smaller sweep's points and interventions; returns
    its database URL."""
    run = copy_run(source, home, "sw", keep=("embeddings", "pattern_stats"))
    url = f"sqlite:///{home / 'atlas.db'}"
    engine = migrated_engine(url)
    cluster_run(run, ClusterConfig(), engine)
    predictor_run(run, PredictorConfig(max_iter=10, min_per_class=3, folds=3), engine)
    sweep_run(run, SweepConfig(scenarios=4, repeats=1, batch_size=8), engine, target,
              InterventionConfig(train_per_task=1, heldout_per_task=1, sizes=(1,), random_sets=2,
                                 greedy_candidates=2, bootstrap=20))
    engine.dispose()
    return url


def test_sweep_killed_mid_run_keeps_the_old_points_whole(tmp_path, atlas_run, tiny_target,
                                                         monkeypatch):
    """``apmae sweep`` killed while it scores ablations, over a run with an earlier sweep's
    points: the points are all the old ones, none deleted or added (the new ones replace
    them in one transaction, never partially); the rerun stores exactly the points of a
    straight sweep, each (strategy, heads, repeat) once."""
    for repeats in (2, 12):
        args = ["sweep", "--run", "sw", "--scenarios", "8", "--repeats", str(repeats),
                "--batch-size", "1"]
        home, straight_home = tmp_path / f"killed-{repeats}", tmp_path / f"straight-{repeats}"
        url, straight_url = _sweep_ready(atlas_run, home, tiny_target), _sweep_ready(
            atlas_run, straight_home, tiny_target)
        old = sql_rows(url)
        stderr = home / "logs" / "stderr"
        use_home(monkeypatch, straight_home, straight_url)
        killed = kill_when(args, home, url,
                           lambda f=stderr: f.exists() and SCORED.search(f.read_bytes()) is not None,
                           meanwhile=succeeds(args))
        new = sql_rows(straight_url)
        after = sql_rows(url)
        assert after in (old, new), "the sweep's points are partly old, partly new"
        if killed.by_sigkill and after == old and "collapse" not in killed.stdout:
            break
        print(not_midway(killed, "the new points were stored"))
    else:
        pytest.fail(f"sweep finished before every kill: {killed}")

    assert old["sweep_points"] and old["sweep_points"] != new["sweep_points"]
    print(f"sweep killed at {SCORED.findall(stderr.read_bytes())[-1][-12:]!r}")
    use_home(monkeypatch, home, url)
    assert main(args) == 0
    assert sql_rows(url) == new
    assert len(new["sweep_points"]) == 1 + 4 * (4 + repeats)  # none, then n in 1, 2, 5, 8
