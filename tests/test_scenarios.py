"""Scenario mining: every task found, targets are the file's text, fixed-length prompts,
reproducible from the seed, balanced, and robust to bad files."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from apmae.corpus import CorpusError, split_of
from apmae.lm.fim import special_ids
from apmae.lm.tokenizer import tokenizer_fingerprint
from apmae.scenarios import (TASKS, MiningStats, check_tasks, mine, read_scenarios,
                             write_scenarios)

WINDOW = 64


@pytest.fixture(scope="module")
def mined(java_dir, tiny_tokenizer):
    stats = MiningStats()
    scenarios = list(mine(str(java_dir), tiny_tokenizer, per_task=1, seed=0, window=WINDOW,
                          stats=stats))
    return scenarios, stats


def test_every_task_once(mined):
    """With per_task=1 the fixtures give exactly one scenario of each of the 14 tasks."""
    scenarios, stats = mined
    assert len(TASKS) == 14
    assert sorted(s.task for s in scenarios) == sorted(TASKS)
    assert stats.by_task == {t: 1 for t in TASKS}
    assert len({s.id for s in scenarios}) == len(scenarios)


def test_target_is_the_files_text(mined, java_dir, tiny_tokenizer):
    """For every file-backed scenario the target is ``text[start:end]`` of its file, its
    tokens decode back to it, and the split is the file's."""
    scenarios, _ = mined
    real = [s for s in scenarios if s.task != "noise"]
    assert len(real) == 13
    for s in real:
        text = (java_dir / s.path).read_text(encoding="utf-8")
        assert 0 <= s.start < s.end <= len(text)
        assert text[s.start:s.end] == s.target, s.task
        assert s.target.strip()
        assert tiny_tokenizer.decode(s.target_ids) == s.target
        assert s.split == split_of(s.path)
        assert s.label is None
        # the human-readable prefix/suffix are the text right around the span
        assert text[:s.start].endswith(s.prefix) and text[s.end:].startswith(s.suffix)


def test_prompts_have_the_window_length_and_fim_markers(mined, tiny_tokenizer):
    """Every prompt is exactly ``window`` tokens: <fim_prefix> ... <fim_suffix> ... <fim_middle>,
    tagged with the tokenizer's fingerprint."""
    scenarios, _ = mined
    ids = special_ids(tiny_tokenizer)
    sha = tokenizer_fingerprint(tiny_tokenizer)
    for s in scenarios:
        assert len(s.input_ids) == WINDOW and s.window == WINDOW
        assert s.input_ids[0] == ids.prefix and s.input_ids[-1] == ids.middle
        assert s.input_ids.count(ids.suffix) == 1
        assert s.tokenizer == sha
        assert len(s.target_ids) >= 1


def test_task_specific_targets(mined):
    """Spot checks of what each task masks."""
    by_task = {s.task: s for s in mined[0]}
    assert by_task["eol"].target == ";\n"
    assert by_task["boolean_literals"].target in ("true", "false")
    assert by_task["closing_bracket"].target in (")", "]", "}")
    assert by_task["string_literals"].target.startswith('"')
    assert by_task["assignment_operators"].target.endswith("=")
    assert 3 <= len(by_task["random"].target_ids) <= 10 + 2  # 3-10 tokens, re-tokenized alone


def test_same_seed_same_output_other_seed_differs(java_dir, tiny_tokenizer, mined):
    """Mining is reproducible from its seed; another seed picks other spans."""
    again = list(mine(str(java_dir), tiny_tokenizer, per_task=1, seed=0, window=WINDOW))
    assert [asdict(s) for s in again] == [asdict(s) for s in mined[0]]
    other = list(mine(str(java_dir), tiny_tokenizer, per_task=1, seed=1, window=WINDOW))
    assert [s.id for s in other] != [s.id for s in again]


def test_at_most_per_task(java_dir, tiny_tokenizer):
    """No task gets more than per_task scenarios; noise gets exactly per_task."""
    stats = MiningStats()
    scenarios = list(mine(str(java_dir), tiny_tokenizer, per_task=2, seed=3, window=WINDOW,
                          tasks=["eol", "keywords", "boolean_literals", "noise"], stats=stats))
    counts = {t: sum(s.task == t for s in scenarios) for t in ("eol", "keywords",
                                                              "boolean_literals", "noise")}
    assert all(1 <= n <= 2 for n in counts.values()), counts
    assert counts["noise"] == 2 and counts["eol"] == 2 and counts["keywords"] == 2
    assert stats.by_task == counts
    # one span per file and task: the two eol scenarios come from two different files
    assert len({s.path for s in scenarios if s.task == "eol"}) == 2


def test_noise_labels_alternate(java_dir, tiny_tokenizer):
    """The noise control: no file, window-length random prompts, labels True/False/True..."""
    ids = special_ids(tiny_tokenizer)
    noise = list(mine(str(java_dir), tiny_tokenizer, tasks=["noise"], per_task=5, seed=0,
                      window=WINDOW))
    assert [s.label for s in noise] == [True, False, True, False, True]
    assert len({s.id for s in noise}) == 5
    special = set(tiny_tokenizer.all_special_ids)
    for s in noise:
        assert s.task == "noise" and s.path is None and s.split is None and s.start is None
        assert len(s.input_ids) == WINDOW
        assert s.input_ids[0] == ids.prefix and s.input_ids[-1] == ids.middle
        assert s.input_ids.count(ids.suffix) == 1
        body = [i for i in s.input_ids if i not in (ids.prefix, ids.suffix, ids.middle)]
        assert len(body) == WINDOW - 3 and not special & set(body)
        assert len(s.target_ids) == 1 and s.target_ids[0] not in special
    other = list(mine(str(java_dir), tiny_tokenizer, tasks=["noise"], per_task=5, seed=1,
                      window=WINDOW))
    assert [s.input_ids for s in other] != [s.input_ids for s in noise]


