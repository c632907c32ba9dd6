"""The shipped AP-MAE: shipped only from the default model's patterns, installed only where it fits."""

import json
import shutil

import pytest
import torch

from apmae.configs import MAEEvalConfig, MAETrainConfig
from apmae.store.format import lower_triangle
from apmae.mae.evaluate import evaluate
from apmae.mae.model import APMAEModel
from apmae.ship import MAE_CARD, install, ship_mae, shipped_for
from apmae.mae.train import train_mae
from apmae.paths import DEFAULT_MAE_DIR, DEFAULT_MODEL_DIR, home_relative, weights_digest
from apmae.run import Run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, pattern_run):
    """A copy of the tiny run with a trained and evaluated AP-MAE."""
    run = Run("ship", path=tmp_path_factory.mktemp("ship") / "ship")
    shutil.copytree(pattern_run.path, run.path, ignore=shutil.ignore_patterns("embeddings", "mae"))
    train_mae(run, MAETrainConfig(batch_size=8, steps=2, warmup=1, head_fraction=0.5, threads=1))
    evaluate(run, MAEEvalConfig(max_patterns=16, triptychs=0, mean_scenarios=4))
    return run


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, trained_run):
    """``trained_run``'s AP-MAE shipped, the run posing as one of the default model."""
    with pytest.raises(ValueError, match="only an AP-MAE of the default model"):
        ship_mae(trained_run, tmp_path_factory.mktemp("refused") / "default_mae")
    trained_run.update_meta(model="default")
    dest = tmp_path_factory.mktemp("shipped") / "default_mae"
    card = ship_mae(trained_run, dest)
    assert card["target_weights"] == weights_digest(DEFAULT_MODEL_DIR)
    return dest


def test_ship_copies_the_model_and_writes_its_card(trained_run, shipped):
    assert weights_digest(shipped) == weights_digest(trained_run.mae_model_path)
    card = json.loads((shipped / MAE_CARD).read_text())
    assert card["steps"] == 2 and card["image_size"] == 64  # the cpu preset's, which fits the window
    ratio = card["eval"]["reconstruction"]["ratio_to_best_baseline"]
    readme = (shipped / "README.md").read_text()
    assert f"**{ratio:.3f}x**" in readme and "apmae mae train --run big --preset cpu --batch-size 8 --steps 2" in readme


def test_a_shipped_ap_mae_is_used_only_on_the_weights_it_was_trained_for(tmp_path, trained_run, shipped):
    assert shipped_for(trained_run, shipped) == shipped
    other = tmp_path / "other"
    shutil.copytree(shipped, other)
    card = json.loads((other / MAE_CARD).read_text())
    (other / MAE_CARD).write_text(json.dumps({**card, "target_weights": "0" * 12}))
    assert shipped_for(trained_run, other) is None  # the default model was retrained since
    config = json.loads((shipped / "config.json").read_text())
    (other / MAE_CARD).write_text(json.dumps(card))
    (other / "config.json").write_text(json.dumps({**config, "image_size": 128, "patch_size": 16}))
    assert shipped_for(trained_run, other) is None  # 128 px images from a 64-token window
    run = Run("another", path=tmp_path / "another")
    shutil.copytree(trained_run.path, run.path)
    run.update_meta(model="/some/other/model")
    assert shipped_for(run, shipped) is None
    assert shipped_for(trained_run, tmp_path / "nothing") is None


def test_install_makes_it_the_runs_own(tmp_path, trained_run, shipped):
    run = Run("installed", path=tmp_path / "installed")
    shutil.copytree(trained_run.path, run.path, ignore=shutil.ignore_patterns("mae"))
    model_dir = install(run, shipped)
    assert weights_digest(model_dir) == weights_digest(shipped)
    assert json.loads((run.mae_path / "shipped.json").read_text()) == json.loads((shipped / MAE_CARD).read_text())
    assert evaluate(run, MAEEvalConfig(max_patterns=16, triptychs=0, mean_scenarios=4))["reconstruction"]["mse"] > 0


def test_the_shipped_ap_mae_belongs_to_the_shipped_target_model():
    card = json.loads((DEFAULT_MAE_DIR / MAE_CARD).read_text())
    # retraining the default model makes its patterns another model's: ship an AP-MAE for it too
    assert card["target_weights"] == weights_digest(DEFAULT_MODEL_DIR)
    assert card["eval"]["reconstruction"]["ratio_to_best_baseline"] <= 1 / 3
    assert card["eval"]["generalization"]["other_model"].startswith("$APMAE_HOME/")  # no local folder
    model = APMAEModel.from_pretrained(DEFAULT_MAE_DIR).eval()
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 256, 256, generator=g).masked_fill(torch.ones(256, 256).triu(1).bool(), float("-inf"))
    packed = lower_triangle(scores.log_softmax(-1)).clamp_min(-20.0)
    with torch.no_grad():
        emb = model.encode(model.images_from_patterns(packed))
    assert emb.shape == (2, model.config.hidden_size) and torch.isfinite(emb).all()


def test_shipped_files_name_no_folder_of_this_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("APMAE_HOME", str(tmp_path))
    assert home_relative(str(tmp_path / "lm" / "other" / "final")) == "$APMAE_HOME/lm/other/final"
    assert home_relative("bigcode/starcoder2-3b") == "bigcode/starcoder2-3b"
