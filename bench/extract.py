"""Extraction throughput and peak memory on the shipped model, three paths side by side.

    python -m bench.extract [--n 1000 | --quick] [--batch-size 8] [--source SRC] [--json]

- ``ours``: ``apmae.extract.extract`` with every head captured and stored (the lower triangle
  of log-probabilities in the default 8-bit coding, crash-safe shards), greedy completion
  included;
- ``reference``: the reference's capture, ``output_attentions=True`` then ``torch.cat`` of every
  layer in float32, written as float32 ``[layers*heads, T, T]`` arrays (one ``.npy`` per scenario),
  with the same greedy completion, the model on eager attention (which ``output_attentions``
  needs);
- ``no_capture``: the same extraction keeping no patterns (``--keep none``): apmae's capturing
  attention with no recorder active, i.e. SDPA plus its dispatch;
- ``plain_sdpa``: the same with the model switched to SDPA attention, the fastest plain forward
  pass transformers offers (no attention weights exist to capture).

``capture_vs_output_attentions`` is ours over reference in scenarios/s, ``capture_vs_plain_forward``
ours over plain_sdpa. Both are **paired**: one process runs ours, reference and plain_sdpa on
the same chunk of :data:`CHUNK` batches one after the other (switching the model's attention
implementation, the order rotating from chunk to chunk), and each ratio is the median over
chunks of the two paths' seconds on that chunk. A chunk, not a batch: extraction writes a
batch while the next one computes, which a single batch would not show. The paths of one chunk
run about a second apart, so a machine that slows down or speeds up moves both sides of a ratio,
where paths timed one after another in separate processes would each see a different machine.
Before each timed call an untimed ``os.sync()`` flushes the previous path's writes, so no path's
fsync waits on another's dirty pages.

The full mode then runs every path alone in its own process over all scenarios, for peak RSS,
disk and the absolute rates (``*_alone_*``); ``--quick`` skips that. Scenarios are mined once
from the JDK's held-out files. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PATHS = ("ours", "reference", "no_capture", "plain_sdpa")
QUICK_N = 96  # --quick: ~7 per task, enough for medians of whole batches
CHUNK = 3  # batches per timed call in the paired timing


def _reference_batch(out: Path, batch: list, target) -> None:
    """The reference's extraction of one batch (the model on eager attention)."""
    from apmae.configs import ExtractConfig
    from apmae.extract import run_batch

    ids = torch.tensor([s.input_ids for s in batch])
    with torch.inference_mode():
        att = target.model(input_ids=ids, output_attentions=True).attentions
        full = torch.cat([a.float() for a in att], dim=1)  # [B, layers*heads, T, T]
    for s, a in zip(batch, full):
        np.save(out / f"{s.id}.npy", a.numpy())
    run_batch(target, batch, ExtractConfig(), capture=None)  # the same completion work


def _reference(run_dir: Path, scenarios: Path, target, batch_size: int) -> int:
    from apmae.extract import _batches
    from apmae.scenarios import read_scenarios

    out = run_dir / "reference"
    out.mkdir(parents=True)
    n = 0
    for batch in _batches(read_scenarios(scenarios), batch_size):
        _reference_batch(out, batch, target)
        n += len(batch)
    return n


