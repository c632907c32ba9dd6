"""The default run's stages: built once, resumed without duplicates, guarded against drift."""

from __future__ import annotations

import pytest

from apmae.configs import DemoConfig
from apmae.paths import DEFAULT_MODEL_DIR
from apmae.pipeline import build_default_run
from apmae.run import Run


def test_default_run_builds_and_resumes(tmp_path, java_dir, tiny_model_dir):
    run = Run("demo", tmp_path / "run")
    cfg = DemoConfig(per_task=1, heldout_per_task=0, window=64, keep="sample:5", batch_size=4,
                     atlas=False)
    build_default_run(run, cfg, source=str(java_dir), model=str(tiny_model_dir))
    first = [r["id"] for r in run.results()]
    assert len(first) == 14 and len(set(first)) == 14
    assert len(run.pattern_store()) == 5
    from apmae.corpus import data_identity

    # the run's facts name its corpus; a model other than the embedded one has no card to match
    assert run.meta()["corpus"] == {**data_identity(java_dir), "model_card_sha256": None,
                                    "matches_model_card": False}
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


def _jdk(root, name: str, payload: bytes):
    zip_path = root / name / "lib" / "src.zip"
    zip_path.parent.mkdir(parents=True)
    zip_path.write_bytes(payload)
    return zip_path


def test_the_default_corpus_is_the_one_the_model_card_names(tmp_path, monkeypatch):
    from apmae import corpus
    from apmae.corpus import CorpusError, data_identity
    from apmae.pipeline import choose_corpus

    other = _jdk(tmp_path, "temurin-25", b"another JDK's source")
    trained = _jdk(tmp_path, "openjdk-17", b"the source the model trained on")
    expected = data_identity(trained)
    monkeypatch.setattr(corpus, "JDK_GLOBS", (str(tmp_path / "*"),))
    monkeypatch.setenv("JAVA_HOME", str(other.parent.parent))  # the wrong JDK comes first
    installs = []
    # the matching JDK is found even where another one comes first
    assert choose_corpus(None, expected, False, install=lambda: installs.append(1)) == (
        str(trained), expected)
    assert installs == []
    # only the wrong JDK: installing is tried, then a refusal that names both and the way out
    trained.unlink()
    with pytest.raises(CorpusError, match="accept-corpus") as e:
        choose_corpus(None, expected, False, install=lambda: installs.append(1))
    assert installs == [1] and str(other) in str(e.value) and expected["sha256"][:12] in str(e.value)
    source, identity = choose_corpus(None, expected, True, install=lambda: None)
    assert source == str(other) and identity["sha256"] != expected["sha256"]
    # a corpus given explicitly is checked too; a model without a card is not
    with pytest.raises(CorpusError, match="not the corpus"):
        choose_corpus(str(other), expected, False)
    assert choose_corpus(str(other), None, False)[0] == str(other)


def test_the_embedded_model_names_its_corpus():
    from apmae.pipeline import trained_corpus

    card = trained_corpus()
    assert card["sha256"] in (DEFAULT_MODEL_DIR / "README.md").read_text()
    assert f"{card['bytes']:,}" in (DEFAULT_MODEL_DIR / "README.md").read_text()


def test_a_rebuild_skips_the_atlas_stages_that_ran_with_the_same_settings(tmp_path, split_corpus,
                                                                        tiny_model_dir, monkeypatch):
    from dataclasses import asdict

    from apmae.atlas import build
    from apmae.configs import InterventionConfig, PredictorConfig
    from apmae.db.session import migrated_engine, session_scope
    from apmae.pipeline import StageTimes

    monkeypatch.setenv("APMAE_HOME", str(tmp_path / "home"))
    run = Run("demo", tmp_path / "run")
    cfg = DemoConfig(per_task=2, heldout_per_task=2, window=64, keep="sample:20", batch_size=8,
                     mae_steps=2, sweep_scenarios=4)
    build_default_run(run, cfg, source=str(split_corpus), model=str(tiny_model_dir))
    times = StageTimes()
    build_default_run(run, cfg, source=str(split_corpus), model=str(tiny_model_dir), times=times)
    assert "predictor" not in times.seconds and times.seconds["cluster"] < 5

    engine = migrated_engine()
    assert build.settled(engine, run.name, predictor=asdict(PredictorConfig(seed=cfg.seed)))
    assert not build.settled(engine, run.name, predictor=asdict(PredictorConfig(seed=1)))
    selective = InterventionConfig()
    with session_scope(engine) as session:  # as sweep_run records it, with what it used
        build.set_settings(session, session.scalar(build.select(build.m.Run.id)),
                            intervention={**asdict(selective), "train_used": 3})
    assert build.settled(engine, run.name, intervention=asdict(selective))  # sizes: tuple vs list
    assert not build.settled(engine, run.name, intervention=asdict(InterventionConfig(sizes=(2,))))
    assert not build.settled(engine, run.name, sweep={"scenarios": 4})  # never ran
