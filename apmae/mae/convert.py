"""Convert a checkpoint of the reference AP-MAE (the paper's released AP-MAE-SC2-3B/7B/15B) into
an :class:`~apmae.mae.model.APMAEModel`, so that ``apmae encode --model DIR`` and ``apmae cluster``
run with the paper's weights.

The reference (github.com/AISE-TUDelft/AP-MAE, ``Model/ap_mae``) saves ``encoder.*`` and
``decoder.*`` with ``save_pretrained``. Its sizes are read from the tensors' shapes (the head count,
which no shape holds, from its ``config.json``), so any size converts: the paper's (256-token
images, 32-pixel patches, 512 wide, 24 + 8 layers, 16 encoder heads of 64) and the tiny one of
the tests. What maps onto what:

* ``patches_to_embedding`` (``LayerNorm -> Linear -> LayerNorm``) -> ``patch_norm_in``,
  ``patch_embed``, ``patch_norm_out`` (``patch_embed_norm=True``);
* ``pos_embedding`` covers CLS and all ``grid**2`` cells; the model keeps CLS and the
  lower-triangular cells (row-major), the only ones it has patches for;
* per block: ``norm`` -> ``norm1``, the fused bias-free ``to_qkv`` -> ``qkv`` (same
  ``(q|k|v, head, head_dim)`` layout; zero bias), ``to_out.0`` -> ``proj``, ``net.0/1/4`` ->
  ``norm2``/``fc1``/``fc2``; the attention width ``heads x head_dim`` is kept (``head_dim``);
* ``transformer.norm`` -> ``norm`` / ``decoder_norm``; ``enc_to_dec`` -> ``decoder_embed`` (the
  identity where the reference has none); ``mask_token``; ``to_pixels`` -> ``decoder_pred``.

The converted model scales patterns as the reference did (``log_normalize``, no pixel
standardisation) and has no decoder profiles or position bias, which the reference lacks.
``log_normalize`` divides by each image's smallest log-weight, so patterns to encode with it are
best stored in float16 (floored at -60): uint8 patterns are floored at -20, which moves that
minimum for sharp heads away from what the reference trained on.

What it inherits from the reference's known flaws (``shared/PAPER.md``):

* Flaw 2 (encoding for analysis fed all ``grid**2`` patches, the zero upper ones never seen in
  training): *not* inherited. :meth:`APMAEModel.encode` feeds the lower-triangular patches, the
  input the weights were trained on, so a converted model's CLS vectors are the reference's
  training-path encodings of the whole pattern, not its published ``encode`` ones (which differ).
* ``log_normalize`` mapping the smallest real weight onto the upper triangle's 0: inherited, as
  the weights were trained on it.
* Flaw 1 (the decoder put mask tokens on the *visible* positions and zeros on the masked ones):
  the weights were trained that way, but this decoder places them correctly, so the converted
  decoder sees inputs unlike its training ones: its reconstructions (``apmae mae eval``) are not
  the reference's and not meaningful. Encoding and clustering use the encoder alone and are
  unaffected.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from apmae.mae.config import APMAEConfig, config_from_preset
from apmae.mae.model import APMAEModel

#: The reference's default width of one attention head, for a checkpoint without its config.json.
REFERENCE_HEAD_DIM = 64


class CheckpointError(ValueError):
    """The file is not a reference AP-MAE checkpoint this converter understands."""


def load_reference(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The state dict and config of a reference checkpoint: a ``save_pretrained`` folder
    (``model.safetensors`` or sharded, ``config.json``) or a lone ``.safetensors`` file (its
    ``config.json``, if any, beside it)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        index = path / "model.safetensors.index.json"
        if index.exists():
            shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
            files = [path / s for s in shards]
        else:
            files = [path / "model.safetensors"]
    else:
        files = [path]
    state: dict[str, torch.Tensor] = {}
    for f in files:
        if not f.is_file():
            raise CheckpointError(f"{f} not found: expected a reference AP-MAE folder or .safetensors file")
        try:
            state.update(load_file(f))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{f} is not a readable safetensors file ({e})") from None
    config_file = folder / "config.json"
    return state, (_read_json(config_file) if config_file.is_file() else {})


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


def _shape(state: dict[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"not a reference AP-MAE checkpoint: no {key!r}")
    if state[key].ndim != ndim:
        raise CheckpointError(f"{key!r} has shape {tuple(state[key].shape)}, expected {ndim} dimensions")
    return tuple(state[key].shape)


def _count_layers(state: dict[str, torch.Tensor], prefix: str) -> int:
    layers = {int(k[len(prefix):].split(".")[0]) for k in state
              if k.startswith(prefix) and k[len(prefix):].split(".")[0].isdigit()}
    if not layers or layers != set(range(len(layers))):
        raise CheckpointError(f"not a reference AP-MAE checkpoint: layers {sorted(layers)} under {prefix!r}")
    return len(layers)


def _heads(inner: int, config: dict, part: str) -> tuple[int, int]:
    """``(heads, head_dim)`` of an attention ``inner`` wide: from the config, else the reference's
    default head width."""
    heads = config.get(f"{part}_heads")
    if heads is None:
        if inner % REFERENCE_HEAD_DIM:
            raise CheckpointError(f"{part} attention is {inner} wide: "
                                  "its head count needs the checkpoint's config.json")
        heads = inner // REFERENCE_HEAD_DIM
    if not isinstance(heads, int) or heads <= 0 or inner % heads:
        raise CheckpointError(f"config.json: {part}_heads={heads!r} does not divide the {inner}-wide attention")
    return heads, inner // heads


def _stack(state: dict[str, torch.Tensor], config: dict, part: str) -> dict:
    """Sizes of the encoder's or decoder's transformer, from its first layer's shapes."""
    first = f"{part}.transformer.layers.0."
    dim = _shape(state, f"{part}.transformer.norm.weight", 1)[0]
    inner = _shape(state, first + "0.to_qkv.weight", 2)[0] // 3
    heads, head_dim = _heads(inner, config, part)
    return dict(dim=dim, layers=_count_layers(state, f"{part}.transformer.layers."), heads=heads,
                head_dim=head_dim, mlp=_shape(state, first + "1.net.1.weight", 2)[0])


