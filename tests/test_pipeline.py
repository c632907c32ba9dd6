"""The default run's stages: built once, resumed without duplicates, guarded against drift."""

from __future__ import annotations

import pytest

from apmae.pipeline import DemoConfig, build_default_run
from apmae.run import Run


def test_default_run_builds_and_resumes(tmp_path, java_dir, tiny_model_dir):
    run = Run("demo", tmp_path / "run")
    cfg = DemoConfig(per_task=1, heldout_per_task=0, window=64, keep="sample:5", batch_size=4,
                     atlas=False)
    build_default_run(run, cfg, source=str(java_dir), model=str(tiny_model_dir))
    first = [r["id"] for r in run.results()]
    assert len(first) == 14 and len(set(first)) == 14
    assert len(run.pattern_store()) == 5
    build_default_run(run, cfg, source=str(java_dir), model=str(tiny_model_dir))  # nothing to do
    assert [r["id"] for r in run.results()] == first


def test_default_run_refuses_other_settings_over_existing_results(tmp_path, java_dir,
                                                                  tiny_model_dir):
    run = Run("demo", tmp_path / "run")
    build_default_run(run, DemoConfig(per_task=1, heldout_per_task=0, window=64, keep="none", atlas=False), source=str(java_dir),
                      model=str(tiny_model_dir))
    with pytest.raises(ValueError, match="other settings"):
        build_default_run(run, DemoConfig(per_task=2, heldout_per_task=0, window=64, keep="none", atlas=False),
                          source=str(java_dir), model=str(tiny_model_dir))


def test_default_run_builds_the_atlas_too(tmp_path, split_corpus, tiny_model_dir, monkeypatch):
    from apmae.report import build_report

    monkeypatch.setenv("APMAE_HOME", str(tmp_path / "home"))
    run = Run("demo", tmp_path / "run")
    cfg = DemoConfig(per_task=2, heldout_per_task=2, window=64, keep="sample:20", batch_size=8,
                     mae_steps=2)
    build_default_run(run, cfg, source=str(split_corpus), model=str(tiny_model_dir))
    report = build_report(run)
    assert report["reconstruction"]["mse"] > 0
    assert report["clusters"]["heads"] == run.meta()["layers"] * run.meta()["heads"]
    assert "predictor" in report


def test_default_run_mines_a_held_out_share_of_its_own(tmp_path, split_corpus, tiny_model_dir):
    run = Run("demo", tmp_path / "run")
    cfg = DemoConfig(per_task=2, heldout_per_task=1, window=64, keep="none", atlas=False)
    build_default_run(run, cfg, source=str(split_corpus), model=str(tiny_model_dir))
    rows = list(run.results())
    test = [r for r in rows if r["split"] == "test"]
    assert test and all(r["task"] != "noise" for r in test)
    assert {r["split"] for r in rows if r["task"] != "noise"} == {"train", "test"}
