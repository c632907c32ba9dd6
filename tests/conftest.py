"""Shared fixtures: small Java files, a tiny tokenizer trained on them, a tiny random model."""

from __future__ import annotations

import os

from pathlib import Path

import pytest
import torch

from apmae.capture import CAPTURE_ATTENTION

JAVA_DIR = Path(__file__).parent / "fixtures" / "java"


#: Vocabulary of the tiny random models below (token ids only, no tokenizer).
TINY_VOCAB = 64


def tiny_starcoder2(attn: str = CAPTURE_ATTENTION):
    """A random 2-layer Starcoder2 (GQA, biased projections); peaky patterns (init 0.5)."""
    from transformers import Starcoder2Config, Starcoder2ForCausalLM

    config = Starcoder2Config(
        vocab_size=TINY_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        use_bias=True, initializer_range=0.5, attn_implementation=attn,
    )
    torch.manual_seed(0)
    return Starcoder2ForCausalLM(config).eval()


def tiny_llama(attn: str = CAPTURE_ATTENTION):
    """A random 3-layer Llama with grouped-query attention."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=TINY_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        initializer_range=0.5, attn_implementation=attn,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def tiny_gpt2(attn: str = CAPTURE_ATTENTION):
    """A random 2-layer GPT-2 (Conv1D projections)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=TINY_VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
        initializer_range=0.5, attn_implementation=attn,
    )
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval()


def eager_attentions(model: torch.nn.Module, x: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: ``output_attentions=True`` of eager attention, ``[b, layers, heads, T, T]``, and the logits."""
    impl = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        out = model(x, output_attentions=True, **kwargs)
    finally:
        model.set_attn_implementation(impl)
    return torch.stack(out.attentions, dim=1), out.logits


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test writes under its own APMAE_HOME, never the user's."""
    monkeypatch.setenv("APMAE_HOME", str(tmp_path_factory.mktemp("apmae_home")))


@pytest.fixture(scope="session")
def java_dir() -> Path:
    return JAVA_DIR


@pytest.fixture(scope="session")
def java_texts() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(JAVA_DIR.glob("*.java"))}


