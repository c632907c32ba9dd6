"""How well the live correctness prediction separates right from wrong, measured through the API.

    python -m bench.live_auc [--run default] [--limit 0] [--json]

Starts the explorer (uvicorn) on a free loopback port and pastes every held-out scenario of the
run (the window's prefix, target and suffix text, the target's offsets): code that the model,
AP-MAE and the predictor never trained on. The truth is the API's own judgement of its
completion (``correct_first_token``). Prints the ROC AUC of ``predicted_correct`` overall and
within task (mean of per-task AUCs), each with a 95% bootstrap interval, beside the same for the
model's own confidence (``lm_confidence.predicted_correct``, not from attention), on the same
answers; answers withheld as out of distribution are counted and left out of both.
"""

from __future__ import annotations

import argparse
import json

import httpx
import numpy as np
from tqdm import tqdm

from apmae.atlas.heldout import bootstrap_weights, interval, weighted_auc
from apmae.run import Run

from .serving import held_out_bodies, served


def auc_figures(y: np.ndarray, p: np.ndarray, tasks: np.ndarray, replicates: int = 1000) -> dict:
    """Overall and within-task AUC with 95% bootstrap intervals (resampled within task)."""
    w = bootstrap_weights(tasks, replicates, seed=0)
    ones = np.ones(len(y))
    per_task = [t for t in np.unique(tasks) if 0 < y[tasks == t].sum() < (tasks == t).sum()]
    within = [weighted_auc(y[tasks == t], p[tasks == t], ones[tasks == t])[0] for t in per_task]
    within_reps = np.nanmean([weighted_auc(y[tasks == t], p[tasks == t], w[:, tasks == t])
                              for t in per_task], 0)
    return {"auc": round(float(weighted_auc(y, p, ones)[0]), 4), "auc_ci": interval(weighted_auc(y, p, w)),
            "within_task_auc": round(float(np.mean(within)), 4), "within_task_auc_ci": interval(within_reps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="default")
    parser.add_argument("--limit", type=int, default=0,
                        help="at most this many scenarios, evenly spaced over the file (0: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    bodies = held_out_bodies(Run(args.run))
    if args.limit:
        bodies = bodies[::max(1, len(bodies) // args.limit)][:args.limit]
    rows, withheld, name = [], 0, None
    with served(args.run) as url, httpx.Client(base_url=url, timeout=120) as client:
        for task, body in tqdm(bodies, desc="predict", unit="scenario"):
            out = client.post("/api/predict", json=body).raise_for_status().json()
            name = (out["predictor"] or {}).get("name", name)
            if out["predicted_correct"] is None:
                withheld += 1
                continue
            rows.append((task, bool(out["correct_first_token"]), out["predicted_correct"],
                         out["lm_confidence"]["predicted_correct"]))
    tasks = np.array([r[0] for r in rows])
    y = np.array([r[1] for r in rows])
    result = {"run": args.run, "predictor": name, "scenarios": len(bodies), "scored": len(rows),
              "withheld_out_of_distribution": withheld, "accuracy": round(float(y.mean()), 4),
              "attention": auc_figures(y, np.array([r[2] for r in rows]), tasks),
              "lm_confidence": None if any(r[3] is None for r in rows) else
              auc_figures(y, np.array([r[3] for r in rows]), tasks)}
    print(f"POST /api/predict on {len(rows)} held-out scenarios of run {args.run!r} "
          f"({withheld} withheld as out of distribution); predictor {name}:")
    for key in ("attention", "lm_confidence"):
        r = result[key]
        if r is None:
            print(f"  {key:14s} (the run's results have no confidence: extracted before it was recorded)")
            continue
        print(f"  {key:14s} AUC {r['auc']:.3f} {r['auc_ci']}  within task {r['within_task_auc']:.3f} "
              f"{r['within_task_auc_ci']}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
