"""Shared fixtures: small Java files, a tiny tokenizer trained on them, a tiny random model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

JAVA_DIR = Path(__file__).parent / "fixtures" / "java"


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
    from apmae.lm.train import LMTrainConfig, model_config
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
