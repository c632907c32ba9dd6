"""Cost at the paper's scale: clustering many heads, and a prefill of the StarCoder2 shapes.

    python -m bench.scale [--json] [--points 250,500,1000,2000] [--heads 1,2] [--workers 2]
                          [--shapes starcoder2-3b,starcoder2-7b,starcoder2-15b] [--layers 1,2]
                          [--parts cluster,prefill]

No weights can be downloaded here, and cost depends on a model's shape, not on its weights.
Times are CPU seconds (this process's and its workers'), which do not depend on what else runs
on a shared machine; wall seconds are printed beside them. On ``n`` idle cores a job that keeps
them all busy takes CPU / ``n``.

- **Clustering** (``apmae.atlas.cluster.cluster_head``, what ``apmae cluster`` runs per head) of
  synthetic embeddings (a mixture of Gaussians, 128 dimensions as the ``cpu`` preset's AP-MAE
  gives) for every (heads, points) of the grid, in this process after one warm-up (numba
  compiles UMAP's kernels once per process). A least-squares fit of ``CPU seconds per head = a *
  points**b`` says how it grows with points, the grid's heads that it grows linearly with heads;
  one run of ``apmae cluster``'s parallel path (``workers`` processes) measures what starting
  the workers costs, and writing the largest heads' clusters and memberships to a scratch
  SQLite database as ``apmae cluster`` does what storing costs. Together they extrapolate to
  720, 1,152 and 1,920 heads x 2,000 points.
- **Prefill**: one 256-token prompt through a model of each shape with ``layers`` of its layers
  (random bf16 weights, the checkpoints' 49,152-token vocabulary), every head's pattern
  captured as ``apmae extract`` does, each size in its own process (its own memory peak). The
  difference between two layer counts is the measured cost of a layer; with the rest it
  extrapolates CPU time and peak memory to the whole model.
- **Storage** per inference follows from the shape: every head's packed lower triangle at one
  byte per value, and the AP-MAE embeddings in float16.

Prints the measurements, the fits and a table per shape; ``--json``: one JSON object last.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import time

import numpy as np

from apmae.lm.shapes import SHAPES, STARCODER2_VOCAB, Shape

EMBED_DIM = 128  # the cpu preset's AP-MAE hidden size
PAPER_EMBED_DIM = 512
TARGET_POINTS = 2000
WINDOW = 256
THREADS = 2  # torch threads of the prefill, as apmae extract uses on this machine's 2 cores


def synthetic_embeddings(heads: int, points: int, seed: int = 0, clusters: int = 12) -> np.ndarray:
    """``[points, heads, EMBED_DIM]`` float16, each head a mixture of ``clusters`` Gaussians."""
    rng = np.random.default_rng(seed)
    out = np.empty((points, heads, EMBED_DIM), np.float16)
    for h in range(heads):
        centers = rng.normal(size=(clusters, EMBED_DIM))
        out[:, h] = centers[rng.integers(0, clusters, points)] + 0.5 * rng.normal(size=(points, EMBED_DIM))
    return out


class Clock:
    """Wall and CPU seconds of a block: this process's CPU, plus its reaped children's (the
    parallel path's workers). The machine is shared, so CPU seconds are the figure that does not
    depend on what else runs; on ``n`` idle cores a perfectly parallel job takes CPU / ``n``."""

    def __enter__(self) -> "Clock":
        self._wall, self._cpu = time.perf_counter(), self._cpu_now()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self._wall, self._cpu_now() - self._cpu

    @staticmethod
    def _cpu_now() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def cluster_grid(points: list[int], heads: list[int], workers: int) -> dict:
    """CPU and wall seconds per (heads, points) in this process, the fit over points, and what
    apmae cluster's parallel path adds (process start, imports, compilation per worker)."""
    from apmae.atlas.cluster_stage import cluster_heads
    from apmae.atlas.cluster import cluster_head
    from apmae.configs import ClusterConfig

    cfg = ClusterConfig(cluster_selection="leaf")  # what apmae demo clusters with
    with Clock() as warm:
        cluster_head(synthetic_embeddings(1, 200, seed=99)[:, 0], cfg)
    grid, largest = [], []
    for p in points:
        x = synthetic_embeddings(max(heads), p, seed=p)
        for h in heads:
            with Clock() as c:
                largest = [cluster_head(x[:, i], cfg) for i in range(h)]
            grid.append({"heads": h, "points": p, "cpu_s": c.cpu, "wall_s": c.wall,
                         "clusters_per_head": statistics.mean(hc.n_clusters for hc in largest)})
            print(f"  cluster {h} heads x {p} points: {c.cpu:.1f} CPU s ({c.wall:.1f} s wall)", flush=True)
    store_cpu = store_cost(largest, points[-1])
    print(f"  storing a head of {points[-1]} points in SQLite: {store_cpu:.2f} CPU s", flush=True)
    # log(CPU seconds per head) = log a + b log(points)
    b, loga = np.polyfit(np.log([g["points"] for g in grid]),
                         np.log([g["cpu_s"] / g["heads"] for g in grid]), 1)
    a = float(np.exp(loga))
    per_head = {h: statistics.mean(g["cpu_s"] / h for g in grid if g["heads"] == h) for h in heads}

    par_heads, par_points = 4 * workers, points[min(1, len(points) - 1)]
    x = synthetic_embeddings(par_heads, par_points, seed=7)[:, None]  # [n, 1 layer, heads, d]
    with Clock() as par:
        done = list(cluster_heads(x, [(0, h) for h in range(par_heads)],
                                  ClusterConfig(cluster_selection="leaf", workers=workers)))
    assert len(done) == par_heads
    start_cpu = par.cpu - par_heads * a * par_points ** b  # all workers' start, CPU seconds
    n_store = points[-1]
    print(f"  apmae cluster's path, {workers} processes, {par_heads} heads x {par_points} points: "
          f"{par.cpu:.1f} CPU s ({par.wall:.1f} s wall), of which start {start_cpu:.1f} CPU s", flush=True)

    def idle_wall(total_heads: int, n: int) -> float:
        """Seconds on ``workers`` idle cores for apmae cluster over ``total_heads`` x ``n``
        (storing each head, in the parent, scaled linearly from its measured size)."""
        return (start_cpu + total_heads * (a * n ** b + store_cpu * n / n_store)) / workers

    return {"compile_cpu_s": warm.cpu, "grid": grid, "a": a, "b": float(b), "per_head_cpu_s": per_head,
            "store_cpu_s": store_cpu, "store_points": n_store,
            "parallel": {"workers": workers, "heads": par_heads, "points": par_points,
                         "cpu_s": par.cpu, "wall_s": par.wall, "start_cpu_s": start_cpu},
            "idle_wall": idle_wall}


def store_cost(clusterings: list, points: int) -> float:
    """CPU seconds per head of writing a head's clusters and memberships to SQL as apmae
    cluster does (``store_head``), into a scratch SQLite database of ``points`` scenarios."""
    import tempfile

    from sqlalchemy import select

    from apmae.atlas.cluster_stage import store_head
    from apmae.db import models as m
    from apmae.db.session import get_or_create_run, migrated_engine, session_scope

    keys = [f"s{i}" for i in range(points)]
    tasks, correct = np.array(["identifiers"] * points), np.arange(points) % 2 == 0
    with tempfile.TemporaryDirectory() as tmp:
        engine = migrated_engine(f"sqlite:///{tmp}/scale.db")
        with session_scope(engine) as session:
            run_id = get_or_create_run(session, "scale", model="-", tokenizer="-", window=WINDOW,
                                       layers=1, heads=len(clusterings), settings={}).id
            session.execute(m.Scenario.__table__.insert(), [
                {"run_id": run_id, "key": k, "task": "identifiers", "path": "", "split": "train",
                 "target": "", "completion": "", "correct_exact": False,
                 "correct_first_token": bool(c)} for k, c in zip(keys, correct)])
            ids = dict(session.execute(select(m.Scenario.key, m.Scenario.id)
                                       .where(m.Scenario.run_id == run_id)).all())
        with Clock() as c:
            for h, hc in enumerate(clusterings):
                store_head(engine, run_id, 0, h, hc, keys, ids, tasks, correct)
        engine.dispose()
    return c.cpu / len(clusterings)


def _prefill(shape_name: str, layers: int, repeats: int, queue) -> None:
    """In a child process: build ``layers`` layers of the shape in bf16, time a captured
    256-token prefill; reports its CPU and wall seconds and the peak memory above the start."""
    import torch
    from transformers import AutoModelForCausalLM

    from apmae.capture import CAPTURE_ATTENTION, record_attention
    from apmae.lm.shapes import starcoder2_config

    torch.set_num_threads(THREADS)
    with open("/proc/self/statm") as f:
        base = int(f.read().split()[1]) * resource.getpagesize()
    shape = Shape.named(shape_name)
    config = starcoder2_config(Shape(**{**shape.__dict__, "layers": layers}), STARCODER2_VOCAB)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16,
                                             attn_implementation=CAPTURE_ATTENTION).eval()
    ids = torch.randint(1, 8192, (1, WINDOW), generator=torch.Generator().manual_seed(0))
    runs = []
    for _ in range(repeats + 1):  # the first is a warm-up
        with Clock() as c, torch.inference_mode(), record_attention(model, log_range=20.0) as rec:
            model(input_ids=ids, use_cache=False, logits_to_keep=1)
            rec.take()
        runs.append(c)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    queue.put({"cpu_s": statistics.median(c.cpu for c in runs[1:]),
               "wall_s": statistics.median(c.wall for c in runs[1:]), "peak_bytes": peak - base})


