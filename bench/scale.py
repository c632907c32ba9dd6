"""Cost at the paper's scale: clustering many heads, a prefill of the StarCoder2 shapes, and
the whole pipeline at one shape.

    python -m bench.scale [--json] [--points 250,500,1000,2000] [--heads 1,2] [--workers 2]
                          [--shapes starcoder2-3b,starcoder2-7b,starcoder2-15b] [--layers 1,2]
                          [--parts cluster,prefill,pipeline] [--shape starcoder2-3b]
                          [--per-task 5] [--mae-steps 150] [--requests 8] [--home DIR]

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
- **Pipeline** (``--parts pipeline``): every stage of a run on a random-weight model of
  ``--shape`` (``apmae lm init``), typed as a user would, each in its own process in a scratch
  ``APMAE_HOME``: mine both splits of the JDK source with the model's tokenizer, extract in
  bf16, a short AP-MAE training (cpu preset), encode, cluster every head, the predictor, then
  ``apmae serve`` and live pastes (``POST /api/predict`` with held-out code, one warm-up, then
  ``--requests`` timed). Per stage: CPU seconds (the process's and the workers it waited for),
  peak RSS of its largest process, the load average, and wall seconds less any time the whole
  job was stopped (``kill -STOP``). Then a short ``apmae sweep`` (one scenario per task, a few
  candidate heads: a random-weight model is never right, so it has no SHAP to choose them by),
  and the cost that sizes a full one: one ablated pass, measured with the sweep's own scorer
  on a few heads, multiplied out to every head.
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
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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


# --- the whole pipeline at a shape, stage by stage (--parts pipeline) ---------------------------

PAUSE_GAP_S = 5.0  # a sampler tick this late means the job was stopped (kill -STOP), not busy


class StageMeter(threading.Thread):
    """Samples the load average once a second while a stage runs, and its wall seconds without
    the periods the whole job was stopped (``kill -STOP -- -PGID`` stops this thread too, so a
    tick that comes far too late marks a pause)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self._done, self.loads = threading.Event(), []
        self.active = self.paused = 0.0
        self._last = time.monotonic()

    def _tick(self) -> None:
        now = time.monotonic()
        dt, self._last = now - self._last, now
        if dt > PAUSE_GAP_S:
            self.paused += dt
        else:
            self.active += dt
        self.loads.append(os.getloadavg()[0])

    def run(self) -> None:
        while not self._done.wait(1.0):
            self._tick()

    def __enter__(self) -> "StageMeter":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self.join()
        self._tick()