@pytest.fixture(scope="session")
def tiny_tokenizer(java_texts):
    from apmae.lm.tokenizer import train_tokenizer

    return train_tokenizer(list(java_texts.values()) * 4, vocab_size=400)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A random 2-layer Starcoder2 with the tiny tokenizer, saved like any HF model."""
    from apmae.configs import LMTrainConfig
    from apmae.lm.train import model_config
    from transformers import Starcoder2ForCausalLM

    cfg = LMTrainConfig(source="-", hidden_size=32, layers=2, heads=4, kv_heads=2, mlp=64)
    torch.manual_seed(0)
    model = Starcoder2ForCausalLM(model_config(cfg, tiny_tokenizer))
    path = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_target(tiny_model_dir):
    from apmae.lm.load import load_target

    return load_target(str(tiny_model_dir))


@pytest.fixture(scope="session")
def split_corpus(tmp_path_factory, java_dir) -> Path:
    """The fixtures twice: under p9/ (train split) and p8/ (test split, held out)."""
    import shutil

    from apmae.corpus import split_of

    root = tmp_path_factory.mktemp("corpus")
    for group in ("p8", "p9"):
        shutil.copytree(java_dir, root / group)
    assert split_of("p8/Util.java") == "test" and split_of("p9/Util.java") == "train"
    return root


def build_pattern_run(root: Path, corpus: Path, model_dir: Path, per_task: int = 2):
    """A run of ``model_dir`` over ``corpus``: 64-token windows, every pattern stored."""
    from apmae.configs import ExtractConfig
    from apmae.extract import extract
    from apmae.lm.load import load_target
    from apmae.run import Run
    from apmae.scenarios import mine, write_scenarios

    target = load_target(str(model_dir))
    run = Run(root.name, path=root)
    write_scenarios(mine(str(corpus), target.tokenizer, per_task=per_task, seed=0, window=64),
                    run.scenarios_path)
    extract(run, run.scenarios_path, target, ExtractConfig(batch_size=8, keep="all"))
    return run


@pytest.fixture(scope="session")
def pattern_run(tmp_path_factory, split_corpus, tiny_model_dir):
    """A run of the tiny model with both splits and all patterns stored (read-only in tests)."""
    return build_pattern_run(tmp_path_factory.mktemp("runs") / "tiny", split_corpus, tiny_model_dir)


def build_atlas_run(root: Path, pattern_run):
    """A copy of the tiny run whose labels alternate (the tiny random model gets nothing
    right), so that the predictor has two classes to separate; encoded with a tiny AP-MAE."""
    import json
    import shutil

    from apmae.atlas.encode import encode_run
    from apmae.configs import EncodeConfig, MAETrainConfig
    from apmae.mae.train import train_mae
    from apmae.run import Run

    run = Run(root.name, path=root)
    shutil.copytree(pattern_run.path, run.path, ignore=shutil.ignore_patterns("embeddings", "mae"))
    rows = [json.loads(line) for line in run.results_path.read_text().splitlines()]
    for i, r in enumerate(rows):
        r["correct_first_token"] = bool(i % 2)
    run.results_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = train_mae(run, MAETrainConfig(batch_size=8, steps=2, warmup=1, head_fraction=0.5,
                                          threads=1))
    encode_run(run, EncodeConfig(), model_dir=model)
    return run


@pytest.fixture(scope="module")
def atlas_run(tmp_path_factory, pattern_run):
    return build_atlas_run(tmp_path_factory.mktemp("atlas") / "atlas", pattern_run)


@pytest.fixture(scope="session")
def explorer_run(tmp_path_factory, pattern_run, tiny_target):
    """A tiny run with its whole atlas built (clusters, predictor, sweep) in its own SQLite
    database: what the explorer serves in the server and browser tests. Returns
    ``(run, database_url)``; read-only."""
    from apmae.atlas.cluster_stage import cluster_run
    from apmae.atlas.predictor_stage import predictor_run
    from apmae.atlas.sweep_stage import sweep_run
    from apmae.configs import ClusterConfig, InterventionConfig, PredictorConfig, SweepConfig
    from apmae.db.session import migrated_engine

    root = tmp_path_factory.mktemp("explorer")
    run = build_atlas_run(root / "explore", pattern_run)
    url = f"sqlite:///{root / 'explore.db'}"
    engine = migrated_engine(url)
    cluster_run(run, ClusterConfig(), engine)
    predictor_run(run, PredictorConfig(max_iter=20, min_per_class=3, folds=3),
                  engine)
    sweep_run(run, SweepConfig(scenarios=8, repeats=2, batch_size=4), engine, tiny_target,
              InterventionConfig(random_sets=5, greedy_candidates=3, bootstrap=100))
    return run, url


def serve_in_thread(app, probe: str = "/api/health"):
    """Serve ``app`` with uvicorn in a thread on a free loopback port; yields its base URL once
    ``probe`` answers 200, and stops it after (a generator for module fixtures)."""
    import socket
    import threading
    import time
    import urllib.request

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{base}{probe}", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app did not start")
        time.sleep(0.1)
    yield base
    server.should_exit = True
    thread.join(10)


#: The browser the browser tests drive (Playwright, headless); ``APMAE_REQUIRE_BROWSER=1`` (CI)
#: turns a missing one from a skip into a failure.
CHROMIUM = Path(os.environ.get("APMAE_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_BROWSER = os.environ.get("APMAE_REQUIRE_BROWSER") == "1"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM}: install it (apt-get install chromium) for the browser tests"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


# --- the browser tests' fixtures (tests/test_browser*.py) ------------------------------------


@pytest.fixture(scope="module")
def browser():
    missing = browser_missing()
    if missing is not None:
        pytest.fail(f"{missing} (APMAE_REQUIRE_BROWSER=1)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def base_url(explorer_run):
    """The explorer over the tiny run, served in-process on a free loopback port."""
    from server.app import create_app
    from server.settings import Settings
    from server.state import Explorer

    run, url = explorer_run
    settings = Settings(run=run.name, database_url=url)
    app = create_app(settings, state=Explorer.load(settings, run=run))
    yield from serve_in_thread(app)



@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("APMAE_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(browser):
    """A fresh page that records console errors and uncaught exceptions; none may occur."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    failed: list[str] = []  # which request a "Failed to load resource" console error was
    pg.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    pg.errors = errors
    yield pg
    context.close()
    assert not errors, (errors, failed)
