"""Evaluate AP-MAE: ``apmae mae eval``.

Masked-patch MSE on held-out (test-split) patterns, with the same masks for AP-MAE and three
baselines that need no learning — so "reconstructs well" has a yardstick:

- ``head_mean``: the mean train-split image of the same (layer, head);
- ``visible_mean``: the pixel-wise mean of the image's own visible patches;
- ``nearest_visible``: a copy of the visible patch nearest on the patch grid.

Also a per-layer breakdown, PNG triptychs (original, masked, reconstruction) for the explorer,
and — given a run of another model — the MSE on patterns of a model AP-MAE never saw.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..configs import MAEEvalConfig
from ..paths import atomic_path
from ..run import Run
from .data import PatternFilter, all_items, load_packed, select
from .model import APMAEModel

BASELINES = ("head_mean", "visible_mean", "nearest_visible")


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error over masked patches: ``[B]``."""
    per_patch = ((pred - target) ** 2).mean(-1)
    return (per_patch * mask).sum(-1) / mask.sum(-1)


def grid_distances(model: APMAEModel) -> torch.Tensor:
    """``[N, N]`` Euclidean distances between the lower-triangular patches' grid cells."""
    cells = model.tril_patches.float()
    return torch.cdist(cells, cells)


def baseline_predictions(patches: torch.Tensor, mask: torch.Tensor, head_mean: torch.Tensor,
                         distances: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each baseline's ``[B, N, P]`` prediction of every patch (only masked ones are scored)."""
    visible = (1 - mask).unsqueeze(-1)
    visible_mean = (patches * visible).sum(1, keepdim=True) / visible.sum(1, keepdim=True)
    d = distances.unsqueeze(0).expand(len(patches), -1, -1).clone()
    d[mask.bool().unsqueeze(1).expand_as(d)] = float("inf")  # only visible patches are sources
    nearest = d.argmin(-1)  # [B, N]: ties go to the lower patch index
    copied = torch.gather(patches, 1, nearest.unsqueeze(-1).expand_as(patches))
    return {"head_mean": head_mean, "visible_mean": visible_mean.expand_as(patches),
            "nearest_visible": copied}


def head_mean_patches(model: APMAEModel, run: Run, cfg: MAEEvalConfig) -> torch.Tensor:
    """``[layers, heads, N, P]``: the mean train-split image of every head, patchified."""
    store = run.pattern_store()
    ids = select(run, PatternFilter("train"))
    ids = [ids[i] for i in sorted(np.random.default_rng(cfg.seed).permutation(len(ids))[:cfg.mean_scenarios])]
    if not ids:
        raise ValueError(f"run {run.name}: no train-split patterns for the head_mean baseline")
    layers, heads = store.meta.layers, store.meta.heads
    total = torch.zeros(layers * heads, model.config.num_patches, model.config.patch_size ** 2)
    for sid in tqdm(ids, desc="head means", leave=False):
        packed = torch.from_numpy(np.array(store.get(sid))).reshape(layers * heads, -1)
        total += model.patchify(model.images_from_patterns(packed))
    return (total / len(ids)).reshape(layers, heads, *total.shape[1:])


def eval_items(run: Run, cfg: MAEEvalConfig) -> tuple[list[str], np.ndarray]:
    """Held-out items: every head of the test split's scenarios, sampled to ``max_patterns``."""
    store = run.pattern_store()
    ids = select(run, PatternFilter("test"))
    if not ids:
        raise ValueError(f"run {run.name}: no stored test-split patterns to evaluate on")
    items = all_items(len(ids), store.meta.layers, store.meta.heads)
    if len(items) > cfg.max_patterns:
        pick = np.random.default_rng(cfg.seed).permutation(len(items))[:cfg.max_patterns]
        items = items[np.sort(pick)]
    return ids, items


@torch.no_grad()
def reconstruction(model: APMAEModel, run: Run, cfg: MAEEvalConfig,
                   with_baselines: bool = True, triptych_dir: Path | None = None) -> dict:
    """Masked MSE of ``model`` on ``run``'s held-out patterns (and the baselines'), by layer."""
    model.eval()
    store = run.pattern_store()
    ids, items = eval_items(run, cfg)
    means = head_mean_patches(model, run, cfg) if with_baselines else None
    distances = grid_distances(model)
    names = ("model", *BASELINES) if with_baselines else ("model",)
    errors = {name: [] for name in names}
    gen = torch.Generator().manual_seed(cfg.seed)
    for start in tqdm(range(0, len(items), cfg.batch_size), desc="mae eval", unit="batch"):
        batch = items[start:start + cfg.batch_size]
        images = model.images_from_patterns(load_packed(store, ids, batch))
        noise = torch.rand(len(batch), model.config.num_patches, generator=gen)
        out = model(pixel_values=images, noise=noise)
        target = model.patchify(images)
        errors["model"].append(_masked_mse(out.pred, target, out.mask))
        if means is not None:
            preds = baseline_predictions(target, out.mask, means[batch[:, 1], batch[:, 2]], distances)
            for name, pred in preds.items():
                errors[name].append(_masked_mse(pred, target, out.mask))
        if triptych_dir is not None and start == 0:
            write_triptychs(model, images, out.pred, out.mask, ids, batch, triptych_dir, cfg.triptychs)
    err = {k: torch.cat(v).double() for k, v in errors.items()}
    layer = torch.from_numpy(items[:, 1])
    by_layer = {int(l): {k: float(v[layer == l].mean()) for k, v in err.items()}
                for l in sorted(set(items[:, 1].tolist()))}
    result = {"mse": float(err["model"].mean()), "n_patterns": len(items),
              "n_scenarios": len({int(s) for s in items[:, 0]}), "by_layer": by_layer}
    if means is not None:
        result["baselines"] = {k: float(err[k].mean()) for k in BASELINES}
        best = min(result["baselines"], key=result["baselines"].get)
        result["best_baseline"] = best
        result["ratio_to_best_baseline"] = result["mse"] / result["baselines"][best]
    return result


# --- triptychs --------------------------------------------------------------------------------

#: A perceptual dark-to-bright colour ramp (viridis' anchors); masked patches are drawn grey.
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], float)
_MASKED = np.array([150, 150, 150], np.uint8)
TRIPTYCH_PX = 256  # smaller images are drawn at this size, each pixel a block