def _reap(proc: subprocess.Popen) -> resource.struct_rusage:
    """Wait for ``proc`` and return its own rusage, with the descendants it waited for (the
    clustering workers), which ``RUSAGE_CHILDREN`` would mix with other stages'."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage


def _row(name: str, meter: StageMeter, usage: resource.struct_rusage, **extra) -> dict:
    row = {"stage": name, "wall_s": round(meter.active, 1), "paused_s": round(meter.paused, 1),
           "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
           "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),  # KiB on Linux
           "load_avg": round(statistics.mean(meter.loads), 1), **extra}
    print(f"  {name}: {row['cpu_s']:.0f} CPU s, {row['wall_s']:.0f} s wall (load {row['load_avg']}), "
          f"peak RSS {row['peak_rss_gib']:.2f} GiB", flush=True)
    return row


def _stage(name: str, args: list[str], env: dict, logs: Path, apmae: bool = True) -> dict:
    """``python -m apmae ARGS`` as a user runs it (``python ARGS`` without ``apmae``), in its own
    process: its wall, CPU and peak RSS."""
    log, argv = logs / f"{name}.log", [sys.executable, *(["-m", "apmae"] if apmae else []), *args]
    print(f"{name}: {' '.join(argv[1:])}", flush=True)
    with open(log, "w") as out, StageMeter() as meter:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        usage = _reap(proc)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[1:])} failed:\n{log.read_text()[-3000:]}")
    return _row(name, meter, usage)


#: ``apmae sweep`` at its smallest that still runs every part: single-head effects of a few
#: candidates, one chosen and a few random heads per task, a two-order collapse curve.
SHORT_SWEEP = ["--train-per-task", "1", "--heldout-per-task", "1", "--candidates", "8", "--sizes", "1",
               "--random-sets", "3", "--greedy-candidates", "2", "--scenarios", "6", "--repeats", "1"]


def ablation_probe(run_name: str, probes: int) -> None:
    """What ``apmae sweep``'s single-head ablations cost at this shape, in this process: the
    unablated pass over one train scenario per task (the fewest ``--train-per-task 1`` takes),
    then one head ablated in each of ``probes`` layers spread from first to last (an ablation
    in layer ``l`` recomputes layers ``l`` on, the rest replayed), the sweep's own scorer.
    Prints a JSON line: CPU seconds of the unablated pass and per ablation, and heads."""
    import torch

    from apmae.atlas.intervention import sample_per_task
    from apmae.atlas.sweep import FirstTokenScorer
    from apmae.lm.load import load_target
    from apmae.run import Run

    run = Run(run_name)
    meta = run.meta()
    target = load_target(meta.get("model"), dtype=meta.get("model_dtype"))
    train = sample_per_task([s for s in run.scenarios() if s.task != "noise" and s.split == "train"], 1, 0)
    scorer = FirstTokenScorer(target, 32)  # apmae sweep's default batch: every scenario in one pass
    with torch.inference_mode():
        with Clock() as base:
            scorer(train, [])
        costs = []
        for layer in np.linspace(0, meta["layers"] - 1, probes).round().astype(int):
            with Clock() as c:
                scorer(train, [(int(layer), 0)])
            costs.append(c.cpu)
    print(json.dumps({"scenarios": len(train), "unablated_cpu_s": base.cpu,
                      "ablation_cpu_s": statistics.mean(costs), "heads": meta["layers"] * meta["heads"]}))


def paste_profile(run_name: str, pastes: int) -> None:
    """Where a live paste's CPU goes, in this process: ``LiveAtlas.analyze`` (what ``POST
    /api/predict`` runs) on held-out code after one warm-up, its parts' CPU seconds summed by
    wrapping them: the greedy decoding after the prefill, AP-MAE's encoding of every head's
    pattern, the cluster assignment, the predictor's features; the rest is the captured prefill
    and the prompt's tokenisation. Prints a JSON line: CPU seconds per paste, in all and by part."""
    import apmae.live as live
    from apmae.db.session import migrated_engine
    from apmae.run import Run

    from .serving import held_out_bodies

    parts = ("greedy_continue", "embed", "assign", "live_features")
    spent = dict.fromkeys(parts, 0.0)

    def timed(name: str, fn):
        def wrapper(*args, **kwargs):
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - t
        return wrapper

    for name in parts:
        setattr(live, name, timed(name, getattr(live, name)))
    run = Run(run_name)
    atlas = live.LiveAtlas.load(run, migrated_engine())
    bodies = [b for _, b in sorted(held_out_bodies(run), key=lambda tb: tb[0])][:pastes + 1]
    for i, body in enumerate(bodies):
        if i == 1:  # after the warm-up
            spent.update(dict.fromkeys(parts, 0.0))
            t0 = time.process_time()
        atlas.analyze(body["code"], live.locate(body["code"], atlas.target.tokenizer,
                                                start=body["start"], end=body["end"]))
    n = len(bodies) - 1
    total = time.process_time() - t0
    print(json.dumps({"pastes": n, "cpu_s_per_paste": total / n, "prefill_and_rest_cpu_s": (total - sum(spent.values())) / n,
                      **{f"{k}_cpu_s": v / n for k, v in spent.items()}}))


