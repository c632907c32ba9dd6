"""The ``apmae`` command: user errors are one line and exit 2 without side effects; the
mine -> extract -> report path works end to end."""

from __future__ import annotations

import json

import pytest

from apmae.cli import main
from apmae.paths import run_dir
from apmae.scenarios import TASKS, read_scenarios


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("apmae: error: "), err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]


def test_mine_unknown_task(tmp_path, java_dir, capsys):
    """An unknown task: exit 2, one line naming it, no output file."""
    out = tmp_path / "s.jsonl"
    assert main(["mine", str(java_dir), "--out", str(out), "--tasks", "eol,nope"]) == 2
    _one_line_error(capsys, "nope")
    assert not out.exists()


def test_mine_empty_directory(tmp_path, tiny_model_dir, capsys):
    """A directory without Java files: exit 2, one line, and no (partial) output file."""
    src = tmp_path / "empty"
    src.mkdir()
    out = tmp_path / "out" / "s.jsonl"
    assert main(["mine", str(src), "--out", str(out), "--model", str(tiny_model_dir),
                 "--window", "64"]) == 2
    _one_line_error(capsys, "no Java files")
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_mine_bad_numbers(tmp_path, java_dir, capsys):
    """``--per-task 0`` or a tiny ``--window`` is refused."""
    out = tmp_path / "s.jsonl"
    assert main(["mine", str(java_dir), "--out", str(out), "--per-task", "0"]) == 2
    _one_line_error(capsys, "--per-task")
    assert main(["mine", str(java_dir), "--out", str(out), "--window", "4"]) == 2
    _one_line_error(capsys, "--window")
    assert not out.exists()


def test_mine_model_without_tokenizer(tmp_path, java_dir, capsys):
    """A ``--model`` folder with no tokenizer is a one-line error, no output file."""
    out = tmp_path / "s.jsonl"
    (tmp_path / "m").mkdir()
    assert main(["mine", str(java_dir), "--out", str(out), "--model", str(tmp_path / "m")]) == 2
    _one_line_error(capsys)
    assert not out.exists()


def test_mine_split_without_files(tmp_path, java_dir, tiny_model_dir, capsys):
    """``--split test`` when every fixture file is on the train side: exit 2, one line saying
    so, no output file."""
    out = tmp_path / "s.jsonl"
    assert main(["mine", str(java_dir), "--out", str(out), "--model", str(tiny_model_dir),
                 "--window", "64", "--split", "test"]) == 2
    _one_line_error(capsys, "test split")
    assert not out.exists()


@pytest.fixture
def some_file(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text("{}\n")
    return p


def test_extract_model_without_config(tmp_path, some_file, capsys):
    """``--model`` pointing at a folder without config.json: exit 2, one line naming it."""
    model = tmp_path / "not_a_model"
    model.mkdir()
    assert main(["extract", "--scenarios", str(some_file), "--model", str(model)]) == 2
    _one_line_error(capsys, "config.json", str(model))
    assert not run_dir("default").exists()


def test_extract_missing_scenarios(tmp_path, tiny_model_dir, capsys):
    """A scenarios file that does not exist: exit 2, one line naming it."""
    missing = tmp_path / "missing.jsonl"
    assert main(["extract", "--scenarios", str(missing), "--model", str(tiny_model_dir)]) == 2
    _one_line_error(capsys, str(missing))


def test_extract_bad_keep(some_file, tiny_model_dir, capsys):
    """``--keep bogus``: exit 2, one line naming the value."""
    assert main(["extract", "--scenarios", str(some_file), "--model", str(tiny_model_dir),
                 "--keep", "bogus"]) == 2
    _one_line_error(capsys, "bogus")


def test_extract_bad_batch_size(some_file, tiny_model_dir, capsys):
    """``--batch-size 0``: exit 2."""
    assert main(["extract", "--scenarios", str(some_file), "--model", str(tiny_model_dir),
                 "--batch-size", "0"]) == 2
    _one_line_error(capsys, "--batch-size")


def test_report_unknown_run(capsys):
    """``report --run nope``: exit 2, one line naming the run."""
    assert main(["report", "--run", "nope"]) == 2
    _one_line_error(capsys, "nope")


def test_mine_extract_report(tmp_path, java_dir, tiny_model_dir, capsys):
    """The happy path: mine 14 scenarios, extract them into a run, report as JSON with every
    task's n and both accuracies, and a non-empty pattern store."""
    out = tmp_path / "s.jsonl"
    model = str(tiny_model_dir)
    assert main(["mine", str(java_dir), "--out", str(out), "--model", model, "--window", "64",
                 "--per-task", "1"]) == 0
    assert "14 scenarios" in capsys.readouterr().err
    scenarios = list(read_scenarios(out))
    assert len(scenarios) == 14 and {len(s.input_ids) for s in scenarios} == {64}

    assert main(["extract", "--scenarios", str(out), "--model", model, "--run", "r1",
                 "--batch-size", "8"]) == 0
    assert "extracted 14 scenarios into run r1" in capsys.readouterr().err

    assert main(["report", "--run", "r1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_task = report["scenarios"]["by_task"]
    assert sorted(by_task) == sorted(TASKS)
    for task, row in by_task.items():
        assert row["n"] == 1, task
        assert row["accuracy_exact"] in (0.0, 1.0)
        assert row["accuracy_first_token"] in (0.0, 1.0)
    assert by_task["noise"]["accuracy_exact"] == 1.0  # the first noise label is True
    assert report["scenarios"]["overall_non_noise"]["n"] == 13
    assert report["patterns"]["stored"] == 14
    assert report["patterns"]["bytes"] > 14 * 2 * 4 * (64 * 65 // 2)  # one byte per value (uint8)
    assert report["meta"]["model"] == model and report["meta"]["keep"] == "all"

    # a second extract resumes: nothing left to do
    assert main(["extract", "--scenarios", str(out), "--model", model, "--run", "r1"]) == 0
    assert "extracted 0 scenarios" in capsys.readouterr().err

    assert main(["report", "--run", "r1"]) == 0
    text = capsys.readouterr().out
    assert "all but noise" in text and "patterns: 14 scenarios" in text


def test_mine_refuses_a_window_beyond_the_models_context(tmp_path, capsys, java_dir, tiny_model_dir):
    """The tiny model has 2048 positions: a 4096-token window is refused before any mining."""
    from apmae.cli import main

    out = tmp_path / "s.jsonl"
    code = main(["mine", str(java_dir), "--out", str(out), "--window", "4096",
                 "--model", str(tiny_model_dir)])
    assert code == 2 and not out.exists()
    assert "context of 2048" in capsys.readouterr().err
