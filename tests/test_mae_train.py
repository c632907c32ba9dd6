"""AP-MAE's data selection, training (resume, DDP) and evaluation on a tiny run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from apmae.cli import main
from apmae.configs import MAEEvalConfig, MAETrainConfig
from apmae.mae.data import PatternFilter, epoch_items, select
from apmae.mae.evaluate import baseline_predictions, evaluate
from apmae.mae.model import APMAEModel
from apmae.mae.train import step_items, train_mae
from apmae.report import build_report

from conftest import build_pattern_run


def tiny(**over) -> MAETrainConfig:
    cfg = dict(batch_size=8, steps=4, warmup=1, checkpoint_every=2, head_fraction=0.5, threads=1)
    cfg.update(over)
    return MAETrainConfig(**cfg)


def test_select_filters_split_tasks_and_completions(pattern_run):
    rows = {r["id"]: r for r in pattern_run.results()}
    train = select(pattern_run, PatternFilter("train"))
    test = select(pattern_run, PatternFilter("test"))
    assert train and test and not set(train) & set(test)
    assert all(rows[i]["split"] == "train" and rows[i]["task"] != "noise" for i in train)
    assert {rows[i]["task"] for i in select(pattern_run, PatternFilter("test", "noise"))} == {"noise"}
    wrong = select(pattern_run, PatternFilter("train", "all", "incorrect"))
    assert all(not rows[i]["correct_first_token"] for i in wrong)
    with pytest.raises(ValueError, match="unknown tasks"):
        select(pattern_run, PatternFilter("train", "identifier"))
    with pytest.raises(ValueError, match="completions"):
        select(pattern_run, PatternFilter("train", "all", "right"))


def test_epoch_items_draw_distinct_heads_per_scenario_and_layer():
    items = epoch_items(5, 3, 8, 0.25, seed=0, epoch=0)
    assert len(items) == 5 * 3 * 2
    for s in range(5):
        for layer in range(3):
            heads = items[(items[:, 0] == s) & (items[:, 1] == layer), 2]
            assert len(set(heads.tolist())) == 2
    assert np.array_equal(items, epoch_items(5, 3, 8, 0.25, seed=0, epoch=0))
    assert not np.array_equal(items, epoch_items(5, 3, 8, 0.25, seed=0, epoch=1))


def test_ranks_split_each_step_into_disjoint_slices():
    cfg = tiny(batch_size=6)
    whole = step_items(cfg, 7, 3, 2, 4, rank=0, world=1)  # spans an epoch boundary (12 items)
    parts = [step_items(cfg, 7, 3, 2, 4, rank=r, world=2) for r in range(2)]
    assert len(whole) == 6 and sorted(map(tuple, np.concatenate(parts))) == sorted(map(tuple, whole))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return APMAEModel.from_pretrained(path).state_dict()


def test_training_saves_a_loadable_model_and_resumes_exactly(tmp_path, pattern_run, monkeypatch):
    straight = train_mae(pattern_run, tiny(), out=tmp_path / "a")
    import apmae.mae.train as mt

    real, calls = mt.step_items, []

    def dies_at_step_3(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed after the step-2 checkpoint
        return real(*args)

    monkeypatch.setattr(mt, "step_items", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train_mae(pattern_run, tiny(), out=tmp_path / "b")
    monkeypatch.setattr(mt, "step_items", real)
    assert not (tmp_path / "b" / "model").exists()
    with pytest.raises(ValueError, match="other settings"):  # a resume must keep the settings
        train_mae(pattern_run, tiny(lr=0.5), resume=True, out=tmp_path / "b")
    resumed = train_mae(pattern_run, tiny(), resume=True, out=tmp_path / "b")
    a, b = _weights(straight), _weights(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    log = json.loads((resumed.parent / "train_log.json").read_text())
    assert [s["step"] for s in log["log"]] == [1, 2, 3, 4]
    assert all(np.isfinite(s["loss"]) for s in log["log"])


def test_nothing_to_train_on_is_a_clear_error(pattern_run, tmp_path):
    with pytest.raises(ValueError, match="no stored train-split patterns match"):
        train_mae(pattern_run, tiny(tasks="noise"), out=tmp_path / "x")


def test_baselines_copy_what_they_say():
    # 3 patches of 1 pixel on a line at grid distances 0, 1, 2; patch 1 masked
    patches = torch.tensor([[[1.0], [5.0], [3.0]]])
    mask = torch.tensor([[0.0, 1.0, 0.0]])
    cells = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    preds = baseline_predictions(patches, mask, torch.zeros_like(patches), torch.cdist(cells, cells))
    assert preds["visible_mean"][0, 1, 0] == 2.0  # (1 + 3) / 2
    assert preds["nearest_visible"][0, 1, 0] == 1.0  # tie between 0 and 2: the lower index


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pattern_run):
    out = tmp_path_factory.mktemp("mae")
    train_mae(pattern_run, tiny(steps=6), out=out)
    return out / "model"


def test_eval_reports_model_baselines_layers_and_triptychs(pattern_run, trained):
    result = evaluate(pattern_run, MAEEvalConfig(max_patterns=40, batch_size=16, triptychs=2),
                      model_dir=trained)
    rec = result["reconstruction"]
    assert set(rec["baselines"]) == {"head_mean", "visible_mean", "nearest_visible"}
    assert rec["n_patterns"] == 40 and set(rec["by_layer"]) <= {0, 1}
    assert rec["ratio_to_best_baseline"] == pytest.approx(
        rec["mse"] / min(rec["baselines"].values()))
    pngs = list((pattern_run.path / "mae" / "triptychs").glob("*.png"))
    assert len(pngs) == 2
    from PIL import Image

    size = APMAEModel.from_pretrained(trained).config.image_size  # 64: drawn 4x, pixel blocks
    with Image.open(pngs[0]) as im:
        assert im.size == (3 * 256 + 2 * 4 * (256 // size), 256)
    assert build_report(pattern_run)["reconstruction"]["mse"] == rec["mse"]


def test_eval_on_another_models_patterns(tmp_path, pattern_run, trained, split_corpus,
                                         tiny_tokenizer):
    from transformers import Starcoder2ForCausalLM

    from apmae.configs import LMTrainConfig
    from apmae.lm.train import model_config

    torch.manual_seed(1)  # another model: other weights
    other_model = tmp_path / "other_model"
    cfg = LMTrainConfig(source="-", hidden_size=32, layers=2, heads=4, kv_heads=2, mlp=64)
    Starcoder2ForCausalLM(model_config(cfg, tiny_tokenizer)).save_pretrained(other_model)
    tiny_tokenizer.save_pretrained(other_model)
    other = build_pattern_run(tmp_path / "other", split_corpus, other_model)
    gen = evaluate(pattern_run, MAEEvalConfig(max_patterns=40), other=other,
                   model_dir=trained)["generalization"]
    assert gen["other_run"] == "other" and gen["mse_other_model"] > 0
    assert gen["degradation"] == pytest.approx(gen["mse_other_model"] / gen["mse_same_model"] - 1)
    assert gen["ratio_to_best_baseline_other_model"] > 0  # the other run has train-split patterns too


def test_cli_errors_are_one_line(capsys):
    assert main(["mae", "train", "--run", "nope"]) == 2
    assert "no run named 'nope'" in capsys.readouterr().err
    assert main(["mae", "eval", "--run", "nope"]) == 2


def test_ddp_with_two_processes_equals_one(tmp_path, pattern_run):
    """torchrun with 2 CPU ranks (gloo) trains the same model as one process, to float
    reduction-order tolerance (in fp32: bf16 rounding would depend on how GEMMs are split)."""
    single = train_mae(pattern_run, tiny(steps=3, bf16=False), out=tmp_path / "one")
    copy = tmp_path / "home" / "runs" / "tiny"
    shutil.copytree(pattern_run.path, copy, ignore=shutil.ignore_patterns("mae"))
    env = {**os.environ, "APMAE_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "apmae", "--", "mae", "train", "--run", "tiny",
           "--batch-size", "8", "--steps", "3", "--warmup", "1", "--head-fraction", "0.5",
           "--checkpoint-every", "2", "--threads", "1", "--no-bf16"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = _weights(single), _weights(copy / "mae" / "model")
    for k in a:
        # atol: Adam's normalised step turns reduction-order noise in a near-zero gradient
        # into a difference of up to a few lr-scaled units (seen: 1.1e-5 on a 5e-6 weight)
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=5e-5)
