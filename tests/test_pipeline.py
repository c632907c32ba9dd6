"""The default run's stages: built once, resumed without duplicates, guarded against drift."""

from __future__ import annotations

import pytest

from apmae.pipeline import DemoConfig, build_default_run
from apmae.run import Run


def test_default_run_builds_and_resumes(tmp_path, java_dir, tiny_model_dir):
    run = Run("demo", tmp_path / "run")
    cfg = DemoConfig(per_task=1, window=64, keep="sample:5", batch_size=4)
    build_default_run(run, cfg, source=str(java_dir), model=str(tiny_model_dir))
    first = [r["id"] for r in run.results()]
    assert len(first) == 14 and len(set(first)) == 14
    assert len(run.pattern_store()) == 5
    build_default_run(run, cfg, source=str(java_dir), model=str(tiny_model_dir))  # nothing to do
    assert [r["id"] for r in run.results()] == first


def test_default_run_refuses_other_settings_over_existing_results(tmp_path, java_dir,
                                                                  tiny_model_dir):
    run = Run("demo", tmp_path / "run")
    build_default_run(run, DemoConfig(per_task=1, window=64, keep="none"), source=str(java_dir),
                      model=str(tiny_model_dir))
    with pytest.raises(ValueError, match="other settings"):
        build_default_run(run, DemoConfig(per_task=2, window=64, keep="none"),
                          source=str(java_dir), model=str(tiny_model_dir))
