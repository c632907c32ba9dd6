"""The default run, stage by stage; every stage skips work that is already done.

``apmae demo`` calls :func:`build_default_run`: mine scenarios from the JDK's source with the
embedded model's tokenizer, complete them and capture their patterns, then the atlas: train and
evaluate AP-MAE, encode every pattern, cluster every head, train the correctness predictor and
sweep head ablations. Each stage reuses what an earlier build left. Where the AP-MAE is known
before extraction (the shipped one), extraction encodes each batch while its patterns are in
memory, instead of a second forward pass over every scenario whose patterns are not kept.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .configs import (ClusterConfig, DemoConfig, EncodeConfig, ExtractConfig, InterventionConfig,
                      MAEEvalConfig, MAETrainConfig, PredictorConfig, SweepConfig)
from .corpus import (CorpusError, data_identity, default_source, find_jdk_src_zip, jdk_src_zips,
                     matching_corpus)
from .extract import Sink, extract
from .lm.load import TargetModel, load_target
from .paths import DEFAULT_MODEL_DIR
from .run import Run
from .scenarios import TASKS, mine, write_scenarios


@dataclass
class StageTimes:
    """Wall seconds per stage of one build (a stage with nothing left to do takes ~0)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


def trained_corpus() -> dict | None:
    """The identity (path, bytes, SHA-256) of the corpus the embedded model was trained on."""
    path = DEFAULT_MODEL_DIR / "data.json"
    return json.loads(path.read_text()) if path.exists() else None


def _install_jdk_source() -> None:
    """On Debian, ``apt-get install openjdk-17-source`` (the default corpus)."""
    if not shutil.which("apt-get"):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print("installing openjdk-17-source (the default corpus)...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-q"], check=False, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "openjdk-17-source"], check=False, env=env)


def choose_corpus(source: str | None, expected: dict | None, accept_other: bool,
                  install: Callable[[], None] = _install_jdk_source) -> tuple[str, dict]:
    """The corpus to mine and its identity: ``source`` if given, else the JDK source whose
    bytes are ``expected``'s (installed when missing), checked against ``expected``.

    The corpus is split by directory into what the model trained on and what is held out; on
    another corpus the held-out split can hold code the model saw, so a corpus that is not
    ``expected`` is refused unless ``accept_other``."""
    if source is None and expected is not None:
        found = matching_corpus(expected, jdk_src_zips())
        if found is None:
            install()
            found = matching_corpus(expected, jdk_src_zips())
        if found is not None:
            return str(found[0]), found[1]
    if source is None:
        if find_jdk_src_zip() is None:
            install()
        try:
            source = default_source()
        except CorpusError as e:
            raise CorpusError(f"{e}; or pass a corpus explicitly") from None
    identity = data_identity(source) if Path(source).exists() else {"path": source}
    if expected is not None and identity.get("sha256") != expected["sha256"] and not accept_other:
        have = (f"{identity['bytes']:,} bytes, SHA-256 {identity['sha256'][:12]}…"
                if "sha256" in identity else "not a local file")
        raise CorpusError(
            f"{source} ({have}) is not the corpus the default model was trained on: {expected['path']} "
            f"({expected['bytes']:,} bytes, SHA-256 {expected['sha256'][:12]}…). On another corpus "
            "the held-out split may hold code the model trained on. Install it (Debian: "
            "apt-get install openjdk-17-source) or point JAVA_HOME at that JDK; or pass "
            "--accept-corpus to mine this one anyway")
    return source, identity


