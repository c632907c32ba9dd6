"""Training, resuming and shipping the default model, on a tiny config and corpus."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from apmae.configs import LMTrainConfig
from apmae.ship import ship_lm
from apmae.lm.train import sample_span, train_lm


@pytest.fixture(scope="module")
def corpus(split_corpus):
    return split_corpus


def tiny(corpus, **over) -> LMTrainConfig:
    cfg = dict(source=str(corpus), vocab_size=300, tokenizer_files=10, hidden_size=32, layers=1,
               heads=2, kv_heads=1, mlp=64, window=48, max_middle=8, batch_size=2, steps=4,
               warmup=1, checkpoint_every=2, snapshot_every=2, bf16=False)
    cfg.update(over)
    return LMTrainConfig(**cfg)


def test_sample_span_is_a_nonempty_slice(java_texts):
    rng = np.random.default_rng(0)
    text = java_texts["Inventory.java"]
    spans = [sample_span(rng, text) for _ in range(300)]
    spans = [s for s in spans if s is not None]
    assert len(spans) > 250
    assert all(0 <= a < b <= len(text) for a, b in spans)
    assert any(text[a:b] == ";\n" for a, b in spans)  # statement ends are among the shapes
    # a lexeme cut by the random start is not a shape: single-lexeme middles are whole words
    words = {m.group() for m in re.finditer(r"[A-Za-z_$][\w$]*", text)}
    single = [text[a:b] for a, b in spans if re.fullmatch(r"[A-Za-z_$][\w$]*", text[a:b])]
    assert single and sum(w in words for w in single) >= 0.9 * len(single)


def test_task_share_draws_middles_from_the_scenario_tasks(corpus, tiny_tokenizer, java_texts):
    """With task_share 1 every middle is a span the miner's queries find (or a random-task
    run of tokens), and rare kinds such as boolean literals and operators do come up."""
    from apmae.lm.train import ExampleSampler
    from apmae.spans import SPAN_TASKS, find_spans, parse_java

    text = java_texts["Inventory.java"]
    tree = parse_java(text)
    by_span = {span: task for task in SPAN_TASKS for span in find_spans(task, text, tree)}
    sampler = ExampleSampler([text], tiny_tokenizer, tiny(corpus, task_share=1.0),
                             np.random.default_rng(0))
    drawn = [s for s in (sampler._task_span(text) for _ in range(400)) if s is not None]
    tasks = {by_span[s] for s in drawn if s in by_span}
    assert len(drawn) > 250
    assert {"boolean_operators", "assignment_operators", "identifiers", "eol"} <= tasks
    assert sum(s in by_span for s in drawn) > 0.8 * len(drawn)  # the rest: the random task


def test_resumed_training_equals_an_uninterrupted_run(tmp_path, corpus):
    straight = train_lm(tiny(corpus), tmp_path / "a")
    train_lm(tiny(corpus, steps=2), tmp_path / "b")
    resumed = train_lm(tiny(corpus), tmp_path / "b", resume=True)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    log = json.loads((resumed / "train_log.json").read_text())
    assert [s["step"] for s in log["log"]] == [1, 2, 3, 4]
    assert all(np.isfinite(s["loss"]) for s in log["log"])


def test_ship_writes_weights_and_a_measured_card(tmp_path, corpus):
    train_lm(tiny(corpus), tmp_path / "train")
    final = ship_lm(tmp_path / "train", tmp_path / "shipped", per_task=1)
    card = (tmp_path / "shipped" / "README.md").read_text()
    assert (tmp_path / "shipped" / "model.safetensors").stat().st_size < 16 * 2**20
    assert "| identifiers | 1 |" in card and "## Learning curve" in card
    assert final["overall_non_noise"]["n"] == 13
    # the card's number is the measured one
    first = final["overall_non_noise"]["accuracy_first_token"]
    assert f"**{100 * first:.1f}%**" in card


def test_ship_a_snapshot_with_its_part_of_the_log(tmp_path, corpus):
    train_lm(tiny(corpus), tmp_path / "train")
    ship_lm(tmp_path / "train", tmp_path / "shipped", per_task=1, step=2)
    card = (tmp_path / "shipped" / "README.md").read_text()
    assert "Intermediate weights" in card and "snapshot at step 2 of the 4" in card


def test_short_window_batches_keep_tokens_per_step(tmp_path, corpus, tiny_tokenizer, java_texts):
    """A 24-token batch holds twice the sequences of a 48-token one; every FIM row still has
    its prompt ending in <fim_middle> right before the middle."""
    from apmae.lm.train import MIDDLE, ExampleSampler

    cfg = tiny(corpus, short_windows="24", plain_share=0.0)
    sampler = ExampleSampler(list(java_texts.values()), tiny_tokenizer, cfg, np.random.default_rng(1))
    shapes = set()
    middle_id = tiny_tokenizer.convert_tokens_to_ids("<fim_middle>")
    for _ in range(12):
        ids, roles = sampler.batch(2)
        shapes.add(tuple(ids.shape))
        window = ids.shape[1] - cfg.max_middle - 1
        assert (ids[:, window - 1] == middle_id).all() and (roles[:, window] == MIDDLE).all()
    assert shapes == {(2, 48 + 9), (4, 24 + 9)}


def test_a_second_stage_starts_from_the_first_and_the_card_tells_both(tmp_path, corpus, monkeypatch):
    first = tmp_path / "one"
    train_lm(tiny(corpus), first)
    second = tiny(corpus, init_from=str(first), short_windows="24", seed=1, steps=2)
    train_lm(second, tmp_path / "two")
    # the tokenizer is the first stage's
    assert (tmp_path / "two" / "tokenizer" / "tokenizer.json").read_text() == \
        (first / "tokenizer" / "tokenizer.json").read_text()
    # with a zero learning rate the second stage ends on the first one's weights
    frozen = train_lm(tiny(corpus, init_from=str(first), lr=0.0, min_lr=0.0, steps=1),
                      tmp_path / "frozen")
    a, b = load_file(first / "final" / "model.safetensors"), load_file(frozen / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    monkeypatch.setenv("APMAE_HOME", str(tmp_path))  # the warm start is shipped relative to it
    ship_lm(tmp_path / "two", tmp_path / "shipped", per_task=1)
    card = (tmp_path / "shipped" / "README.md").read_text()
    assert card.count("apmae lm train --source") == 2 and "--init-from $APMAE_HOME/one " in card
    assert str(first) not in card
    assert "6 steps in all" in card and "stage 2 starts after step 4" in card
    assert "(from the weights of stage 1, fresh optimizer)" in card
    configs = json.loads((tmp_path / "shipped" / "train_config.json").read_text())
    assert [c["steps"] for c in configs] == [4, 2] and configs[1]["init_from"] == "$APMAE_HOME/one"


def test_a_second_stage_refuses_an_unfinished_or_different_first(tmp_path, corpus):
    first = tmp_path / "one"
    train_lm(tiny(corpus, steps=2), first)
    (first / "train_config.json").write_text(
        json.dumps({**json.loads((first / "train_config.json").read_text()), "steps": 4}))
    with pytest.raises(ValueError, match="stopped at step 2 of 4"):
        train_lm(tiny(corpus, init_from=str(first)), tmp_path / "two")
    train_lm(tiny(corpus), first, resume=True)
    with pytest.raises(ValueError, match="architecture differs in hidden_size"):
        train_lm(tiny(corpus, init_from=str(first), hidden_size=16), tmp_path / "two")