def paired(scenarios: Path, batch_size: int) -> None:
    """Time ours, reference and plain_sdpa chunk by chunk in this process (see the module
    docstring); print ``{"paths": {path: [seconds per chunk]}, "n": [chunk sizes]}``."""
    from tqdm import tqdm

    from apmae.capture import CAPTURE_ATTENTION
    from apmae.configs import ExtractConfig
    from apmae.extract import _batches, _extract_batches, store_meta
    from apmae.lm.load import load_target
    from apmae.run import Run
    from apmae.scenarios import read_scenarios

    torch.manual_seed(0)
    target = load_target(None)
    batches = list(_batches(read_scenarios(scenarios), batch_size))
    chunks = [batches[i:i + CHUNK] for i in range(0, len(batches), CHUNK)]
    window = len(batches[0][0].input_ids)
    implementation = {"ours": CAPTURE_ATTENTION, "reference": "eager", "plain_sdpa": "sdpa"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        ours_cfg, plain_cfg = ExtractConfig(batch_size, "all"), ExtractConfig(batch_size, "none")
        ours_run, plain_run = Run("ours", tmp_dir / "ours"), Run("plain", tmp_dir / "plain")
        store = ours_run.pattern_store(store_meta(ours_cfg, ours_run, target, window))
        (tmp_dir / "reference").mkdir()
        quiet = tqdm(disable=True)

        def one(path: str, chunk: list[list]) -> float:
            target.model.set_attn_implementation(implementation[path])
            t0 = time.perf_counter()
            if path == "ours":
                _extract_batches(ours_run, store, chunk, {s.id for b in chunk for s in b}, target,
                                 ours_cfg, quiet, store.meta)
            elif path == "reference":
                for batch in chunk:
                    _reference_batch(tmp_dir / "reference", batch, target)
            else:
                _extract_batches(plain_run, None, chunk, set(), target, plain_cfg, quiet, store.meta)
            return time.perf_counter() - t0

        for path in implementation:  # warm-up, not timed: the first batch again under its own ids
            one(path, [[dataclasses.replace(s, id=f"warm-{s.id}") for s in batches[0]]])
        seconds = {path: [] for path in implementation}
        order = list(implementation)
        for k, chunk in enumerate(chunks):
            for path in order[k % 3:] + order[:k % 3]:
                os.sync()  # untimed (see the module docstring)
                seconds[path].append(one(path, chunk))
    print(json.dumps({"paths": seconds, "n": [sum(len(b) for b in c) for c in chunks]}))


def child(path: str, scenarios: Path, batch_size: int) -> None:
    """Run one path in this process; print ``{"path", "n", "seconds", "peak_rss_mb", "bytes"}``."""
    from apmae.configs import ExtractConfig
    from apmae.extract import extract
    from apmae.lm.load import load_target
    from apmae.run import Run

    torch.manual_seed(0)
    target = load_target(None)
    if path in ("plain_sdpa", "reference"):
        target.model.set_attn_implementation("sdpa" if path == "plain_sdpa" else "eager")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        # warm-up on a few scenarios, not timed
        lines = scenarios.read_text().splitlines(keepends=True)
        warm = tmp_dir / "warm.jsonl"
        warm.write_text("".join(lines[:batch_size]))
        extract(Run("warm", tmp_dir / "warm"), warm, target, ExtractConfig(batch_size, "none"))
        t0 = time.perf_counter()
        if path == "reference":
            n = _reference(tmp_dir, scenarios, target, batch_size)
        else:
            keep = "all" if path == "ours" else "none"  # no_capture, plain_sdpa
            n = extract(Run("bench", tmp_dir / "run"), scenarios, target,
                        ExtractConfig(batch_size=batch_size, keep=keep))
        seconds = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in tmp_dir.rglob("*") if f.is_file())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"path": path, "n": n, "seconds": round(seconds, 2),
                      "peak_rss_mb": round(peak), "bytes": size}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="scenarios (spread over the 14 tasks)")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_N} scenarios")
    ap.add_argument("--json", action="store_true", help="(always on) one JSON object as the last line")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--source", help="corpus (default: the JDK's src.zip)")
    ap.add_argument("--paths", default=",".join(PATHS), help="the paths run alone (full mode)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--paired", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--scenarios", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.scenarios), args.batch_size)
        return
    if args.paired:
        paired(Path(args.scenarios), args.batch_size)
        return

    from transformers import AutoTokenizer

    if args.quick:
        args.n = QUICK_N

    from apmae.corpus import default_source
    from apmae.paths import DEFAULT_MODEL_DIR
    from apmae.scenarios import TASKS, mine, write_scenarios

    with tempfile.TemporaryDirectory() as tmp:
        scenarios = Path(tmp) / "scenarios.jsonl"
        per_task = -(-args.n // len(TASKS))
        tok = AutoTokenizer.from_pretrained(DEFAULT_MODEL_DIR)
        rows = list(mine(args.source or default_source(), tok, per_task=per_task, seed=7))[: args.n]
        write_scenarios(rows, scenarios)
        flags = ["--scenarios", str(scenarios), "--batch-size", str(args.batch_size)]
        timed = _last_json([sys.executable, "-m", "bench.extract", "--paired", *flags])
        results = {} if args.quick else {
            path: _last_json([sys.executable, "-m", "bench.extract", "--child", path, *flags])
            for path in args.paths.split(",")}
    n = sum(timed["n"])
    summary: dict = {}
    print(f"paired, {len(timed['n'])} chunks of {CHUNK} batches of {args.batch_size}: "
          "seconds per chunk (median) and scenarios/s")
    for path, secs in timed["paths"].items():
        summary[f"{path}_scenarios_per_s"] = round(n / sum(secs), 2)
        print(f"  {path:12s} {statistics.median(secs):7.3f} s {n / sum(secs):7.1f}")
    ours = timed["paths"]["ours"]
    for key, other in (("capture_vs_output_attentions", "reference"), ("capture_vs_plain_forward", "plain_sdpa")):
        summary[key] = round(statistics.median(o / s for o, s in zip(timed["paths"][other], ours)), 2)
        print(f"  {key}: {summary[key]} (median of per-chunk ratios)")
    if results:
        print(f"alone: {'path':12s} {'scenarios':>9s} {'seconds':>8s} {'scen/s':>7s} {'peak MB':>8s} {'disk MB':>8s}")
        for path, r in results.items():
            print(f"       {path:12s} {r['n']:9d} {r['seconds']:8.1f} {r['n'] / r['seconds']:7.1f} "
                  f"{r['peak_rss_mb']:8d} {r['bytes'] / 1e6:8.1f}")
            summary[f"{path}_alone_scenarios_per_s"] = round(r["n"] / r["seconds"], 2)
            summary[f"{path}_alone_peak_rss_mb"] = r["peak_rss_mb"]
            summary[f"{path}_alone_disk_mb"] = round(r["bytes"] / 1e6, 1)
    print(json.dumps(summary))


def _last_json(cmd: list[str]) -> dict:
    """Run ``cmd``; its last stdout line, parsed."""
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
