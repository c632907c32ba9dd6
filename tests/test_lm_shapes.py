"""`apmae lm init` (random models of a named shape) and the dtype a target model loads in."""

from __future__ import annotations

import json

import pytest
import torch

from apmae.cli import main
from apmae.lm.load import LARGE_MODEL_PARAMETERS, ModelLoadError, choose_dtype, load_target
from apmae.lm.shapes import STARCODER2_VOCAB, Shape, parameter_count, starcoder2_config

WIDE = ["--layers", "2", "--heads", "24", "--kv-heads", "4", "--hidden", "96", "--intermediate", "192"]


@pytest.mark.parametrize("name, heads, published", [
    ("starcoder2-3b", 720, 3.03e9), ("starcoder2-7b", 1152, 7.17e9), ("starcoder2-15b", 1920, 15.96e9)])
def test_named_shapes_have_the_released_checkpoints_sizes(name, heads, published):
    shape = Shape.named(name)
    config = starcoder2_config(shape, STARCODER2_VOCAB)
    assert config.num_hidden_layers * config.num_attention_heads == heads
    n = parameter_count(config)  # on the meta device: a 15B costs nothing
    assert abs(n - published) / published < 0.005
    # apmae's tokenizer is smaller: only the embedding (tied in 3B and 7B) shrinks
    tables = 1 if shape.tie_embeddings else 2
    smaller = parameter_count(starcoder2_config(shape, 8192))
    assert n - smaller == tables * (STARCODER2_VOCAB - 8192) * shape.hidden


def test_lm_init_saves_a_seeded_random_model_every_command_loads(tmp_path, capsys):
    out = tmp_path / "wide"
    assert main(["lm", "init", "--out", str(out), *WIDE, "--seed", "3"]) == 0
    assert "RANDOM" in capsys.readouterr().err
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin"))
    config = json.loads((out / "config.json").read_text())
    assert "never one to study" in config["apmae_random_init"]["note"]
    assert "RANDOM weights" in (out / "README.md").read_text()
    target = load_target(str(out))
    assert (target.layers, target.heads, target.random_weights) == (2, 24, True)
    assert target.dtype == torch.float32  # a small model: auto is float32
    weights = target.model.model.layers[0].self_attn.q_proj.weight.detach().clone()

    again = tmp_path / "again"
    assert main(["lm", "init", "--out", str(again), *WIDE, "--seed", "3"]) == 0
    assert torch.equal(load_target(str(again)).model.model.layers[0].self_attn.q_proj.weight, weights)
    other = tmp_path / "other"
    assert main(["lm", "init", "--out", str(other), *WIDE, "--seed", "4"]) == 0
    assert not torch.equal(load_target(str(other)).model.model.layers[0].self_attn.q_proj.weight, weights)


@pytest.mark.parametrize("args, message", [
    (["--shape", "starcoder2-3b", "--layers", "2"], "fixes every size"),
    (["--layers", "2", "--heads", "4"], "all of --layers"),
    (["--shape", "starcoder2-4b"], "invalid choice"),
    (WIDE[:-2] + ["--intermediate", "0"], "must be >= 1"),
    (["--layers", "2", "--heads", "5", "--kv-heads", "5", "--hidden", "32", "--intermediate", "8"],
     "multiple of --heads"),
    (["--layers", "2", "--heads", "4", "--kv-heads", "3", "--hidden", "32", "--intermediate", "8"],
     "multiple of --kv-heads"),
])
def test_lm_init_refuses_bad_sizes_with_a_message(tmp_path, capsys, args, message):
    try:
        status = main(["lm", "init", "--out", str(tmp_path / "m"), *args])
    except SystemExit as e:  # argparse's own refusals
        status = e.code
    assert status == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_lm_init_refuses_a_folder_in_use(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert main(["lm", "init", "--out", str(tmp_path), *WIDE]) == 2
    assert "not empty" in capsys.readouterr().err


def test_auto_dtype_is_float32_for_small_models_and_bfloat16_for_large_ones():
    assert choose_dtype(None, LARGE_MODEL_PARAMETERS - 1) == torch.float32
    assert choose_dtype("auto", LARGE_MODEL_PARAMETERS) == torch.bfloat16
    assert choose_dtype("float16", 10) == torch.float16
    with pytest.raises(ModelLoadError, match="one of auto"):
        choose_dtype("int8", 10)


def test_the_embedded_model_still_loads_in_float32():
    """Its model card and every figure were measured in float32; bfloat16 changes its answers."""
    target = load_target(None)
    assert target.dtype == torch.float32 and not target.random_weights
    assert {p.dtype for p in target.model.parameters()} == {torch.float32}


def test_extract_loads_in_the_dtype_asked_and_the_run_remembers_it(tmp_path, tiny_model_dir,
                                                                   java_dir, monkeypatch, capsys):
    from apmae.run import Run

    monkeypatch.setenv("APMAE_HOME", str(tmp_path))
    scenarios = tmp_path / "s.jsonl"
    assert main(["mine", str(java_dir), "--out", str(scenarios), "--model", str(tiny_model_dir),
                 "--per-task", "1", "--window", "64", "--tasks", "identifiers,eol"]) == 0
    assert main(["extract", "--scenarios", str(scenarios), "--model", str(tiny_model_dir),
                 "--run", "half", "--dtype", "bfloat16", "--batch-size", "4"]) == 0
    run = Run("half")
    assert run.meta()["model_dtype"] == "bfloat16"
    assert len(run.pattern_store()) == len(list(run.results())) > 0
    # what serves the run loads the model as its patterns were extracted
    from apmae.live import LiveAtlas

    assert LiveAtlas.load(run).lm.dtype == torch.bfloat16
    with pytest.raises(SystemExit):
        main(["extract", "--scenarios", str(scenarios), "--model", str(tiny_model_dir),
              "--run", "bad", "--dtype", "int8"])
    assert "invalid choice" in capsys.readouterr().err