def test_check_tasks():
    """Known tasks pass through in order; an unknown one is a ValueError naming it."""
    assert check_tasks(("eol", "random")) == ["eol", "random"]
    with pytest.raises(ValueError, match="unknown task nope"):
        check_tasks(["eol", "nope"])


def test_mine_with_unknown_task_raises(java_dir, tiny_tokenizer):
    """``mine`` validates its tasks too."""
    with pytest.raises(ValueError, match="bogus_task"):
        list(mine(str(java_dir), tiny_tokenizer, tasks=["bogus_task"], window=WINDOW))


def test_write_read_round_trip(mined, tmp_path):
    """Scenarios written to JSONL read back identical (non-ASCII text included)."""
    scenarios, _ = mined
    out = tmp_path / "sub" / "s.jsonl"
    assert write_scenarios(iter(scenarios), out) == len(scenarios)
    back = list(read_scenarios(out))
    assert [asdict(s) for s in back] == [asdict(s) for s in scenarios]
    assert not [p for p in out.parent.iterdir() if p.name != "s.jsonl"]  # no temp file left


def test_read_scenarios_names_a_bad_line(mined, tmp_path):
    """A malformed line is a ValueError naming its line number."""
    out = tmp_path / "s.jsonl"
    write_scenarios(mined[0][:2], out)
    with open(out, "a") as fh:
        fh.write('{"id": "x"}\n')
    with pytest.raises(ValueError, match=r"s\.jsonl:3: not a scenario"):
        list(read_scenarios(out))


def test_interrupted_write_leaves_no_file(mined, tmp_path):
    """If mining fails midway, the output file is not created."""
    def boom():
        yield mined[0][0]
        raise RuntimeError("interrupted")

    out = tmp_path / "s.jsonl"
    with pytest.raises(RuntimeError):
        write_scenarios(boom(), out)
    assert list(tmp_path.iterdir()) == []


def test_bad_files_are_skipped_and_counted(tmp_path, java_texts, tiny_tokenizer):
    """An unparsable file, an empty file and a file shorter than the window are each skipped
    and counted; mining still yields scenarios from the good file only."""
    good = java_texts["Inventory.java"]
    (tmp_path / "Good.java").write_text(good)
    broken = good.replace("public int add(String item, int n) {", "public int add(String item, {{")
    assert broken != good
    (tmp_path / "Broken.java").write_text(broken)
    (tmp_path / "Empty.java").write_text("")
    (tmp_path / "Short.java").write_text("class S { int x = 1; }\n")
    stats = MiningStats()
    scenarios = list(mine(str(tmp_path), tiny_tokenizer, tasks=["eol", "identifiers"],
                          per_task=10, seed=0, window=WINDOW, stats=stats))
    assert {s.path for s in scenarios} == {"Good.java"}
    assert sorted(s.task for s in scenarios) == ["eol", "identifiers"]
    assert stats.files_seen == 3  # the empty file never reaches the miner
    assert stats.files_skipped == {"empty, binary or not UTF-8": 1, "does not parse": 1,
                                   "shorter than the window": 1}


def test_no_readable_files_raises(tmp_path, tiny_tokenizer):
    """A corpus with only unreadable files is a CorpusError from ``mine``."""
    (tmp_path / "Empty.java").write_text("")
    (tmp_path / "Bin.java").write_bytes(b"\x00\x01")
    with pytest.raises(CorpusError, match="no readable Java files"):
        list(mine(str(tmp_path), tiny_tokenizer, window=WINDOW))


def test_file_shorter_than_the_window_is_skipped(java_dir, tiny_tokenizer):
    """With a window larger than every fixture, nothing is mined but nothing crashes."""
    stats = MiningStats()
    scenarios = list(mine(str(java_dir), tiny_tokenizer, tasks=["eol"], per_task=1,
                          window=4096, stats=stats))
    assert scenarios == []
    assert stats.files_skipped == {"shorter than the window": 3}


def test_unencodable_jsonl_row_does_not_crash_mining(tmp_path, java_texts, tiny_tokenizer):
    """A JSONL row holding a lone surrogate is skipped and counted; mining goes on."""
    import json

    good = java_texts["Inventory.java"]
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"path": "a/Bad.java", "content": good + "// \ud800\n"}) + "\n"
                 + json.dumps({"path": "b/Good.java", "content": good}) + "\n")
    stats = MiningStats()
    # window 128: the file is short enough (< 16 chars per token) for too_short to tokenize it
    scenarios = list(mine(str(p), tiny_tokenizer, tasks=["eol"], per_task=5, window=128,
                          stats=stats))
    assert {s.path for s in scenarios} == {"b/Good.java"}
    assert sum(stats.files_skipped.values()) == 1