def build_default_run(run: Run, cfg: DemoConfig, source: str | None = None,
                      model: str | None = None, times: StageTimes | None = None) -> Run:
    """Mine (once) and extract (resumably) the default run, then build its atlas; ``model``
    None is the embedded one. ``times`` collects each stage's wall time."""
    times = times or StageTimes()
    expected = trained_corpus() if model is None else None
    source, identity = choose_corpus(source, expected, cfg.accept_corpus)
    run.update_meta(corpus={**identity, "model_card_sha256": expected and expected["sha256"],
                            "matches_model_card": bool(expected)
                            and identity.get("sha256") == expected["sha256"]})
    with times.stage("load"):
        target = load_target(model)
    settings = {"source": source, "per_task": cfg.per_task, "heldout_per_task": cfg.heldout_per_task,
                "seed": cfg.seed, "window": cfg.window}
    if run.meta().get("mining") != settings or not run.scenarios_path.exists():
        if run.results_path.exists():
            raise ValueError(f"run {run.name} at {run.path} was built with other settings "
                             f"{run.meta().get('mining')}; use another --run or delete it")
        heldout_tasks = [t for t in TASKS if t != "noise"]
        with times.stage("mine"):
            write_scenarios(itertools.chain(
                mine(source, target.tokenizer, per_task=cfg.per_task, seed=cfg.seed,
                     window=cfg.window, split="train"),
                mine(source, target.tokenizer, tasks=heldout_tasks, per_task=cfg.heldout_per_task,
                     seed=cfg.seed, window=cfg.window, split="test") if cfg.heldout_per_task else ()),
                run.scenarios_path)
        run.update_meta(mining=settings)
    with times.stage("extract"):
        extract(run, run.scenarios_path, target,
                ExtractConfig(batch_size=cfg.batch_size, keep=cfg.keep),
                sink=_encoder_for(run, cfg, target) if cfg.atlas else None)
    if cfg.atlas:
        build_atlas(run, cfg, target, times=times)
    return run


def _encoder_for(run: Run, cfg: DemoConfig, target: TargetModel) -> Sink | None:
    """Where the run's AP-MAE is known before extraction (installed already, or the shipped one
    that fits this model), the encoder that embeds each batch as extraction captures it;
    else None, and :func:`build_atlas` encodes afterwards."""
    from .atlas.encode import Encoder
    from .ship import install, shipped_fits

    model = run.mae_model_path
    if not (model / "config.json").exists():
        shipped = None if cfg.train_mae else shipped_fits(target.name, cfg.window)
        if shipped is None:
            return None
        install(run, shipped)
    return Encoder(run, EncodeConfig(), model, target.layers, target.heads, target.name).write


def build_atlas(run: Run, cfg: DemoConfig, target: TargetModel, url: str | None = None,
                times: StageTimes | None = None) -> None:
    """AP-MAE (the shipped one where it fits, else trained once; evaluated once), embeddings,
    clusters, predictor and sweep."""
    from .atlas.build import settled
    from .atlas.cluster_stage import cluster_run
    from .atlas.predictor_stage import predictor_run
    from .atlas.sweep_stage import sweep_run
    from .db.session import migrated_engine
    from .atlas.encode import encode_run
    from .mae.evaluate import evaluate
    from .ship import install, shipped_for
    from .mae.train import train_mae

    times = times or StageTimes()
    if not (run.mae_model_path / "config.json").exists():
        with times.stage("mae_train"):
            shipped = None if cfg.train_mae else shipped_for(run)
            if shipped is not None:
                install(run, shipped)
            else:
                train_mae(run, MAETrainConfig(steps=cfg.mae_steps, seed=cfg.seed), resume=True)
    if not (run.mae_eval_path).exists():
        with times.stage("mae_eval"):
            evaluate(run, MAEEvalConfig(seed=cfg.seed))
    with times.stage("encode"):
        encode_run(run, EncodeConfig(), target=lambda: target)
    engine = migrated_engine(url)
    with times.stage("cluster"):
        changed = cluster_run(run, ClusterConfig(cluster_selection=cfg.cluster_selection, seed=cfg.seed),
                              engine) > 0
    # what ran before with the same settings on the same clusters is not run again
    predictor = PredictorConfig(seed=cfg.seed)
    if changed or not settled(engine, run.name, predictor=asdict(predictor)):
        with times.stage("predictor"):
            predictor_run(run, predictor, engine)
        changed = True
    sweep, selective = SweepConfig(scenarios=cfg.sweep_scenarios, seed=cfg.seed), \
        InterventionConfig(seed=cfg.seed)
    if not changed and settled(engine, run.name, sweep=asdict(sweep), intervention=asdict(selective)):
        return
    with times.stage("sweep"):
        try:
            sweep_run(run, sweep, engine, target, selective)
        except ValueError as e:  # no task had both right and wrong completions to rank heads by
            print(f"sweep skipped: {e}", file=sys.stderr)