def reference_config(state: dict[str, torch.Tensor], config: dict) -> APMAEConfig:
    """The :class:`APMAEConfig` (the ``paper`` preset, sized from the checkpoint) of a reference
    state dict; ``config``: its ``config.json`` (may be empty)."""
    if config.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"config.json: hidden_act {config['hidden_act']!r} is not supported (only gelu)")
    if config.get("encoder_pool", "cls") != "cls":
        raise CheckpointError(f"config.json: encoder_pool {config['encoder_pool']!r}: only cls checkpoints convert")
    pixels = _shape(state, "encoder.patches_to_embedding.0.weight", 1)[0]
    patch = math.isqrt(pixels)
    cells = _shape(state, "encoder.pos_embedding", 3)[1] - 1
    grid = math.isqrt(cells)
    if patch * patch != pixels or grid * grid != cells:
        raise CheckpointError(f"patches of {pixels} pixels on {cells} grid cells: not square")
    enc, dec = _stack(state, config, "encoder"), _stack(state, config, "decoder")
    for key, value in (("patch_size", patch), ("max_length", grid * patch), ("encoder_dim", enc["dim"]),
                       ("encoder_layers", enc["layers"]), ("decoder_dim", dec["dim"]),
                       ("decoder_layers", dec["layers"])):
        if key in config and config[key] != value:
            raise CheckpointError(f"config.json says {key}={config[key]!r}, the weights {value}")
    return config_from_preset(
        "paper", image_size=grid * patch, patch_size=patch,
        hidden_size=enc["dim"], num_hidden_layers=enc["layers"], num_attention_heads=enc["heads"],
        head_dim=enc["head_dim"], intermediate_size=enc["mlp"],
        decoder_hidden_size=dec["dim"], decoder_num_hidden_layers=dec["layers"],
        decoder_num_attention_heads=dec["heads"], decoder_head_dim=dec["head_dim"],
        decoder_intermediate_size=dec["mlp"],
        mask_ratio=config.get("mask_ratio", 0.5), layer_norm_eps=config.get("layer_norm_eps", 1e-12),
        patch_embed_norm=True, decoder_profiles=False, relative_position_bias=False,
        scaling="log_normalize", pixel_mean=0.0, pixel_std=1.0,
    )


def _block_names(ours: str, theirs: str, qkv_bias: bool) -> dict[str, str]:
    names = {
        "norm1.weight": "0.norm.weight", "norm1.bias": "0.norm.bias", "qkv.weight": "0.to_qkv.weight",
        "proj.weight": "0.to_out.0.weight", "proj.bias": "0.to_out.0.bias",
        "norm2.weight": "1.net.0.weight", "norm2.bias": "1.net.0.bias",
        "fc1.weight": "1.net.1.weight", "fc1.bias": "1.net.1.bias",
        "fc2.weight": "1.net.4.weight", "fc2.bias": "1.net.4.bias",
    }
    if qkv_bias:
        names["qkv.bias"] = "0.to_qkv.bias"
    return {f"{ours}.{k}": f"{theirs}.{v}" for k, v in names.items()}


