"""`apmae mae import`: the reference AP-MAE's checkpoints become APMAEModels that encode as it did.

The golden set (tests/data/reference_golden, written by tests/data/make_reference_golden.py) is a
tiny reference model's state dict, four pattern images and the reference's CLS outputs for them.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from apmae.cli import main
from apmae.mae.convert import CheckpointError, convert, load_reference
from apmae.mae.model import APMAEModel
from apmae.paths import apmae_home
from apmae.run import Run

GOLDEN = Path(__file__).parent / "data" / "reference_golden"


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "golden.safetensors")


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A writable copy of the golden reference checkpoint (config.json, model.safetensors)."""
    path = tmp_path / "AP-MAE-tiny"
    path.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(GOLDEN / name, path / name)
    return path


def test_converted_model_encodes_as_the_reference_does(golden):
    model = convert(*load_reference(GOLDEN))
    with torch.no_grad():
        cls = model.encode(golden["images"])
    torch.testing.assert_close(cls, golden["cls_tril"], atol=2e-5, rtol=1e-5)
    # the reference's analysis-time encode (all grid**2 patches, flaw 2) is not what it gives
    assert (cls - golden["cls_full"]).abs().max() > 0.1


def test_sizes_come_from_the_checkpoint(golden):
    cfg = convert(*load_reference(GOLDEN)).config
    assert (cfg.image_size, cfg.patch_size, cfg.hidden_size, cfg.num_hidden_layers) == (64, 8, 32, 2)
    assert (cfg.num_attention_heads, cfg.head_dim, cfg.intermediate_size) == (2, 24, 64)
    assert (cfg.decoder_hidden_size, cfg.decoder_num_hidden_layers, cfg.decoder_head_dim) == (24, 1, 12)
    assert cfg.scaling == "log_normalize" and cfg.patch_embed_norm and not cfg.decoder_profiles


def test_decoder_weights_are_carried_over_and_run(golden):
    state, config = load_reference(GOLDEN)
    model = convert(state, config)
    rows, cols = torch.tril_indices(8, 8)
    torch.testing.assert_close(model.decoder_pos_embed[0, 1:], state["decoder.pos_embedding"][0, 1 + rows * 8 + cols])
    torch.testing.assert_close(model.decoder_embed.weight, state["decoder.enc_to_dec.weight"])
    torch.testing.assert_close(model.mask_token.flatten(), state["decoder.mask_token"])
    with torch.no_grad():
        out = model(golden["images"], predict="masked")
    assert out.pred.shape == (4, 18, 64) and torch.isfinite(out.loss)


def test_without_config_the_reference_head_width_is_assumed(checkpoint):
    (checkpoint / "config.json").unlink()
    with pytest.raises(CheckpointError, match="head count needs the checkpoint's config.json"):
        convert(*load_reference(checkpoint))  # 48-wide attention: not a multiple of 64


def test_import_then_encode_a_run(checkpoint, pattern_run, golden):
    out = checkpoint.parent / "converted"
    assert main(["mae", "import", str(checkpoint / "model.safetensors"), "--out", str(out)]) == 0
    model = APMAEModel.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(model.encode(golden["images"]), golden["cls_tril"], atol=2e-5, rtol=1e-5)

    run = Run("reference", path=apmae_home() / "runs" / "reference")
    shutil.copytree(pattern_run.path, run.path, ignore=shutil.ignore_patterns("embeddings", "mae"))
    assert main(["encode", "--run", "reference", "--model", str(out), "--no-bf16"]) == 0
    sid = next(run.results())["id"]
    stored = run.embeddings().get(sid)
    packed = torch.from_numpy(np.array(run.pattern_store().get(sid, layer=1, head=0), dtype=np.float32))
    with torch.no_grad():
        direct = model.encode(model.images_from_patterns(packed[None]))[0]
    assert stored.shape[-1] == 32
    np.testing.assert_allclose(stored[1, 0], direct.numpy(), atol=2e-3, rtol=1e-2)


def test_import_default_destination_and_no_overwrite(checkpoint, capsys):
    assert main(["mae", "import", str(checkpoint)]) == 0
    out = apmae_home() / "mae" / "AP-MAE-tiny"
    assert (out / "model.safetensors").exists() and capsys.readouterr().out.strip() == str(out)
    assert main(["mae", "import", str(checkpoint)]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def _rewrite(checkpoint: Path, edit) -> None:
    state = load_file(checkpoint / "model.safetensors")
    edit(state)
    save_file(state, checkpoint / "model.safetensors")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("encoder.transformer.layers.1.1.net.4.bias"), "missing encoder.transformer.layers.1.1.net.4.bias"),
    (lambda s: s.update({"encoder.extra": torch.zeros(2)}), "unexpected encoder.extra"),
    (lambda s: s.update({"decoder.to_pixels.weight": torch.zeros(64, 25)}), r"decoder.to_pixels.weight \(64, 25\)"),
    (lambda s: s.update({"encoder.pos_embedding": torch.zeros(1, 51, 32)}), "not square"),
    (lambda s: s.pop("encoder.cls_token"), "missing encoder.cls_token"),
])
def test_a_state_dict_unlike_the_references_is_refused(checkpoint, capsys, edit, message):
    _rewrite(checkpoint, edit)
    assert main(["mae", "import", str(checkpoint), "--out", str(checkpoint.parent / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("apmae: error:") and "Traceback" not in err
    assert re.search(message, err), err


def test_config_and_weights_that_disagree_are_refused(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "encoder_layers": 3}))
    with pytest.raises(CheckpointError, match="encoder_layers=3, the weights 2"):
        convert(*load_reference(checkpoint))


@pytest.mark.parametrize("content", [b"not a safetensors file", b""])
def test_a_corrupt_file_is_a_clear_error(checkpoint, capsys, content):
    (checkpoint / "model.safetensors").write_bytes(content)
    assert main(["mae", "import", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "is not a readable safetensors file" in err and "Traceback" not in err


def test_a_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["mae", "import", str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err
