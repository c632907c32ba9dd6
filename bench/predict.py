"""Warm ``POST /api/predict`` latency on a built run, over HTTP on loopback.

    python -m bench.predict [--run default] [--requests 60] [--warmup 5] [--json]

Starts the explorer (uvicorn) in this process on a free loopback port, then sends requests one
at a time, each pasting the code of one of the run's held-out scenarios (the window's prefix,
target and suffix text) and asking to complete the target by its offsets: a researcher's /try
click. The first ``--warmup`` requests are not counted. Reports p50/p95/p99 and the mean, and
(``--json``) one JSON object as the last line. Run it with nothing else busy on the machine.
"""

from __future__ import annotations

import argparse
import json
import time

import httpx
import numpy as np

from apmae.run import Run

from .serving import held_out_bodies, served


def _requests(run: Run, n: int) -> list[dict]:
    """``n`` predict bodies from held-out scenarios, the tasks taking turns."""
    by_task: dict[str, list[dict]] = {}
    for task, body in sorted(held_out_bodies(run), key=lambda tb: tb[0]):
        by_task.setdefault(task, []).append(body)
    order = [b for group in zip(*by_task.values(), strict=False) for b in group]
    if not order:
        raise SystemExit(f"run {run.name} has no held-out scenarios")
    return (order * (n // len(order) + 1))[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="default")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    run = Run(args.run)
    with served(args.run) as url, httpx.Client(base_url=url, timeout=120) as client:
        bodies = _requests(run, args.warmup + args.requests)
        times, correct = [], 0
        for i, body in enumerate(bodies):
            t0 = time.perf_counter()
            response = client.post("/api/predict", json=body)
            elapsed = time.perf_counter() - t0
            response.raise_for_status()
            if i >= args.warmup:
                times.append(elapsed * 1000)
                correct += bool(response.json()["correct_first_token"])
    ms = np.array(times)
    result = {"run": args.run, "requests": len(ms), "predict_p50_ms": round(float(np.percentile(ms, 50)), 1),
              "predict_p95_ms": round(float(np.percentile(ms, 95)), 1),
              "predict_p99_ms": round(float(np.percentile(ms, 99)), 1),
              "predict_mean_ms": round(float(ms.mean()), 1),
              "first_token_accuracy": round(correct / max(1, len(ms)), 3)}
    print(f"POST /api/predict on run {args.run!r}, {len(ms)} warm requests over loopback:")
    for key in ("predict_p50_ms", "predict_p95_ms", "predict_p99_ms", "predict_mean_ms"):
        print(f"  {key:18s} {result[key]:8.1f}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
