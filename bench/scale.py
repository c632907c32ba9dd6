"""Cost at the paper's scale: clustering many heads, and a prefill of the StarCoder2 shapes.

    python -m bench.scale [--json] [--points 250,500,1000,2000] [--heads 2,4] [--workers 2]
                          [--shapes starcoder2-3b,starcoder2-7b,starcoder2-15b] [--layers 1,2]

No weights can be downloaded here, and cost depends on a model's shape, not on its weights, so:

- **Clustering** (``apmae.atlas.cluster.cluster_head``, what ``apmae cluster`` runs per head) of
  synthetic embeddings (a mixture of Gaussians, 128 dimensions as the ``cpu`` preset's AP-MAE
  gives) for every (heads, points) of the grid, in this process after one warm-up (numba's
  compilation, paid once per worker process, is timed apart). A least-squares fit of
  ``seconds = a * heads * points**b`` says how it grows with points; a run of ``apmae
  cluster``'s parallel path (``workers`` processes), each head timed as its result arrives,
  gives the start-up (processes, compilation) and the marginal cost of a head with every worker
  busy; together they extrapolate to 720, 1,152 and 1,920 heads x 2,000 points.
- **Prefill**: one 256-token prompt through a model of each shape with ``layers`` of its layers
  (random bf16 weights, the checkpoints' 49,152-token vocabulary), every head's pattern
  captured as ``apmae extract`` does, each size in its own process (its own memory peak). The
  difference between two layer counts is the measured cost of a layer; with the rest it
  extrapolates time and peak memory to the whole model.
- **Storage** per inference follows from the shape: every head's packed lower triangle at one
  byte per value, and the AP-MAE embeddings in float16.

Prints the measurements, the fits and a table per shape; ``--json``: one JSON object last.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import time

import numpy as np

from apmae.lm.shapes import SHAPES, STARCODER2_VOCAB, Shape

EMBED_DIM = 128  # the cpu preset's AP-MAE hidden size
PAPER_EMBED_DIM = 512
TARGET_POINTS = 2000
WINDOW = 256


def synthetic_embeddings(heads: int, points: int, seed: int = 0, clusters: int = 12) -> np.ndarray:
    """``[points, heads, EMBED_DIM]`` float16, each head a mixture of ``clusters`` Gaussians."""
    rng = np.random.default_rng(seed)
    out = np.empty((points, heads, EMBED_DIM), np.float16)
    for h in range(heads):
        centers = rng.normal(size=(clusters, EMBED_DIM))
        out[:, h] = centers[rng.integers(0, clusters, points)] + 0.5 * rng.normal(size=(points, EMBED_DIM))
    return out


def cluster_grid(points: list[int], heads: list[int], workers: int) -> dict:
    """In-process seconds per (heads, points), the fit, and one parallel run's efficiency."""
    from apmae.atlas.build import _cluster_heads
    from apmae.atlas.cluster import ClusterConfig, cluster_head

    cfg = ClusterConfig(selection="leaf")  # what apmae demo clusters with
    t0 = time.perf_counter()
    cluster_head(synthetic_embeddings(1, 200, seed=99)[:, 0], cfg)
    compile_s = time.perf_counter() - t0
    grid = []
    for p in points:
        x = synthetic_embeddings(max(heads), p, seed=p)
        for h in heads:
            t0 = time.perf_counter()
            labels = [cluster_head(x[:, i], cfg).n_clusters for i in range(h)]
            grid.append({"heads": h, "points": p, "seconds": time.perf_counter() - t0,
                         "clusters_per_head": statistics.mean(labels)})
            print(f"  cluster {h} heads x {p} points: {grid[-1]['seconds']:.1f} s", flush=True)
    # log(seconds / heads) = log a + b log(points)
    logp = np.log([g["points"] for g in grid])
    logt = np.log([g["seconds"] / g["heads"] for g in grid])
    b, loga = np.polyfit(logp, logt, 1)
    per_head = {h: statistics.mean(g["seconds"] / h for g in grid if g["heads"] == h) for h in heads}

    # apmae cluster's own parallel path, each head's result timed as it arrives: the first one
    # per worker carries the start (processes, imports, numba's compilation), the rest arrive
    # at the marginal rate of a head with every worker busy
    par_points, par_heads = points[len(points) // 2], 8 * workers
    x = synthetic_embeddings(par_heads, par_points, seed=7)[:, None]  # [n, 1 layer, heads, d]
    t0, arrivals = time.perf_counter(), []
    for _ in _cluster_heads(x, [(0, h) for h in range(par_heads)],
                            ClusterConfig(selection="leaf", workers=workers)):
        arrivals.append(time.perf_counter() - t0)
    print(f"  apmae cluster's path, {workers} processes, {par_heads} heads x {par_points} points: "
          f"{arrivals[-1]:.1f} s, first result after {arrivals[0]:.1f} s", flush=True)
    marginal = (arrivals[-1] - arrivals[workers - 1]) / (par_heads - workers)
    start_s = arrivals[workers - 1] - workers * marginal
    efficiency = float(np.exp(loga) * par_points ** b) / (workers * marginal)

    def wall(total_heads: int, n: int) -> float:
        """Seconds for apmae cluster's path over ``total_heads`` heads of ``n`` points."""
        return start_s + total_heads * marginal * (n / par_points) ** b

    return {"compile_s": compile_s, "grid": grid, "a": float(np.exp(loga)), "b": float(b),
            "per_head_s_by_heads": per_head,
            "parallel": {"workers": workers, "heads": par_heads, "points": par_points,
                         "wall_s": arrivals[-1], "start_s": start_s,
                         "marginal_s_per_head": marginal, "efficiency": efficiency},
            "wall": wall}


def _current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _prefill(shape_name: str, layers: int, repeats: int, queue) -> None:
    """In a child process: build ``layers`` layers of the shape in bf16, time a captured
    256-token prefill; reports seconds and the peak memory above the process's start."""
    import torch
    from transformers import AutoModelForCausalLM

    from apmae.capture import CAPTURE_ATTENTION, record_attention
    from apmae.lm.shapes import starcoder2_config

    torch.set_num_threads(2)
    base = _current_rss()
    shape = Shape.named(shape_name)
    config = starcoder2_config(Shape(**{**shape.__dict__, "layers": layers}), STARCODER2_VOCAB)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16,
                                             attn_implementation=CAPTURE_ATTENTION).eval()
    ids = torch.randint(1, 8192, (1, WINDOW), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        with torch.inference_mode(), record_attention(model, log_range=20.0) as rec:
            model(input_ids=ids, use_cache=False, logits_to_keep=1)
            rec.take()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    queue.put({"seconds": statistics.median(times[1:]), "peak_bytes": peak - base,
               "parameters": sum(p.numel() for p in model.parameters())})


def prefill(shape_name: str, layers: int, repeats: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_prefill, args=(shape_name, layers, repeats, queue))
    proc.start()
    out = queue.get()
    proc.join()
    print(f"  prefill {shape_name} with {layers} layers: {out['seconds']:.2f} s, "
          f"{out['peak_bytes'] / 2**30:.2f} GiB", flush=True)
    return out


def storage(shape: Shape) -> dict:
    from apmae.capture import tril_size

    heads = shape.layers * shape.heads
    return {"patterns_bytes": heads * tril_size(WINDOW),
            "embeddings_cpu_bytes": heads * EMBED_DIM * 2,
            "embeddings_paper_bytes": heads * PAPER_EMBED_DIM * 2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default="250,500,1000,2000", help="points per head (comma-separated)")
    ap.add_argument("--heads", default="2,4", help="heads per timing (comma-separated)")
    ap.add_argument("--workers", type=int, default=2, help="processes of the parallel run")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--layers", default="1,2", help="two layer counts per shape")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    points = [int(v) for v in args.points.split(",")]
    heads = [int(v) for v in args.heads.split(",")]
    lo, hi = (int(v) for v in args.layers.split(","))

    c = cluster_grid(points, heads, args.workers)
    print(f"clustering: numba compilation {c['compile_s']:.1f} s per process; one head of n points "
          f"takes {c['a']:.2e} * n^{c['b']:.2f} s; per head by heads per run: "
          + ", ".join(f"{h}: {s:.2f} s" for h, s in c["per_head_s_by_heads"].items())
          + f"; {c['parallel']['workers']} processes: start {c['parallel']['start_s']:.1f} s, then "
          f"{c['parallel']['marginal_s_per_head']:.2f} s per head of {c['parallel']['points']} points "
          f"(parallel efficiency {c['parallel']['efficiency']:.2f})")

    rows, out = [], {"cluster_compile_s": round(c["compile_s"], 1), "cluster_exponent_points": round(c["b"], 2),
                     "cluster_parallel_efficiency": round(c["parallel"]["efficiency"], 2)}
    for name in args.shapes.split(","):
        shape = Shape.named(name)
        a, b = prefill(name, lo, args.repeats), prefill(name, hi, args.repeats)
        layer_s = (b["seconds"] - a["seconds"]) / (hi - lo)
        layer_bytes = (b["peak_bytes"] - a["peak_bytes"]) / (hi - lo)
        full_s = a["seconds"] + (shape.layers - lo) * layer_s
        full_bytes = a["peak_bytes"] + (shape.layers - lo) * layer_bytes
        cluster_min = c["wall"](shape.layers * shape.heads, TARGET_POINTS) / 60
        rows.append((name, shape, layer_s, layer_bytes, full_s, full_bytes, cluster_min, storage(shape)))
        key = name.removeprefix("starcoder2-")
        out.update({f"prefill_layer_s_{key}": round(layer_s, 3), f"prefill_s_{key}": round(full_s, 2),
                    f"prefill_peak_gib_{key}": round(full_bytes / 2**30, 2),
                    f"cluster_{TARGET_POINTS}_min_{key}": round(cluster_min, 1)})

    print(f"\n| shape | heads | measured per layer (s / GiB) | 256-token prefill, whole model (s) | "
          f"peak memory (GiB) | cluster all heads x {TARGET_POINTS:,} points, {args.workers} processes "
          "(min) | patterns / inference (MB, uint8) | per 10k (GB) | embeddings / 10k (GB, cpu / paper) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, shape, layer_s, layer_bytes, full_s, full_bytes, cluster_min, st in rows:
        print(f"| {name} | {shape.layers} x {shape.heads} = {shape.layers * shape.heads:,} | "
              f"{layer_s:.3f} / {layer_bytes / 2**30:.3f} | {full_s:.1f} | {full_bytes / 2**30:.1f} | "
              f"{cluster_min:.0f} | {st['patterns_bytes'] / 1e6:.1f} | {st['patterns_bytes'] * 1e4 / 1e9:.0f} | "
              f"{st['embeddings_cpu_bytes'] * 1e4 / 1e9:.1f} / {st['embeddings_paper_bytes'] * 1e4 / 1e9:.1f} |")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
