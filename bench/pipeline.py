"""The default build end to end, and how each stage's cost grows with the number of scenarios.

    python -m bench.pipeline [--e2e] [--scaling PER_TASK] [--mae-steps N] [--json]

- ``--e2e``: ``apmae demo --build-only`` from nothing (a fresh ``APMAE_HOME`` and SQLite
  database), the default configuration: wall seconds per stage and in total (goal: 20 min on 2
  cores).
- ``--scaling PER_TASK``: the same build at 1x, 2x and 4x ``PER_TASK`` scenarios per task (and
  half as many held-out per task), each from nothing, AP-MAE trained for ``--mae-steps`` (a
  fixed cost: its steps do not depend on the run's size) and ``keep all``. Per stage, the
  exponent ``b`` of ``seconds ~ scenarios^b`` fitted over the three sizes: 1 is linear.

Every build runs in a child process (``python -m apmae demo --build-only``) with its own
``APMAE_HOME``, so nothing is shared and every stage starts cold; the stage times are the ones
``apmae demo`` prints (:class:`apmae.pipeline.StageTimes`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

#: Stages whose cost should grow with the number of scenarios (AP-MAE training does not).
SCALING_STAGES = ("mine", "extract", "encode", "cluster", "predictor")


def build(flags: list[str]) -> dict:
    """One ``apmae demo --build-only`` from nothing; ``{"total_s", "stages": {name: s}}``."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "APMAE_HOME": home, "APMAE_DATABASE_URL": f"sqlite:///{home}/apmae.db"}
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "apmae", "demo", "--build-only", "--run", "bench",
                               *flags], env=env, capture_output=True, text=True)
        total = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"apmae demo {' '.join(flags)} failed:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("stage times: "))
    stages = {m[1]: float(m[2]) for m in re.finditer(r"(\w+) ([\d.]+) s", line.split(";")[0])}
    return {"total_s": round(total, 1), "stages": stages}


def exponent(sizes: list[int], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) on log(size); None when a time is ~0."""
    if min(seconds) < 0.5:
        return None
    xs, ys = [math.log(s) for s in sizes], [math.log(t) for t in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--e2e", action="store_true", help="time the default build from nothing")
    ap.add_argument("--scaling", type=int, metavar="PER_TASK", help="1x/2x/4x builds from this size")
    ap.add_argument("--mae-steps", type=int, default=200, help="AP-MAE steps in the scaling builds")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    out: dict = {}
    if args.e2e:
        r = build([])
        print(f"default build from nothing: {r['total_s'] / 60:.1f} min; "
              + ", ".join(f"{k} {v:.0f} s" for k, v in r["stages"].items()))
        out["e2e_build_s"] = r["total_s"]
        out["e2e_stages_s"] = r["stages"]
    if args.scaling:
        rows = {}
        for k in (1, 2, 4):
            per_task = args.scaling * k
            rows[k] = build(["--per-task", str(per_task), "--heldout-per-task", str(max(1, per_task // 2)),
                             "--mae-steps", str(args.mae_steps), "--keep", "all"])
            print(f"{k}x ({per_task} per task): {rows[k]['total_s']:.0f} s; "
                  + ", ".join(f"{s} {v:.0f}" for s, v in rows[k]["stages"].items()), flush=True)
        sizes = [1, 2, 4]
        fits = {s: exponent(sizes, [rows[k]["stages"].get(s, 0.0) for k in sizes]) for s in SCALING_STAGES}
        print("exponent b in seconds ~ scenarios^b (1 = linear): "
              + ", ".join(f"{s} {b}" for s, b in fits.items()))
        out["scaling_per_task"] = args.scaling
        out["scaling_stages_s"] = {k: rows[k]["stages"] for k in rows}
        out["scaling_exponent"] = fits
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
