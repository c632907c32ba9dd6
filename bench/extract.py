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
ours over plain_sdpa.

Each path runs in its own process so peak RSS is its own. Scenarios are mined once from the
JDK's held-out files. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PATHS = ("ours", "reference", "no_capture", "plain_sdpa")
QUICK_N = 96  # --quick: ~7 per task, enough for medians of whole batches


def _reference(run_dir: Path, scenarios: Path, target, batch_size: int) -> int:
    from apmae.extract import ExtractConfig, _batches, run_batch
    from apmae.scenarios import read_scenarios

    out = run_dir / "reference"
    out.mkdir(parents=True)
    n = 0
    for batch in _batches(read_scenarios(scenarios), batch_size):
        ids = torch.tensor([s.input_ids for s in batch])
        with torch.inference_mode():
            att = target.model(input_ids=ids, output_attentions=True).attentions
            full = torch.cat([a.float() for a in att], dim=1)  # [B, layers*heads, T, T]
        for s, a in zip(batch, full):
            np.save(out / f"{s.id}.npy", a.numpy())
        run_batch(target, batch, ExtractConfig(), capture=None)  # the same completion work
        n += len(batch)
    return n


def child(path: str, scenarios: Path, batch_size: int) -> None:
    """Run one path in this process; print ``{"path", "n", "seconds", "peak_rss_mb", "bytes"}``."""
    from apmae.extract import ExtractConfig, extract
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
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--scenarios", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.scenarios), args.batch_size)
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
        results = {}
        for path in args.paths.split(","):
            out = subprocess.run([sys.executable, "-m", "bench.extract", "--child", path,
                                  "--scenarios", str(scenarios), "--batch-size",
                                  str(args.batch_size)], capture_output=True, text=True, check=True)
            results[path] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{'path':12s} {'scenarios':>9s} {'seconds':>8s} {'scen/s':>7s} {'peak MB':>8s} {'disk MB':>8s}")
    for path, r in results.items():
        print(f"{path:12s} {r['n']:9d} {r['seconds']:8.1f} {r['n'] / r['seconds']:7.1f} "
              f"{r['peak_rss_mb']:8d} {r['bytes'] / 1e6:8.1f}")
    summary = {f"{p}_scenarios_per_s": round(r["n"] / r["seconds"], 2) for p, r in results.items()}
    summary.update({f"{p}_peak_rss_mb": r["peak_rss_mb"] for p, r in results.items()})
    for key, other in (("capture_vs_output_attentions", "reference"), ("ours_vs_no_capture", "no_capture"),
                       ("capture_vs_plain_forward", "plain_sdpa")):
        if "ours" in results and other in results:
            summary[key] = round(results[other]["seconds"] / results["ours"]["seconds"], 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