def prefill(shape_name: str, layers: int, repeats: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_prefill, args=(shape_name, layers, repeats, queue))
    proc.start()
    out = queue.get()
    proc.join()
    print(f"  prefill {shape_name} with {layers} layers: {out['cpu_s']:.2f} CPU s "
          f"({out['wall_s']:.2f} s wall), peak {out['peak_bytes'] / 2**30:.2f} GiB", flush=True)
    return out


def storage(shape: Shape) -> dict:
    from apmae.store.format import tril_size

    heads = shape.layers * shape.heads
    return {"patterns_bytes": heads * tril_size(WINDOW),
            "embeddings_cpu_bytes": heads * EMBED_DIM * 2,
            "embeddings_paper_bytes": heads * PAPER_EMBED_DIM * 2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default="250,500,1000,2000", help="points per head (comma-separated)")
    ap.add_argument("--heads", default="1,2", help="heads per timing (comma-separated)")
    ap.add_argument("--workers", type=int, default=2, help="processes of the parallel run")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--layers", default="1,2", help="two layer counts per shape")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--parts", default="cluster,prefill", help="which parts to run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    lo, hi = (int(v) for v in args.layers.split(","))
    out: dict = {"load_average_1min": os.getloadavg()[0]}
    c = None
    if "cluster" in parts:
        c = cluster_grid([int(v) for v in args.points.split(",")],
                         [int(v) for v in args.heads.split(",")], args.workers)
        print(f"clustering: first call {c['compile_cpu_s']:.1f} CPU s (numba compiles); one head of "
              f"n points takes {c['a']:.2e} * n^{c['b']:.2f} CPU s; per head by heads per run: "
              + ", ".join(f"{h}: {s:.2f}" for h, s in c["per_head_cpu_s"].items())
              + f" CPU s; storing a head of {c['store_points']} points: {c['store_cpu_s']:.2f} CPU s; "
              f"the parallel path's start: {c['parallel']['start_cpu_s']:.1f} CPU s")
        out.update({"cluster_exponent_points": round(c["b"], 2),
                    "cluster_head_2000_cpu_s": round(c["a"] * TARGET_POINTS ** c["b"], 2),
                    "cluster_store_head_cpu_s": round(c["store_cpu_s"], 2),
                    "cluster_start_cpu_s": round(c["parallel"]["start_cpu_s"], 1)})
    rows = []
    for name in args.shapes.split(",") if "prefill" in parts else []:
        shape = Shape.named(name)
        a, b = prefill(name, lo, args.repeats), prefill(name, hi, args.repeats)
        layer_cpu = (b["cpu_s"] - a["cpu_s"]) / (hi - lo)
        layer_bytes = (b["peak_bytes"] - a["peak_bytes"]) / (hi - lo)
        full_cpu = a["cpu_s"] + (shape.layers - lo) * layer_cpu
        full_bytes = a["peak_bytes"] + (shape.layers - lo) * layer_bytes
        rows.append((name, shape, layer_cpu, layer_bytes, full_cpu, full_bytes, storage(shape)))
        key = name.removeprefix("starcoder2-")
        out.update({f"prefill_layer_cpu_s_{key}": round(layer_cpu, 3),
                    f"prefill_cpu_s_{key}": round(full_cpu, 1),
                    f"prefill_peak_gib_{key}": round(full_bytes / 2**30, 2)})
        if c is not None:
            out[f"cluster_{TARGET_POINTS}_idle_min_{key}"] = round(
                c["idle_wall"](shape.layers * shape.heads, TARGET_POINTS) / 60, 1)

    if rows:
        print(f"\n| shape | heads | per layer: CPU s / GiB (measured) | 256-token prefill: CPU s "
              f"(>= wall on {THREADS} idle cores: /{THREADS}) | peak memory (GiB) | cluster all heads x "
              f"{TARGET_POINTS:,} points, {args.workers} idle cores (min) | patterns / inference "
              "(MB, uint8) | per 10k (GB) | embeddings / 10k (GB, cpu / paper) |")
        print("|---|---|---|---|---|---|---|---|---|")
    for name, shape, layer_cpu, layer_bytes, full_cpu, full_bytes, st in rows:
        cluster = (f"{c['idle_wall'](shape.layers * shape.heads, TARGET_POINTS) / 60:.0f}"
                   if c is not None else "")
        print(f"| {name} | {shape.layers} x {shape.heads} = {shape.layers * shape.heads:,} | "
              f"{layer_cpu:.2f} / {layer_bytes / 2**30:.3f} | {full_cpu:.0f} | {full_bytes / 2**30:.1f} | "
              f"{cluster} | {st['patterns_bytes'] / 1e6:.1f} | {st['patterns_bytes'] * 1e4 / 1e9:.0f} | "
              f"{st['embeddings_cpu_bytes'] * 1e4 / 1e9:.1f} / "
              f"{st['embeddings_paper_bytes'] * 1e4 / 1e9:.1f} |")
    out["load_average_1min_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
