"""Train AP-MAE on a run's stored patterns: ``apmae mae train``.

AdamW (0.9, 0.95), linear warm-up and one cosine cycle, as the paper. Everything random is a
function of the seed and the step (the epoch's order, each step's masking noise), so a run
resumed from its last atomic checkpoint continues exactly where it stopped, and a run under
``torchrun`` (DistributedDataParallel: gloo on the CPU, NCCL on GPUs, one GPU per rank) gives
each rank its own slice of every step's items.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

from ..configs import MAETrainConfig
from ..distributed import rank_and_world, rank_device
from ..paths import atomic_dir, atomic_path
from ..run import Run
from ..training import adamw, lr_at
from .data import PatternFilter, epoch_items, load_packed, select
from .config import config_from_preset
from .model import APMAEModel


def image_size_for(preset: str, window: int) -> int:
    """The preset's image size where it divides the window (patterns average-pooled to it),
    else the window itself (no pooling)."""
    size = config_from_preset(preset).image_size
    return size if window % size == 0 else window


@dataclass
class MAEState:
    step: int = 0
    seconds: float = 0.0
    log: list[dict] = field(default_factory=list)


def train_device(device: str) -> torch.device:
    """The device this process trains on (``auto``: a GPU when there is one); ``cuda`` is
    refused where torch sees no GPU, before any work."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda: no GPU is visible to torch")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return rank_device("cuda") if cuda else torch.device("cpu")


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """:func:`apmae.training.adamw`, position embeddings exempt from decay, fused (the CPU's
    ``foreach`` path still runs several ops per tensor)."""
    return adamw(model, lr, weight_decay, exempt=lambda name: "pos" in name, fused=True)


def attention_kernels(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """The SDPA kernels AP-MAE trains with: on CPU in bf16 the math kernel, whose backward is
    faster there than the flash kernel's at these small sizes; elsewhere PyTorch's own choice."""
    if device.type == "cpu" and bf16:
        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


def step_items(cfg: MAETrainConfig, step: int, n_scenarios: int, layers: int, heads: int,
               rank: int, world: int):
    """This rank's items of ``step``: the global batch is consecutive items of the epoch
    order (epochs concatenated), split among ranks."""
    per_epoch = n_scenarios * layers * max(1, min(heads, round(cfg.head_fraction * heads)))
    start = step * cfg.batch_size
    epoch, offset = divmod(start, per_epoch)
    items = epoch_items(n_scenarios, layers, heads, cfg.head_fraction, cfg.seed, epoch)[offset:]
    while len(items) < cfg.batch_size:  # the batch runs over into the next epoch
        epoch += 1
        nxt = epoch_items(n_scenarios, layers, heads, cfg.head_fraction, cfg.seed, epoch)
        items = np.concatenate([items, nxt])
    return items[:cfg.batch_size][rank::world]


def step_noise(cfg: MAETrainConfig, step: int, patches: int, rank: int, world: int) -> torch.Tensor:
    """This rank's rows of the step's masking noise: drawn for the global batch, so a resumed
    or distributed run masks every item exactly as a single uninterrupted process would."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    return torch.rand((cfg.batch_size, patches), generator=gen)[rank::world]


def pixel_stats(model: APMAEModel, store, ids: list[str], cfg: MAETrainConfig,
                n: int = 2048) -> tuple[float, float]:
    """Mean and standard deviation of the patch pixels the model sees, over the first ``n``
    training items (the same on every rank and on resume): its standardisation constants."""
    items = epoch_items(len(ids), store.meta.layers, store.meta.heads, cfg.head_fraction, cfg.seed, 0)
    patches = model.patchify(model.images_from_patterns(load_packed(store, ids, items[:n])))
    return patches.mean().item(), patches.std().item()


def train_mae(run: Run, cfg: MAETrainConfig, resume: bool = False, out: Path | None = None) -> Path:
    """Train on ``run``'s train-split patterns; returns the saved model folder."""
    flt = PatternFilter("train", cfg.tasks, cfg.completions)
    flt.check()
    cfg.check()
    device = train_device(cfg.device)
    rank, world = rank_and_world("nccl" if device.type == "cuda" else "gloo")
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} does not split over {world} ranks")
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // world))
    out = out or run.mae_path
    ids = select(run, flt)
    if not ids:
        raise ValueError(f"run {run.name}: no stored train-split patterns match tasks={cfg.tasks} "
                         f"completions={cfg.completions}")
    store = run.pattern_store()
    layers, heads, window = store.meta.layers, store.meta.heads, store.meta.window
    size = cfg.image_size or image_size_for(cfg.preset, window)
    config = config_from_preset(cfg.preset, image_size=size, scaling=cfg.scaling,
                                log_floor=cfg.log_floor, patch_size=cfg.patch_size or max(1, size // 8),
                                mask_ratio=cfg.mask_ratio,
                                **{k: v for k, v in (("decoder_profiles", cfg.decoder_profiles),
                                                     ("relative_position_bias", cfg.relative_position_bias))
                                   if v is not None})
    torch.manual_seed(cfg.seed)
    model = APMAEModel(config)
    config.pixel_mean, config.pixel_std = pixel_stats(model, store, ids, cfg)
    model.to(device)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    state = MAEState()
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False, map_location=device)
        if ckpt["config"] != asdict(cfg):
            raise ValueError(f"{ckpt_path} was trained with other settings; start afresh "
                             "without --resume or keep them")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        state = MAEState(**ckpt["state"])
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "train_config.json") as tmp:
            tmp.write_text(json.dumps(
                {**asdict(cfg), "run": run.name, "train_scenarios": len(ids), "patterns_model": store.meta.model,
                 "parameters": sum(p.numel() for p in model.parameters())}, indent=2))
    trained = model if world == 1 else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    model.train()
    bar = tqdm(total=cfg.steps, initial=state.step, desc="mae train", unit="step", disable=rank != 0)
    while state.step < cfg.steps:
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(state.step, cfg.lr, cfg.min_lr, cfg.warmup, cfg.steps)
        items = step_items(cfg, state.step, len(ids), layers, heads, rank, world)
        images = model.images_from_patterns(load_packed(store, ids, items).to(device))
        noise = step_noise(cfg, state.step, config.num_patches, rank, world).to(device)
        with attention_kernels(device, cfg.bf16), torch.autocast(device.type, dtype=torch.bfloat16,
                                                                 enabled=cfg.bf16):
            loss = trained(pixel_values=images, noise=noise, predict="loss").loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state.step += 1
        state.seconds += time.perf_counter() - t0
        state.log.append({"step": state.step, "loss": round(loss.item(), 6),
                          "lr": opt.param_groups[0]["lr"], "seconds": round(state.seconds, 2)})
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.5f}",
                        img_s=f"{state.step * cfg.batch_size / state.seconds:.0f}")
        if rank == 0 and (state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps):
            with atomic_path(ckpt_path) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "state": asdict(state), "config": asdict(cfg)}, tmp)
    bar.close()
    final = out / "model"
    if rank == 0:
        with atomic_dir(final) as tmp:
            model.save_pretrained(tmp)
        with atomic_path(out / "train_log.json") as tmp:
            tmp.write_text(json.dumps(asdict(state)))
    if world > 1:
        dist.barrier()
    return final
