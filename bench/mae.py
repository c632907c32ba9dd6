"""AP-MAE training and encoding throughput on CPU, ours and a plain reference ViT-MAE side by side.

    python -m bench.mae [--quick] [--json] [--presets cpu,paper] [--threads 2] [--profile]

- ``ours``: ``apmae.mae.model.APMAEModel`` as apmae trains and encodes it (fused-qkv SDPA blocks,
  lower-triangular patches only, the ``cpu`` preset with its decoder profiles; training as
  ``apmae mae train`` does by default: bf16 autocast, SDPA's math kernel, fused AdamW, the
  decoder's last block on the masked patches only);
- ``ours_fp32``: the same, trained in fp32;
- ``ours_position_bias``: ours in bf16 with ``relative_position_bias=True`` (the ``cpu``
  preset's previous default), to show what the bias costs;
- ``reference``: :class:`bench.reference_mae.ReferenceMAE`, the same sizes written the way the
  reference writes them (einops patchify over the full grid, explicit softmax attention with
  separate q/k/v layers), trained in fp32; ``reference_bf16`` the same under bf16 autocast.

``mae_train_vs_reference`` is ours over reference: what a user gets from apmae over a plain
script; every ratio is the median over repeats of the two variants' images/s in the same
repeat (paired: a machine that slows down between repeats slows both). The same-precision
ratios (``mae_train_fp32_vs_reference``, ``mae_train_bf16_vs_reference_bf16``) say how much of
it is the precision.

Training: forward + backward + AdamW step (betas 0.9/0.95, weight decay 0.05; no gradient
clipping in either), mask ratio 0.5 over the 36 lower-triangular patches, fp32, images/s; the
forward / backward / optimizer split of each step is reported too. Encoding: ``encode`` (CLS
vector of unmasked images) under ``torch.inference_mode``, with bf16 autocast (as ``apmae
encode`` runs it) and in fp32, images/s; the reference also over all 64 patches (its analysis
path). Every variant sees the same synthetic 256-token pattern images (at the preset's image
size: 64 px for ``cpu``, 256 for ``paper``) and masking noise; the
timings of the variants are interleaved repeat by repeat so load from other processes hits all
alike, the two sides of each ratio back to back (:data:`ORDER`). Medians over repeats. Before
timing, the reference loaded with our weights (no bias, no profiles) must give our loss and our
encoding: both compute the same function.

``--quick`` (a smoke run) times the ``cpu`` preset only, unless ``--presets`` says otherwise: one
step of the paper preset takes several seconds, and tens on a loaded machine. ``--profile`` prints
``torch.profiler`` tables of a few training steps of each variant instead of timing.

Prints a table, then (``--json``) one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import torch

from apmae.store.format import LOG_FLOOR, lower_triangle
from apmae.mae.config import config_from_preset
from apmae.mae.model import APMAEModel
from apmae.mae.train import attention_kernels, make_optimizer
from apmae.mae.scaling import to_images
from bench.reference_mae import ReferenceMAE

THREADS = 2  # the machine's cores, as apmae trains and encodes on it
WINDOW = 256  # tokens = image side

#: Per preset and mode: training batch, steps per timing, timings (repeats), warm-up steps;
#: encoding batch and timings. Short timings, many of them, interleaved: on a loaded machine
#: the median of many short side-by-side timings is steadier than a few long ones. The paper
#: preset is ~100M parameters: few steps.
PLAN = {
    "cpu": {
        "full": {"batch": 64, "steps": 2, "repeats": 9, "warmup": 2, "enc_batch": 128, "enc_repeats": 5},
        "quick": {"batch": 64, "steps": 2, "repeats": 7, "warmup": 1, "enc_batch": 128, "enc_repeats": 3},
    },
    "paper": {
        "full": {"batch": 8, "steps": 1, "repeats": 3, "warmup": 1, "enc_batch": 8, "enc_repeats": 3},
        "quick": {"batch": 8, "steps": 1, "repeats": 1, "warmup": 1, "enc_batch": 4, "enc_repeats": 1},
    },
}


# --- inputs ------------------------------------------------------------------------------------


def pattern_images(n: int, seed: int = 0, T: int = WINDOW, size: int | None = None) -> torch.Tensor:
    """``[n, 1, size, size]`` log-affine images of synthetic ``T``-token causal attention
    patterns (``size``: a divisor of ``T`` average-pools them, as a preset's image size does).

    Each pattern is a row-wise softmax of random scores with its own sharpness, a decay with
    the query-key distance (local heads) and extra weight on the first token (sink heads),
    stored as apmae stores patterns (float16 lower triangle of floored log-probs) and turned
    into images by :func:`apmae.mae.scaling.to_images`.
    """
    g = torch.Generator().manual_seed(seed)
    pos = torch.arange(T, dtype=torch.float32)
    dist = (pos[:, None] - pos[None, :]).clamp_min(0)
    upper = torch.ones(T, T, dtype=torch.bool).triu(1)
    packed = []
    for start in range(0, n, 32):
        m = min(32, n - start)
        sharp = torch.empty(m, 1, 1).uniform_(0.5, 4.0, generator=g)
        decay = torch.empty(m, 1, 1).uniform_(0.0, 0.3, generator=g) * (torch.rand(m, 1, 1, generator=g) < 0.5)
        sink = torch.empty(m, 1).uniform_(0.0, 8.0, generator=g)
        scores = torch.randn(m, T, T, generator=g) * sharp - decay * dist
        scores[:, :, 0] += sink
        logp = scores.masked_fill(upper, float("-inf")).log_softmax(-1)
        packed.append(lower_triangle(logp).clamp_min(LOG_FLOOR).to(torch.float16))
    return to_images(torch.cat(packed), "log_affine", -20.0, size)


# --- models ------------------------------------------------------------------------------------


def build(preset: str, images: torch.Tensor) -> dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]]:
    """The variants of ``preset``, each with its optimizer, as apmae (train.py) and a plain
    training script would set them up."""
    models: dict[str, torch.nn.Module] = {}
    for name in ("ours", "ours_fp32"):  # the same initial weights
        torch.manual_seed(0)
        models[name] = APMAEModel(config_from_preset(preset))
    if preset == "cpu":
        models["ours_position_bias"] = APMAEModel(config_from_preset(preset, relative_position_bias=True))
    out = {}
    for name, model in models.items():
        patches = model.patchify(images[:256])
        model.config.pixel_mean, model.config.pixel_std = patches.mean().item(), patches.std().item()
        out[name] = (model, make_optimizer(model, 1e-4, 0.05))
    for name in ("reference", "reference_bf16"):
        torch.manual_seed(0)
        ref = ReferenceMAE(config_from_preset(preset, relative_position_bias=False, decoder_profiles=False))
        out[name] = (ref, torch.optim.AdamW(ref.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05))
    return {name: out[name] for name in ORDER if name in out}


#: The order variants are timed in within a repeat: each ratio's two sides back to back.
ORDER = ("ours", "reference", "ours_fp32", "reference_bf16", "ours_position_bias")


#: Training variants run under bf16 autocast; the others in fp32.
BF16_TRAIN = ("ours", "ours_position_bias", "reference_bf16")


def check_equivalence(images: torch.Tensor, noise: torch.Tensor) -> dict[str, float]:
    """The reference with our (no-bias, no-profile, unstandardised) weights gives our loss and encoding."""
    torch.manual_seed(1)
    ours = APMAEModel(config_from_preset("cpu", relative_position_bias=False, decoder_profiles=False))
    ref = ReferenceMAE(ours.config).load_from_apmae(ours)
    with torch.no_grad():
        d_loss = (ours(pixel_values=images, noise=noise).loss - ref(images, noise)).abs().item()
        d_enc = (ours.encode(images) - ref.encode(images)).abs().max().item()
    if d_loss > 1e-4 or d_enc > 1e-3:
        raise AssertionError(f"reference and ours differ: |dloss| {d_loss:.2e}, |dencode| {d_enc:.2e}")
    return {"loss": d_loss, "encode": d_enc}


# --- timing ------------------------------------------------------------------------------------


def train_step(name: str, model: torch.nn.Module, opt: torch.optim.Optimizer,
               images: torch.Tensor, noise: torch.Tensor) -> tuple[float, float, float]:
    """One step; returns (forward, backward, optimizer) seconds."""
    t0 = time.perf_counter()
    bf16 = name in BF16_TRAIN
    kernels = contextlib.nullcontext() if name.startswith("reference") else attention_kernels(torch.device("cpu"), bf16)
    with kernels, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if name.startswith("reference"):
            loss = model(images, noise)
        else:
            loss = model(pixel_values=images, noise=noise, predict="loss").loss
    t1 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    t2 = time.perf_counter()
    opt.step()
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def encode_call(name: str, model: torch.nn.Module, images: torch.Tensor, bf16: bool, all64: bool) -> None:
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        model.encode(images, all_patches=True) if all64 else model.encode(images)


def bench_preset(preset: str, plan: dict, images: torch.Tensor, log) -> dict:
    variants = build(preset, images)
    B, n = plan["batch"], len(images)
    n_batches = max(1, n // B)
    gen = torch.Generator().manual_seed(1)
    num_patches = config_from_preset(preset).num_patches
    batches = [(images[i * B:(i + 1) * B], torch.rand(B, num_patches, generator=gen)) for i in range(n_batches)]

    # training: warm-up, then repeats interleaved across the variants
    for name, (model, opt) in variants.items():
        model.train()
        for i in range(plan["warmup"]):
            train_step(name, model, opt, *batches[i % n_batches])
    rates = {name: [] for name in variants}
    phases = {name: [] for name in variants}
    step = 0
    for r in range(plan["repeats"]):
        for name, (model, opt) in variants.items():
            t0 = time.perf_counter()
            for s in range(plan["steps"]):
                phases[name].append(train_step(name, model, opt, *batches[(step + s) % n_batches]))
            rates[name].append(B * plan["steps"] / (time.perf_counter() - t0))
        step += plan["steps"]
        log(f"  {preset} train repeat {r + 1}/{plan['repeats']}: "
            + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()) + " img/s")
    train = {}
    for name in variants:
        fwd, bwd, opt_s = (statistics.median(p[i] for p in phases[name]) * 1e3 for i in range(3))
        train[name] = {"img_s": statistics.median(rates[name]), "rates": rates[name], "batch": B,
                       "fwd_ms": fwd, "bwd_ms": bwd, "opt_ms": opt_s,
                       "params": sum(p.numel() for p in variants[name][0].parameters())}

    # encoding: drop the optimizer state, eval mode
    models = {name: m.eval() for name, (m, _) in variants.items() if name in ("ours", "reference")}
    del variants
    enc_images = images[: plan["enc_batch"]]
    cases = []
    for name in models:
        cases += [(f"{name}_bf16", name, True, False), (f"{name}_fp32", name, False, False)]
    cases.append(("reference_fp32_all64", "reference", False, True))
    for _, name, bf16, all64 in cases:  # warm-up
        encode_call(name, models[name], enc_images, bf16, all64)
    enc_rates = {case[0]: [] for case in cases}
    for r in range(plan["enc_repeats"]):
        for label, name, bf16, all64 in cases:
            t0 = time.perf_counter()
            encode_call(name, models[name], enc_images, bf16, all64)
            enc_rates[label].append(len(enc_images) / (time.perf_counter() - t0))
        log(f"  {preset} encode repeat {r + 1}/{plan['enc_repeats']}")
    encode = {label: {"img_s": statistics.median(v), "batch": len(enc_images)} for label, v in enc_rates.items()}
    return {"train": train, "encode": encode}


# --- profile (optional) ------------------------------------------------------------------------


def profile(preset: str, images: torch.Tensor, batch: int) -> None:
    """Top operators of a few training steps of each variant (``--profile``)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    variants = build(preset, images)
    num_patches = config_from_preset(preset).num_patches
    x, noise = images[:batch], torch.rand(batch, num_patches, generator=torch.Generator().manual_seed(2))
    for name, (model, opt) in variants.items():
        for _ in range(2):
            train_step(name, model, opt, x, noise)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                train_step(name, model, opt, x, noise)
        events = prof.key_averages()
        print(f"\n== {preset} {name}: batch {batch}, {events.self_cpu_time_total / 3e3:.0f} ms per "
              f"training step (profiled), {sum(e.count for e in events) // 3} operator calls per step")
        print(events.table(sort_by="self_cpu_time_total", row_limit=12))


# --- main --------------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2)


def _paired(train: dict, name: str, other: str) -> float:
    """Median over repeats of ``name``'s images/s over ``other``'s in the same repeat: the two
    ran back to back, so a machine that slows down between repeats slows both alike."""
    return round(statistics.median(a / b for a, b in zip(train[name]["rates"], train[other]["rates"])), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: fewer steps and repeats, cpu preset only unless --presets (<1 minute)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--presets", help="comma-separated (default: cpu,paper; with --quick: cpu)")
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--profile", action="store_true", help="print torch.profiler tables instead of timing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    presets = [p for p in (args.presets or ("cpu" if args.quick else "cpu,paper")).split(",") if p]
    mode = "quick" if args.quick else "full"

    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:5.0f} s] {msg}", flush=True)

    n_images = max(PLAN[p][mode]["batch"] * 4 for p in presets)
    n_images = max(n_images, *(PLAN[p][mode]["enc_batch"] for p in presets))
    images = {p: pattern_images(n_images, size=config_from_preset(p).image_size) for p in {*presets, "cpu"}}
    log(f"{n_images} synthetic {WINDOW}-token pattern images per preset ("
        + ", ".join(f"{p} {config_from_preset(p).image_size} px" for p in presets)
        + f"); torch {torch.__version__}, {args.threads} threads, {mode} mode")
    if args.profile:
        for p in presets:
            profile(p, images[p], PLAN[p][mode]["batch"])
        return
    diff = check_equivalence(images["cpu"][:8], torch.rand(8, config_from_preset("cpu").num_patches,
                                                    generator=torch.Generator().manual_seed(3)))
    log(f"equivalence: reference with our weights: |dloss| {diff['loss']:.1e}, max |dencode| {diff['encode']:.1e}")
    results = {}
    for p in presets:
        results[p] = bench_preset(p, PLAN[p][mode], images[p], log)

    print()
    print(f"{'preset':6s} {'task':6s} {'variant':22s} {'batch':>5s} {'img/s':>8s} {'vs ref':>7s} "
          f"{'fwd ms':>8s} {'bwd ms':>8s} {'opt ms':>8s} {'params':>7s}")
    summary: dict[str, float] = {}
    for p, res in results.items():
        for name, r in res["train"].items():
            print(f"{p:6s} {'train':6s} {name:22s} {r['batch']:5d} {r['img_s']:8.1f} "
                  f"{_paired(res['train'], name, 'reference'):6.2f}x "
                  f"{r['fwd_ms']:8.1f} {r['bwd_ms']:8.1f} {r['opt_ms']:8.1f} {r['params'] / 1e6:6.1f}M")
            summary[f"{p}_train_{name}_img_s"] = round(r["img_s"], 2)
        ref_enc = res["encode"]["reference_fp32"]["img_s"]
        for label, r in res["encode"].items():
            print(f"{p:6s} {'encode':6s} {label:22s} {r['batch']:5d} {r['img_s']:8.1f} {r['img_s'] / ref_enc:6.2f}x")
            summary[f"{p}_encode_{label}_img_s"] = round(r["img_s"], 2)
        suffix = "" if p == "cpu" else f"_{p}"
        summary[f"mae_train_vs_reference{suffix}"] = _paired(res["train"], "ours", "reference")
        summary[f"mae_train_fp32_vs_reference{suffix}"] = _paired(res["train"], "ours_fp32", "reference")
        summary[f"mae_train_bf16_vs_reference_bf16{suffix}"] = _paired(res["train"], "ours", "reference_bf16")
        if "ours_position_bias" in res["train"]:
            summary[f"mae_train_position_bias_vs_reference{suffix}"] = _paired(
                res["train"], "ours_position_bias", "reference")
        summary[f"mae_encode_img_s{suffix}"] = round(res["encode"]["ours_bf16"]["img_s"], 1)
        summary[f"mae_encode_bf16_vs_reference_fp32{suffix}"] = _ratio(res["encode"]["ours_bf16"]["img_s"], ref_enc)
        summary[f"mae_encode_fp32_vs_reference_fp32{suffix}"] = _ratio(res["encode"]["ours_fp32"]["img_s"], ref_enc)
        summary[f"mae_encode_bf16_vs_reference_bf16{suffix}"] = _ratio(
            res["encode"]["ours_bf16"]["img_s"], res["encode"]["reference_bf16"]["img_s"])
    print("\n" + ", ".join(f"{k} {v}" for k, v in summary.items() if k.startswith("mae_")))
    print(f"({time.perf_counter() - t_start:.0f} s)")
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