def colorize(image: np.ndarray) -> np.ndarray:
    """``[H, W]`` values in [0, 1] → ``[H, W, 3]`` uint8 along the ramp."""
    x = np.clip(image, 0, 1) * (len(_RAMP) - 1)
    lo = np.floor(x).astype(int).clip(0, len(_RAMP) - 2)
    t = (x - lo)[..., None]
    return ((1 - t) * _RAMP[lo] + t * _RAMP[lo + 1]).astype(np.uint8)


def write_triptychs(model: APMAEModel, images: torch.Tensor, pred: torch.Tensor,
                    mask: torch.Tensor, ids: list[str], items: np.ndarray, out: Path, n: int) -> None:
    """PNGs of original | masked | reconstruction (visible patches kept, masked ones predicted)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    patches = model.patchify(images)
    m = mask.unsqueeze(-1)
    recon = model.unpatchify(patches * (1 - m) + pred.clamp(0, 1) * m)
    # the masked panel: a 1 in masked patches, unpatchified, marks the pixels to grey out
    hidden = model.unpatchify(m.expand_as(patches)).bool()
    for i in range(min(n, len(items))):
        s, l, h = (int(x) for x in items[i])
        panels = [colorize(images[i, 0].numpy()), colorize(images[i, 0].numpy()),
                  colorize(recon[i, 0].numpy())]
        panels[1][hidden[i, 0].numpy()] = _MASKED
        gap = np.full((images.shape[-2], 4, 3), 255, np.uint8)
        strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
        zoom = max(1, TRIPTYCH_PX // images.shape[-1])  # pooled images: whole pixels, enlarged
        strip = strip.repeat(zoom, axis=0).repeat(zoom, axis=1)
        name = re.sub(r"[^\w.-]", "_", f"{ids[s]}-L{l}H{h}.png")
        with atomic_path(out / name) as tmp:
            Image.fromarray(strip).save(tmp, format="PNG")


def evaluate(run: Run, cfg: MAEEvalConfig, other: Run | None = None,
             model_dir: Path | None = None) -> dict:
    """Evaluate the run's AP-MAE; with ``other``, also on that run's (another model's)
    patterns. Writes ``mae/eval.json``, which the run report includes."""
    model_dir = model_dir or run.mae_model_path
    if not (model_dir / "config.json").exists():
        raise ValueError(f"{model_dir}: no trained AP-MAE (run `apmae mae train` first)")
    model = APMAEModel.from_pretrained(model_dir)
    result = {"reconstruction": reconstruction(model, run, cfg,
                                               triptych_dir=run.mae_path / "triptychs")}
    if other is not None:
        window = other.pattern_store().meta.window if other.pattern_store() else None
        if not window or window % model.config.image_size:
            raise ValueError(f"run {other.name}: its patterns ({window} tokens wide) do not "
                             f"make {model.config.image_size}-pixel images")
        same = result["reconstruction"]["mse"]
        # the other model's patterns may be easier or harder in themselves: where its run has
        # train-split patterns, its own baselines say which
        theirs = reconstruction(model, other, cfg, with_baselines=bool(select(other, PatternFilter("train"))))
        result["generalization"] = {"mse_same_model": same, "mse_other_model": theirs["mse"],
                                    "other_run": other.name,
                                    "other_model": other.pattern_store().meta.model,
                                    "degradation": theirs["mse"] / same - 1}
        if "ratio_to_best_baseline" in theirs:
            result["generalization"].update(
                ratio_to_best_baseline_same_model=result["reconstruction"]["ratio_to_best_baseline"],
                ratio_to_best_baseline_other_model=theirs["ratio_to_best_baseline"])
    with atomic_path(run.mae_eval_path) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    return result
