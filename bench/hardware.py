"""How close the LM forward pass and AP-MAE training get to this machine's matrix-multiply limit.

    python -m bench.hardware [--quick] [--json] [--threads 2]

- ``matmul_gflops``: the best sustained fp32 GEMM rate torch reaches here (square ``torch.mm``,
  median of repeats, the largest size tried): the practical hardware limit the others are held
  against. The bf16 rate is reported too (AMX/AVX-512-BF16 machines run it faster).
- ``lm_forward``: the shipped default model's forward pass over 8 windows of 256 tokens in fp32,
  every head's pattern captured and coded as ``apmae extract`` runs it (``record_attention``),
  under ``torch.inference_mode``;
- ``mae_train``: one AP-MAE training step (forward, backward, AdamW) of the ``cpu`` preset on 64
  pattern images under bf16 autocast, as ``apmae mae train`` runs it; held against the bf16
  matmul rate, the limit for its precision.

FLOPs are counted, not estimated: :class:`torch.utils.flop_counter.FlopCounterMode` records every
matmul, convolution and attention call of one run of each workload; achieved GFLOP/s is that count
over the median time of the timed runs, and its fraction of the matmul rate of its precision is
reported as ``*_fraction_of_matmul``. Work outside matmuls (softmax, norms, the optimizer) counts no FLOPs but
takes time, so these fractions are what a user actually gets from the GEMM units.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

THREADS = 2


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def counted_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_gflops(dtype: torch.dtype, sizes: tuple[int, ...], repeats: int) -> dict[int, float]:
    """GFLOP/s of ``a @ b`` for square ``n x n`` operands, per size."""
    out = {}
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        c = torch.empty(n, n, dtype=dtype)
        seconds = median_seconds(lambda: torch.mm(a, b, out=c), repeats)
        out[n] = 2 * n**3 / seconds / 1e9
    return out


def lm_forward(repeats: int) -> dict[str, float]:
    from apmae.capture import record_attention
    from apmae.lm.load import load_target

    target = load_target(None)
    ids = torch.randint(10, len(target.tokenizer), (8, 256), generator=torch.Generator().manual_seed(0))

    def forward() -> None:
        with torch.inference_mode(), record_attention(target.model, log_range=20.0) as rec:
            target.model(input_ids=ids, use_cache=False)
            rec.take()

    flops = counted_flops(forward)
    seconds = median_seconds(forward, repeats)
    return {"gflop": flops / 1e9, "seconds": seconds, "gflops": flops / seconds / 1e9}


def mae_train(repeats: int) -> dict[str, float]:
    from apmae.mae.config import config_from_preset
    from apmae.mae.model import APMAEModel
    from apmae.mae.train import attention_kernels, make_optimizer
    from bench.mae import pattern_images

    torch.manual_seed(0)
    config = config_from_preset("cpu")
    model = APMAEModel(config).train()
    opt = make_optimizer(model, 1e-4, 0.05)
    images = pattern_images(64, size=config.image_size)

    def step() -> None:
        with attention_kernels(torch.device("cpu"), True), torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(pixel_values=images, predict="loss").loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    flops = counted_flops(step)
    seconds = median_seconds(step, repeats)
    return {"gflop": flops / 1e9, "seconds": seconds, "gflops": flops / seconds / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (~20 s)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--threads", type=int, default=THREADS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 9
    fp32 = matmul_gflops(torch.float32, (512, 1024, 2048), repeats)
    bf16 = matmul_gflops(torch.bfloat16, (2048,), repeats)
    peak = max(fp32.values())
    lm, mae = lm_forward(repeats), mae_train(repeats)
    print(f"torch {torch.__version__}, {args.threads} threads")
    for n, g in fp32.items():
        print(f"  fp32 matmul {n:5d}^2   {g:8.1f} GFLOP/s")
    print(f"  bf16 matmul  2048^2   {bf16[2048]:8.1f} GFLOP/s")
    for name, r, limit, kind in (("LM forward fp32 (8 x 256)", lm, peak, "fp32"),
                                 ("AP-MAE train bf16 (64)", mae, bf16[2048], "bf16")):
        print(f"  {name:26s} {r['gflop']:7.1f} GFLOP in {r['seconds'] * 1000:7.1f} ms = "
              f"{r['gflops']:6.1f} GFLOP/s, {r['gflops'] / limit:5.1%} of {kind} matmul")
    if args.json:
        print(json.dumps({
            "matmul_gflops": round(peak, 1), "matmul_bf16_gflops": round(bf16[2048], 1),
            "lm_forward_gflops": round(lm["gflops"], 1),
            "lm_forward_fraction_of_matmul": round(lm["gflops"] / peak, 3),
            "mae_train_gflops": round(mae["gflops"], 1),
            "mae_train_fraction_of_matmul": round(mae["gflops"] / bf16[2048], 3),
        }))


if __name__ == "__main__":
    main()