def _paste(env: dict, run: str, logs: Path, warmup: int, requests: int) -> tuple[dict, dict]:
    """``apmae serve`` in its own process, then ``warmup`` + ``requests`` live pastes
    (``POST /api/predict`` with held-out scenarios' code), one at a time. Returns the server's
    row (peak RSS of the whole serving process) and the request times."""
    import httpx

    from apmae.run import Run

    from .serving import free_port, held_out_bodies, wait_until_ready

    os.environ["APMAE_HOME"] = env["APMAE_HOME"]  # Run() below reads the scratch home
    bodies = [b for _, b in sorted(held_out_bodies(Run(run)), key=lambda tb: tb[0])]
    if not bodies:
        raise SystemExit(f"run {run} has no held-out scenarios to paste")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"serve: apmae serve --run {run} --port {port}; {warmup} + {requests} pastes", flush=True)
    times: list[float] = []
    with open(logs / "serve.log", "w") as out, StageMeter() as meter:
        proc = subprocess.Popen([sys.executable, "-m", "apmae", "serve", "--run", run, "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            t0 = meter.active
            wait_until_ready(url, lambda: proc.poll() is None, timeout_s=1800)
            ready_s = meter.active - t0
            with httpx.Client(base_url=url, timeout=1800) as client:
                i = 0
                while len(times) < requests:
                    body, paused = bodies[i % len(bodies)], meter.paused
                    t = time.perf_counter()
                    response = client.post("/api/predict", json=body)
                    elapsed = time.perf_counter() - t
                    response.raise_for_status()
                    heads = response.json()["heads"]
                    if not all(h["cluster"] is not None for h in heads):
                        raise SystemExit("a live paste came back without every head's cluster")
                    if i >= warmup and meter.paused == paused:  # a paused request is not timed
                        times.append(elapsed)
                    i += 1
        finally:
            proc.send_signal(signal.SIGINT)
            usage = _reap(proc)
    ms = np.array(times)
    row = _row("serve", meter, usage, ready_s=round(ready_s, 1), heads=len(heads),
               paste_p50_s=round(float(np.percentile(ms, 50)), 2),
               paste_p95_s=round(float(np.percentile(ms, 95)), 2), pastes=len(ms))
    return row, {"times_s": [round(float(t), 2) for t in ms]}


def pipeline(shape: Shape, per_task: int, heldout_per_task: int, mae_steps: int, requests: int,
             home: Path) -> dict:
    """Every stage of a run on a random-weight model of ``shape``, as a user types them, in a
    scratch ``APMAE_HOME``; per stage its wall (unpaused), CPU and peak RSS and the load."""
    from apmae.corpus import find_jdk_src_zip

    source = find_jdk_src_zip()
    if source is None:
        raise SystemExit("no JDK src.zip to mine (apt-get install openjdk-17-source)")
    env = {**os.environ, "APMAE_HOME": str(home), "APMAE_DATABASE_URL": f"sqlite:///{home}/apmae.db",
           "TQDM_MININTERVAL": "5"}
    logs, model, run = home / "logs", home / "model", "scale"
    logs.mkdir(parents=True, exist_ok=True)
    sizes = ["--shape", shape.name] if shape.name in SHAPES else \
        [a for f in ("layers", "heads", "kv_heads", "hidden", "intermediate")
         for a in (f"--{f.replace('_', '-')}", str(getattr(shape, f)))]
    train, test = home / "train.jsonl", home / "test.jsonl"
    rows = [_stage("lm_init", ["lm", "init", *sizes, "--out", str(model), "--dtype", "bfloat16"], env, logs),
            _stage("mine_train", ["mine", str(source), "--out", str(train), "--per-task", str(per_task),
                                  "--split", "train", "--model", str(model)], env, logs),
            _stage("mine_test", ["mine", str(source), "--out", str(test), "--per-task",
                                 str(heldout_per_task), "--split", "test", "--model", str(model)], env, logs)]
    both = home / "scenarios.jsonl"
    both.write_text(train.read_text() + test.read_text())
    rows += [_stage("extract", ["extract", "--scenarios", str(both), "--model", str(model), "--run", run,
                                "--dtype", "bfloat16"], env, logs),
             _stage("mae_train", ["mae", "train", "--run", run, "--preset", "cpu", "--steps", str(mae_steps),
                                  "--warmup", str(max(1, mae_steps // 10)),
                                  "--checkpoint-every", str(mae_steps)], env, logs),
             _stage("encode", ["encode", "--run", run], env, logs),
             _stage("cluster", ["cluster", "--run", run, "--cluster-selection", "leaf"], env, logs),
             _stage("predictor", ["predictor", "train", "--run", run], env, logs)]
    serve, paste = _paste(env, run, logs, warmup=1, requests=requests)
    rows.append(serve)
    profile = _stage("paste_profile", ["-c", f"from bench.scale import paste_profile; paste_profile({run!r}, 3)"],
                     env, logs, apmae=False)
    rows.append({**profile, **json.loads((logs / "paste_profile.log").read_text().strip().splitlines()[-1])})
    rows.append(_stage("sweep", ["sweep", "--run", run, *SHORT_SWEEP], env, logs))
    # what sizes a longer sweep: one ablated pass (the sweep's dominant cost), times every head
    probe = _stage("sweep_probe", ["-c", f"from bench.scale import ablation_probe; ablation_probe({run!r}, 3)"],
                   env, logs, apmae=False)
    cost = json.loads((logs / "sweep_probe.log").read_text().strip().splitlines()[-1])
    probe.update(cost, single_head_ablations_cpu_s=round(cost["unablated_cpu_s"]
                                                          + cost["heads"] * cost["ablation_cpu_s"]))
    rows.append(probe)
    return {"shape": shape.name, "heads": shape.layers * shape.heads, "per_task": per_task,
            "heldout_per_task": heldout_per_task, "scenarios": sum(1 for _ in both.open()),
            "mae_steps": mae_steps, "stages": rows, "paste": paste}


def parse_shape(text: str) -> Shape:
    """A named shape, or explicit ``layers,heads,kv_heads,hidden,intermediate``."""
    if text in SHAPES:
        return Shape.named(text)
    try:
        layers, heads, kv, hidden, inter = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape: one of {', '.join(SHAPES)} or "
                                         "layers,heads,kv_heads,hidden,intermediate") from None
    return Shape(layers, heads, kv, hidden, inter)


def print_pipeline(p: dict) -> None:
    print(f"\npipeline at {p['shape']} ({p['heads']} heads), {p['scenarios']} scenarios "
          f"({p['per_task']} train / {p['heldout_per_task']} held out per task), AP-MAE {p['mae_steps']} steps")
    print("| stage | CPU s | wall s (unpaused) | peak RSS (GiB) | load average | note |")
    print("|---|---|---|---|---|---|")
    for r in p["stages"]:
        note = ""
        if r["stage"] == "serve":
            note = (f"ready after {r['ready_s']:.0f} s; {r['pastes']} pastes: p50 {r['paste_p50_s']:.1f} s, "
                    f"p95 {r['paste_p95_s']:.1f} s")
        elif r["stage"] == "paste_profile":
            note = (f"CPU s per paste {r['cpu_s_per_paste']:.1f}: prefill and the rest "
                    f"{r['prefill_and_rest_cpu_s']:.1f}, decoding {r['greedy_continue_cpu_s']:.1f}, AP-MAE "
                    f"{r['embed_cpu_s']:.1f}, assignment {r['assign_cpu_s']:.2f}, predictor "
                    f"{r['live_features_cpu_s']:.2f}")
        elif r["stage"] == "sweep_probe":
            note = (f"unablated pass over {r['scenarios']} scenarios {r['unablated_cpu_s']:.0f} CPU s, one "
                    f"ablation {r['ablation_cpu_s']:.1f}: all {r['heads']} single-head ablations "
                    f"{r['single_head_ablations_cpu_s']:,} CPU s")
        print(f"| {r['stage']} | {r['cpu_s']:.0f} | {r['wall_s']:.0f} | {r['peak_rss_gib']:.2f} | "
              f"{r['load_avg']} | {note} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default="250,500,1000,2000", help="points per head (comma-separated)")
    ap.add_argument("--heads", default="1,2", help="heads per timing (comma-separated)")
    ap.add_argument("--workers", type=int, default=2, help="processes of the parallel run")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--layers", default="1,2", help="two layer counts per shape")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--parts", default="cluster,prefill,pipeline", help="which parts to run")
    ap.add_argument("--shape", type=parse_shape, default=Shape.named("starcoder2-3b"),
                    help="pipeline: a named shape or layers,heads,kv_heads,hidden,intermediate")
    ap.add_argument("--per-task", type=int, default=5, help="pipeline: train scenarios per task")
    ap.add_argument("--heldout-per-task", type=int, help="pipeline: held-out per task (default: --per-task)")
    ap.add_argument("--mae-steps", type=int, default=150, help="pipeline: AP-MAE training steps")
    ap.add_argument("--requests", type=int, default=8, help="pipeline: timed live pastes after one warm-up")
    ap.add_argument("--home", help="pipeline: APMAE_HOME to build in and keep (default: a temporary one)")
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
    if "pipeline" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            p = pipeline(args.shape, args.per_task, args.heldout_per_task or args.per_task, args.mae_steps,
                         args.requests, Path(args.home or tmp))
        print_pipeline(p)
        key = args.shape.name.removeprefix("starcoder2-")
        serve = next(r for r in p["stages"] if r["stage"] == "serve")
        out.update({f"pipeline_{key}": p, f"paste_p50_s_{key}": serve["paste_p50_s"],
                    f"paste_p95_s_{key}": serve["paste_p95_s"], f"serve_peak_gib_{key}": serve["peak_rss_gib"]})
    out["load_average_1min_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