def convert(state: dict[str, torch.Tensor], config: dict) -> APMAEModel:
    """An :class:`APMAEModel` with the weights of a reference state dict. Refuses (``CheckpointError``)
    a state dict with missing, extra or wrongly shaped tensors."""
    cfg = reference_config(state, config)
    model = APMAEModel(cfg)
    ours = model.state_dict()
    qkv_bias = "encoder.transformer.layers.0.0.to_qkv.bias" in state
    names = {  # ours -> the reference's, for the tensors copied as they are
        "patch_norm_in.weight": "encoder.patches_to_embedding.0.weight",
        "patch_norm_in.bias": "encoder.patches_to_embedding.0.bias",
        "patch_embed.weight": "encoder.patches_to_embedding.1.weight",
        "patch_embed.bias": "encoder.patches_to_embedding.1.bias",
        "patch_norm_out.weight": "encoder.patches_to_embedding.2.weight",
        "patch_norm_out.bias": "encoder.patches_to_embedding.2.bias",
        "cls_token": "encoder.cls_token",
        "norm.weight": "encoder.transformer.norm.weight", "norm.bias": "encoder.transformer.norm.bias",
        "decoder_norm.weight": "decoder.transformer.norm.weight",
        "decoder_norm.bias": "decoder.transformer.norm.bias",
        "decoder_pred.weight": "decoder.to_pixels.weight", "decoder_pred.bias": "decoder.to_pixels.bias",
    }
    for i in range(cfg.num_hidden_layers):
        names.update(_block_names(f"blocks.{i}", f"encoder.transformer.layers.{i}", qkv_bias))
    for i in range(cfg.decoder_num_hidden_layers):
        names.update(_block_names(f"decoder_blocks.{i}", f"decoder.transformer.layers.{i}", qkv_bias))
    has_enc_to_dec = cfg.hidden_size != cfg.decoder_hidden_size
    if has_enc_to_dec:
        names.update({"decoder_embed.weight": "decoder.enc_to_dec.weight",
                      "decoder_embed.bias": "decoder.enc_to_dec.bias"})
    reshaped = {"encoder.pos_embedding": "pos_embed", "decoder.pos_embedding": "decoder_pos_embed",
                "decoder.mask_token": "mask_token"}

    expected = set(names.values()) | set(reshaped)
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise CheckpointError("not a reference AP-MAE checkpoint of a consistent size: "
                              + "; ".join(f"{what} {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                                          for what, keys in (("missing", missing), ("unexpected", extra)) if keys))
    g = cfg.grid
    rows, cols = torch.tril_indices(g, g)
    keep = torch.cat([torch.zeros(1, dtype=torch.long), 1 + rows * g + cols])  # CLS, then tril cells
    new = {ours_key: state[theirs] for ours_key, theirs in names.items()}
    new["pos_embed"] = state["encoder.pos_embedding"][:, keep]
    new["decoder_pos_embed"] = state["decoder.pos_embedding"][:, keep]
    new["mask_token"] = state["decoder.mask_token"].reshape(1, 1, -1)
    if not qkv_bias:  # the reference's default: bias-free qkv
        for key in ours:
            if key.endswith("qkv.bias"):
                new[key] = torch.zeros_like(ours[key])
    if not has_enc_to_dec:  # the reference's Identity
        new["decoder_embed.weight"] = torch.eye(cfg.hidden_size)
        new["decoder_embed.bias"] = torch.zeros(cfg.hidden_size)
    wrong = [f"{names.get(k, k)} {tuple(v.shape)} (expected {tuple(ours[k].shape)})"
             for k, v in new.items() if v.shape != ours[k].shape]
    if wrong:
        raise CheckpointError("wrong shapes for a reference AP-MAE checkpoint: " + "; ".join(wrong[:5]))
    model.load_state_dict({k: v.float() for k, v in new.items()}, strict=True)
    return model.eval()


def import_reference(path: Path, out: Path) -> Path:
    """Convert the reference checkpoint at ``path`` and save it to ``out`` (a new or empty folder)
    like any transformers model (safetensors)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"{out} exists and is not an empty folder: choose another --out")
    model = convert(*load_reference(Path(path)))
    model.save_pretrained(out, safe_serialization=True)
    return out
