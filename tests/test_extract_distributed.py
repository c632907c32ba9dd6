"""Sharded extraction: ranks extract whole batches into parts, rank 0 merges them, and the
merged run is the single-process run byte for byte (under torchrun, and in-process for the
cases a launch cannot easily stage: a merge killed halfway, parts of another world size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from apmae.configs import ExtractConfig
import apmae.extract as extract_mod
from apmae.distributed import rank_device
from apmae.extract import extract
from apmae.run import Run
from apmae.scenarios import mine, write_scenarios

BATCH = 4


@pytest.fixture(scope="module")
def scenarios_file(tmp_path_factory, split_corpus, tiny_target) -> Path:
    """14 scenarios (one per task), window 64: four batches of ``BATCH``, two per rank."""
    path = tmp_path_factory.mktemp("scen") / "scenarios.jsonl"
    write_scenarios(mine(str(split_corpus), tiny_target.tokenizer, per_task=1, seed=0, window=64),
                    path)
    return path


@pytest.fixture(scope="module")
def single(tmp_path_factory, scenarios_file, tiny_target) -> dict[str, Run]:
    """The reference: one process, keep all and keep a sample."""
    root = tmp_path_factory.mktemp("single")
    runs = {}
    for keep in ("all", "sample:5"):
        runs[keep] = Run("single", path=root / keep.replace(":", "-"))
        extract(runs[keep], scenarios_file, tiny_target, ExtractConfig(batch_size=BATCH, keep=keep))
    return runs


def _files(run: Run) -> dict[str, bytes]:
    """Every file of the run by its path inside the run."""
    return {str(p.relative_to(run.path)): p.read_bytes()
            for p in sorted(run.path.rglob("*")) if p.is_file()}


def assert_same_run(got: Run, want: Run) -> None:
    """Same results in the same order, same patterns, and then the same bytes in every file."""
    assert [r["id"] for r in got.results()] == [r["id"] for r in want.results()]
    assert list(got.results()) == list(want.results())
    a, b = got.pattern_store(), want.pattern_store()
    assert a.ids() == b.ids() and len(a) > 0
    for i in b.ids():
        np.testing.assert_array_equal(a.get(i), b.get(i))
    assert not got.parts_path.exists()
    assert _files(got) == _files(want)


def _as_rank(monkeypatch, rank: int, world: int) -> None:
    """Make this process rank ``rank`` of ``world``; the barrier is the test's call order."""
    monkeypatch.setattr(extract_mod, "rank_and_world", lambda: (rank, world))
    monkeypatch.setattr(extract_mod.dist, "barrier", lambda timeout=None: None)


def _share(monkeypatch, run: Run, path: Path, target, keep: str, rank: int, world: int) -> int:
    _as_rank(monkeypatch, rank, world)
    return extract(run, path, target, ExtractConfig(batch_size=BATCH, keep=keep))


@pytest.mark.parametrize("can_link", [True, False])
def test_ranks_take_whole_batches_and_the_merge_is_the_single_run(
        tmp_path, monkeypatch, scenarios_file, single, tiny_target, can_link):
    """The merge hard-links each part's shards, or copies them where links fail."""
    real_link, links = os.link, []

    def link(src, dst):
        links.append(dst)
        if not can_link:
            raise OSError("no hard links here")
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    run = Run("sharded", path=tmp_path / "sharded")
    n_scenarios = len(list(single["sample:5"].results()))
    assert _share(monkeypatch, run, scenarios_file, tiny_target, "sample:5", 1, 2) > 0
    part = [r["id"] for r in run.part(1).results()]
    ids = [r["id"] for r in single["sample:5"].results()]
    assert part == [i for k, i in enumerate(ids) if k // BATCH % 2 == 1]  # batches 1, 3, ...
    assert not run.results_path.exists()  # nothing merged before rank 0 is done
    n0 = _share(monkeypatch, run, scenarios_file, tiny_target, "sample:5", 0, 2)
    assert n0 + len(part) == n_scenarios
    assert_same_run(run, single["sample:5"])
    assert len(links) == len(list((run.patterns_path / "shards").glob("*.npy"))) > 0


def test_a_merge_killed_halfway_resumes(tmp_path, monkeypatch, scenarios_file, single,
                                        tiny_target):
    run = Run("sharded", path=tmp_path / "sharded")
    _share(monkeypatch, run, scenarios_file, tiny_target, "all", 1, 2)
    real, merged = Run.append_results, []

    def killed_after_one_batch(self, rows):
        if self.path == run.path:
            if merged:
                raise KeyboardInterrupt
            merged.append(rows)
        real(self, rows)

    monkeypatch.setattr(Run, "append_results", killed_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        _share(monkeypatch, run, scenarios_file, tiny_target, "all", 0, 2)
    monkeypatch.setattr(Run, "append_results", real)
    assert len(list(run.results())) == BATCH and run.parts_path.exists()
    assert _share(monkeypatch, run, scenarios_file, tiny_target, "all", 0, 2) == 0  # only merges
    assert_same_run(run, single["all"])


def test_parts_of_another_world_size_are_not_redone(tmp_path, monkeypatch, scenarios_file,
                                                    single, tiny_target):
    run = Run("sharded", path=tmp_path / "sharded")
    earlier = _share(monkeypatch, run, scenarios_file, tiny_target, "all", 2, 3)  # then killed
    n = sum(_share(monkeypatch, run, scenarios_file, tiny_target, "all", r, 2) for r in (1, 0))
    assert earlier > 0 and earlier + n == len(list(single["all"].results()))
    assert_same_run(run, single["all"])


def test_a_torchrun_rank_loads_onto_its_own_gpu(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert rank_device("cuda") == torch.device("cuda")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rank_device("cuda") == torch.device("cuda", 1)
    assert rank_device("cuda:0") == torch.device("cuda", 0)  # an explicit index is kept
    assert rank_device("cpu") == torch.device("cpu")


def _torchrun_extract(home: Path, scenarios: Path, model: Path) -> None:
    env = {**os.environ, "APMAE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "apmae", "--", "extract", "--scenarios", str(scenarios), "--model", str(model),
           "--run", "sharded", "--batch-size", str(BATCH), "--keep", "all"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory, scenarios_file, tiny_model_dir) -> Run:
    home = tmp_path_factory.mktemp("home")
    _torchrun_extract(home, scenarios_file, tiny_model_dir)
    return Run("sharded", path=home / "runs" / "sharded")


def test_torchrun_with_two_processes_equals_one(torchrun_run, single):
    assert_same_run(torchrun_run, single["all"])
    assert json.loads(torchrun_run.meta_path.read_text())["keep"] == "all"


def test_torchrun_rerun_after_the_merge_changes_nothing(torchrun_run, scenarios_file,
                                                        tiny_model_dir):
    before = _files(torchrun_run)
    _torchrun_extract(torchrun_run.path.parent.parent, scenarios_file, tiny_model_dir)
    assert _files(torchrun_run) == before
    assert not torchrun_run.parts_path.exists()
