"""Extraction: one result per scenario, stored patterns equal the model's attentions,
keep modes, resume after a crash, torn result lines, and the greedy decoder's judging."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import eager_attentions

from apmae.configs import ExtractConfig
import apmae.extract as extract_mod
from apmae.store.format import unpack_lower_triangle
from apmae.extract import extract
from apmae.lm.load import ModelLoadError
from apmae.lm.score import Completion, greedy_continue, judge, to_completion
from apmae.run import Run
from apmae.scenarios import mine, read_scenarios, write_scenarios
from apmae.store.arrays import ArrayStore

WINDOW = 64


@pytest.fixture(scope="module")
def scenarios_file(tmp_path_factory, java_dir, tiny_tokenizer):
    """14 scenarios (one per task), window 64, mined with the tiny tokenizer."""
    path = tmp_path_factory.mktemp("scen") / "scenarios.jsonl"
    write_scenarios(mine(str(java_dir), tiny_tokenizer, per_task=1, seed=0, window=WINDOW), path)
    return path


@pytest.fixture(scope="module")
def scenarios(scenarios_file):
    return list(read_scenarios(scenarios_file))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, scenarios_file, tiny_target):
    """A complete keep=all float16 extraction, shared by the read-only tests below."""
    run = Run("full", path=tmp_path_factory.mktemp("runs") / "full")
    n = extract(run, scenarios_file, tiny_target, ExtractConfig(batch_size=4, keep="all", precision="float16"))
    return run, n


def _shard_ids(run: Run) -> list[str]:
    """Every id of every committed shard, duplicates included."""
    out = []
    for p in sorted((run.patterns_path / "shards").glob("*.ids.json")):
        out.extend(json.loads(p.read_text()))
    return out


def test_every_scenario_gets_one_result(full_run, scenarios):
    """Each scenario has exactly one result line, with both correctness flags as booleans;
    noise rows carry their assigned label."""
    run, n = full_run
    assert n == len(scenarios) == 14
    rows = list(run.results())
    assert sorted(r["id"] for r in rows) == sorted(s.id for s in scenarios)
    by_id = {s.id: s for s in scenarios}
    for r in rows:
        s = by_id[r["id"]]
        assert isinstance(r["correct_exact"], bool) and isinstance(r["correct_first_token"], bool)
        assert r["task"] == s.task and r["split"] == s.split and r["path"] == s.path
        assert r["target_first_token"] == s.target_ids[0]
        assert r["logprob_target_first"] <= 0
        if s.task == "noise":
            assert r["correct_exact"] is r["correct_first_token"] is s.label
        else:
            assert r["correct_first_token"] == (r["first_token"] == s.target_ids[0])


def test_run_meta_records_the_model(full_run, tiny_target, scenarios_file):
    """run.json names the model, tokenizer, shape and settings of the extraction."""
    meta = full_run[0].meta()
    assert meta["model"] == tiny_target.name
    assert meta["tokenizer"] == tiny_target.tokenizer_sha
    assert (meta["layers"], meta["heads"]) == (2, 4)
    assert meta["keep"] == "all" and meta["scenarios"] == str(scenarios_file)


def test_stored_patterns_equal_output_attentions(full_run, scenarios, tiny_target):
    """The stored float16 log-patterns, exponentiated and unpacked, equal the probabilities
    ``output_attentions=True`` gives for the same window run alone."""
    run, _ = full_run
    store = run.pattern_store()
    assert store is not None and len(store) == 14
    assert sorted(store.ids()) == sorted(s.id for s in scenarios)
    assert store.meta.entry_shape == (2, 4, WINDOW * (WINDOW + 1) // 2)
    for s in (scenarios[0], scenarios[6], scenarios[-1]):  # first, middle batch, noise
        with torch.no_grad():
            ref = eager_attentions(tiny_target.model, torch.tensor([s.input_ids]))[0][0].numpy()
        got = np.exp(unpack_lower_triangle(np.asarray(store.get(s.id), dtype=np.float32)))
        assert got.shape == ref.shape == (2, 4, WINDOW, WINDOW)
        np.testing.assert_allclose(got, ref, rtol=2e-2, atol=1e-4)
        np.testing.assert_allclose(got.sum(-1), 1.0, atol=2e-2)  # rows are distributions
        assert np.all(np.triu(got, 1) == 0)


def test_uint8_store_holds_the_float16_patterns_to_half_a_step(tmp_path, full_run, scenarios_file,
                                                               tiny_target):
    """The default 8-bit store: every value within half a code step (20/510 nats) of the
    float32 log-prob, clamped at -20 (the float16 capture holds that to half its own ulp,
    |x| 2^-11); half the bytes. A rerun keeps the store's own precision."""
    run, _ = full_run
    small = Run("small", path=tmp_path / "small")
    extract(small, scenarios_file, tiny_target, ExtractConfig(batch_size=4, keep="all"))
    store, exact = small.pattern_store(), run.pattern_store()
    assert (store.meta.dtype, store.meta.log_range) == ("uint8", 20.0)
    for sid in exact.ids():
        want = np.maximum(np.asarray(exact.get(sid), dtype=np.float32), -20.0)
        got = store.get(sid)
        assert got.dtype == np.float32
        assert (np.abs(got - want) <= 20 / 510 + np.abs(want) * 2.0**-11 + 1e-5).all()
    assert store.nbytes() < 0.55 * exact.nbytes()
    again = extract(run, scenarios_file, tiny_target, ExtractConfig(batch_size=4, keep="all"))
    assert again == 0 and run.pattern_store().meta.dtype == "float16"
    with pytest.raises(ValueError, match="precision"):
        extract(Run("bad", path=tmp_path / "bad"), scenarios_file, tiny_target,
                ExtractConfig(keep="all", precision="int4"))


def test_rerun_of_a_finished_run_does_nothing(tmp_path, scenarios_file, tiny_target):
    """Extracting a finished run again does no work and adds nothing."""
    run = Run("again", path=tmp_path / "run")
    cfg = ExtractConfig(batch_size=8, keep="all")
    assert extract(run, scenarios_file, tiny_target, cfg) == 14
    before = run.results_path.read_bytes()
    assert extract(run, scenarios_file, tiny_target, cfg) == 0
    assert run.results_path.read_bytes() == before
    assert len(_shard_ids(run)) == 14


def test_keep_none_stores_no_patterns(tmp_path, scenarios_file, tiny_target):
    """``keep="none"`` writes every result but creates no pattern store."""
    run = Run("none", path=tmp_path / "run")
    assert extract(run, scenarios_file, tiny_target, ExtractConfig(batch_size=8, keep="none")) == 14
    assert len(list(run.results())) == 14
    assert not run.patterns_path.exists()
    assert run.pattern_store() is None


def test_keep_sample_is_deterministic(tmp_path, scenarios_file, scenarios, tiny_target):
    """``keep="sample:N"`` keeps a proper, non-empty subset chosen by id hash: two runs keep
    the same ids, and the results still cover every scenario."""
    kept = []
    for name in ("a", "b"):
        run = Run(name, path=tmp_path / name)
        extract(run, scenarios_file, tiny_target, ExtractConfig(batch_size=4, keep="sample:3"))
        assert len(list(run.results())) == 14
        kept.append(sorted(run.pattern_store().ids()))
    assert kept[0] == kept[1]
    assert 0 < len(kept[0]) < 14
    assert set(kept[0]) <= {s.id for s in scenarios}


def test_keep_sample_is_bounded(tmp_path, scenarios_file, tiny_target):
    """``keep="sample:N"`` is documented as a bounded sample: it stores at most N patterns."""
    run = Run("s", path=tmp_path / "run")
    extract(run, scenarios_file, tiny_target, ExtractConfig(batch_size=4, keep="sample:3"))
    assert len(run.pattern_store()) == 3


def test_bad_keep_is_refused():
    """An unknown keep mode is a ValueError naming it."""
    with pytest.raises(ValueError, match="bogus"):
        ExtractConfig(keep="bogus").keep_limit()
    with pytest.raises(ValueError):
        ExtractConfig(keep="sample:x").keep_limit()
    assert ExtractConfig(keep="sample:20").keep_limit() == 20
    assert ExtractConfig(keep="all").keep_limit() is None


def _killed_on_call(fn, n):
    """``fn`` that raises on its ``n``-th call, as if the process died there."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise RuntimeError("killed")
        return fn(*args, **kwargs)

    return wrapper


def test_resume_after_a_crash(tmp_path, scenarios_file, scenarios, tiny_target, monkeypatch):
    """A run that dies in its third batch keeps the first two; the rerun does the rest, and
    every scenario ends up exactly once in the results and in the store."""
    real = extract_mod.run_batch
    run = Run("resume", path=tmp_path / "run")
    cfg = ExtractConfig(batch_size=4, keep="all")
    monkeypatch.setattr(extract_mod, "run_batch", _killed_on_call(real, 3))
    with pytest.raises(RuntimeError, match="killed"):
        extract(run, scenarios_file, tiny_target, cfg)
    monkeypatch.setattr(extract_mod, "run_batch", real)
    first = [r["id"] for r in run.results()]
    assert first == [s.id for s in scenarios[:8]]
    assert len(_shard_ids(run)) == 8

    assert extract(run, scenarios_file, tiny_target, cfg) == 6
    ids = [r["id"] for r in run.results()]
    assert len(ids) == len(set(ids)) == 14
    assert sorted(ids) == sorted(s.id for s in scenarios)
    shard_ids = _shard_ids(run)
    assert len(shard_ids) == len(set(shard_ids)) == 14
    assert len(ArrayStore(run.patterns_path)) == 14


def test_resume_after_a_crash_between_patterns_and_results(tmp_path, scenarios_file,
                                                           tiny_target, monkeypatch):
    """A kill between a batch's pattern shard and its result lines (the window the docstring
    promises to survive) must still resume to every scenario exactly once."""
    real = Run.append_results
    run = Run("resume2", path=tmp_path / "run")
    cfg = ExtractConfig(batch_size=4, keep="all")
    monkeypatch.setattr(Run, "append_results", _killed_on_call(real, 2))
    with pytest.raises(RuntimeError, match="killed"):
        extract(run, scenarios_file, tiny_target, cfg)
    monkeypatch.setattr(Run, "append_results", real)
    assert len(list(run.results())) == 4 and len(_shard_ids(run)) == 8
    extract(run, scenarios_file, tiny_target, cfg)
    assert len({r["id"] for r in run.results()}) == len(list(run.results())) == 14
    assert len(ArrayStore(run.patterns_path)) == 14


def test_torn_result_line_is_ignored_then_cut(tmp_path):
    """A partial last line (a killed writer) is invisible to ``results()`` and removed by the
    next ``append_results``, so the file stays valid JSONL."""
    run = Run("torn", path=tmp_path / "run")
    run.append_results([{"id": "a"}, {"id": "b"}])
    with open(run.results_path, "a") as fh:
        fh.write('{"id": "c", "tas')
    assert [r["id"] for r in run.results()] == ["a", "b"]
    run.append_results([{"id": "d"}])
    assert run.results_path.read_text() == '{"id": "a"}\n{"id": "b"}\n{"id": "d"}\n'
    assert [r["id"] for r in run.results()] == ["a", "b", "d"]


def test_torn_only_line_is_cut(tmp_path):
    """A file holding nothing but a torn line is emptied before appending."""
    run = Run("torn", path=tmp_path / "run")
    run.path.mkdir(parents=True)
    run.results_path.write_text('{"id": "x"')
    assert list(run.results()) == []
    run.append_results([{"id": "y"}])
    assert run.results_path.read_text() == '{"id": "y"}\n'


def test_torn_line_then_extract_resumes(tmp_path, scenarios_file, scenarios, tiny_target):
    """Extraction over a results file with a torn last line does the torn scenario again."""
    run = Run("t", path=tmp_path / "run")
    cfg = ExtractConfig(batch_size=8, keep="none")
    extract(run, scenarios_file, tiny_target, cfg)
    lines = run.results_path.read_text().splitlines(keepends=True)
    run.results_path.write_text("".join(lines[:-1]) + lines[-1][:10])
    assert extract(run, scenarios_file, tiny_target, cfg) == 1
    ids = [r["id"] for r in run.results()]
    assert sorted(ids) == sorted(s.id for s in scenarios)


def _rewrite(src, dst, **changes):
    with open(dst, "w") as fh:
        for s in read_scenarios(src):
            fh.write(json.dumps({**asdict(s), **changes}) + "\n")


def test_other_tokenizer_is_refused(tmp_path, scenarios_file, tiny_target):
    """Scenarios mined with another tokenizer are refused before any work is done."""
    other = tmp_path / "other.jsonl"
    _rewrite(scenarios_file, other, tokenizer="0123456789ab")
    run = Run("x", path=tmp_path / "run")
    with pytest.raises(ValueError, match="another tokenizer"):
        extract(run, other, tiny_target, ExtractConfig())
    assert not run.results_path.exists() and not run.patterns_path.exists()


def test_mixed_windows_and_empty_file_are_refused(tmp_path, scenarios_file, tiny_target):
    """A file mixing window lengths, or holding no scenario, is refused."""
    mixed = tmp_path / "mixed.jsonl"
    rows = [asdict(s) for s in read_scenarios(scenarios_file)]
    rows[1]["input_ids"] = rows[1]["input_ids"][1:]
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="different window lengths"):
        extract(Run("m", path=tmp_path / "m"), mixed, tiny_target, ExtractConfig())
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no scenarios"):
        extract(Run("e", path=tmp_path / "e"), empty, tiny_target, ExtractConfig())


def test_check_window(tiny_target, tmp_path, scenarios_file):
    """``check_window`` refuses a window (plus generated tokens) beyond ``max_context``, and
    extraction refuses such scenarios before writing anything."""
    assert tiny_target.max_context == 2048
    tiny_target.check_window(2048)
    tiny_target.check_window(2000, extra=48)
    with pytest.raises(ModelLoadError, match="2049"):
        tiny_target.check_window(2049)
    with pytest.raises(ModelLoadError):
        tiny_target.check_window(2000, extra=49)
    small = dataclasses.replace(tiny_target, max_context=32)
    run = Run("w", path=tmp_path / "run")
    with pytest.raises(ModelLoadError, match="exceeds"):
        extract(run, scenarios_file, small, ExtractConfig())
    assert not run.path.exists()


def test_check_window_counts_generated_tokens(tiny_target, tmp_path, scenarios_file):
    """A window that exactly fills the context leaves no room to generate: refuse it."""
    exact = dataclasses.replace(tiny_target, max_context=WINDOW)
    with pytest.raises(ModelLoadError):
        extract(Run("w", path=tmp_path / "run"), scenarios_file, exact, ExtractConfig(keep="none"))


# --- greedy decoding and judging ----------------------------------------------------------------


class ScriptedModel:
    """A fake causal LM whose k-th decoding step predicts ``script[k]`` (one id per row); it
    takes and returns its cache as ``cache``, as transformers does since 5.2x."""

    def __init__(self, script, vocab=10):
        self.script, self.vocab, self.inputs, self.caches = script, vocab, [], []

    def forward(self, input_ids, cache, use_cache):
        step = len(self.inputs)
        self.inputs.append(input_ids[:, 0].tolist())
        self.caches.append(cache)
        logits = torch.zeros(input_ids.shape[0], 1, self.vocab)
        for row, tok in enumerate(self.script[step]):
            logits[row, 0, tok] = 1.0
        return SimpleNamespace(logits=logits, cache=cache + 1)

    __call__ = forward


class OlderScriptedModel(ScriptedModel):
    """The same under its name before transformers 5.2x: ``past_key_values``."""

    def forward(self, input_ids, past_key_values, use_cache):
        out = super().forward(input_ids, past_key_values, use_cache)
        return SimpleNamespace(logits=out.logits, past_key_values=out.cache)

    __call__ = forward


def _logits(tokens, vocab=10):
    out = torch.zeros(len(tokens), vocab)
    out[torch.arange(len(tokens)), torch.tensor(tokens)] = 1.0
    return out


@pytest.mark.parametrize("fake", [ScriptedModel, OlderScriptedModel])
def test_greedy_continue_stops_per_row(fake):
    """Rows stop at (and keep) their first stop token; finished rows are fed a stop token;
    decoding ends once every row has stopped; the cache is threaded through the steps, under
    either name transformers has given it."""
    model = fake([[4, 5], [9, 6], [7, 7], [1, 0], [2, 2]])
    rows = greedy_continue(model, 0, _logits([3, 2]), max_new_tokens=10, stop_ids=[0, 9])
    assert rows == [[3, 4, 9], [2, 5, 6, 7, 0]]
    # row 0 stopped with 9; from then on it is fed the first stop id (0), whatever the model says
    assert model.inputs == [[3, 2], [4, 5], [0, 6], [0, 7]]
    assert model.caches == [0, 1, 2, 3]


def test_greedy_continue_respects_the_budget():
    """Without a stop token each row has exactly ``max_new_tokens`` ids; a row whose first
    token is a stop token is just that token, with no model call needed."""
    model = ScriptedModel([[4, 4], [5, 5], [6, 6]])
    assert greedy_continue(model, 0, _logits([3, 2]), 3, [0]) == [[3, 4, 5], [2, 4, 5]]
    model = ScriptedModel([])
    assert greedy_continue(model, 0, _logits([0, 9]), 5, [0, 9]) == [[0], [9]]
    assert model.inputs == []


def test_greedy_continue_ends_rows_that_cannot_match(tiny_tokenizer):
    """With ``exact_still_possible`` a row ends at the first token that leaves its target;
    a row still on track keeps going until its stop token."""
    from apmae.lm.score import exact_still_possible

    tok = tiny_tokenizer
    a, b, c = (tok.convert_tokens_to_ids(t) for t in ("r", "x", "y"))
    eos = tok.eos_token_id
    vocab = len(tok)
    model = ScriptedModel([[b, b], [c, eos], [eos, eos]], vocab=vocab)
    viable = exact_still_possible(tok, ["rxy", "xx"])
    rows = greedy_continue(model, 0, _logits([a, c], vocab), 10, [eos], viable)
    assert rows == [[a, b, c, eos], [c]]  # row 1 went wrong at once: no further decoding for it


def test_to_completion(tiny_tokenizer):
    """The stop token is dropped from ids/text and marks the completion finished."""
    eos = tiny_tokenizer.eos_token_id
    ids = tiny_tokenizer("return x;", add_special_tokens=False)["input_ids"]
    c = to_completion(tiny_tokenizer, [*ids, eos], [eos])
    assert c == Completion(ids=ids, text="return x;", first_token=ids[0], finished=True)
    c = to_completion(tiny_tokenizer, ids, [eos])
    assert c.finished is False and c.text == "return x;"
    c = to_completion(tiny_tokenizer, [eos], [eos])
    assert c.ids == [] and c.text == "" and c.first_token == eos and c.finished


def test_judge_fim_exact_needs_the_end():
    """FIM exact: the text equals the target AND the completion ended; first-token compares
    only the first generated id."""
    assert judge(Completion([5, 6], "foo", 5, True), "foo", [5, 6]) == (True, True)
    assert judge(Completion([5, 6], "foo", 5, False), "foo", [5, 6]) == (False, True)
    assert judge(Completion([5, 6, 7], "foo()", 5, True), "foo", [5, 6]) == (False, True)
    assert judge(Completion([8], "fo", 8, True), "foo", [5, 6]) == (False, False)
    assert judge(Completion([7, 6], "foo", 7, True), "foo", [5, 6]) == (True, False)
    assert judge(Completion([], "", -1, True), "", []) == (True, False)


def test_judge_left_to_right_uses_startswith():
    """Without FIM the completion has no end marker: exact means it starts with the target."""
    assert judge(Completion([5, 6, 7], "foo();", 5, False), "foo", [5], fim=False) == (True, True)
    assert judge(Completion([5], "foo", 5, True), "foo", [5], fim=False) == (True, True)
    assert judge(Completion([5], "fo", 5, False), "foo", [5], fim=False) == (False, True)
    assert judge(Completion([4], " foo", 4, False), "foo", [5], fim=False) == (False, False)
