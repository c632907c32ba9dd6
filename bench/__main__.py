"""Every benchmark in one go: ``python -m bench [--quick] [--json] [--run RUN]``.

Runs each benchmark module in its own process (its own memory peak and threads, nothing warm
carried over), in its quick or full mode, and gathers the keys issue-level goals are stated in:

================================  ==========================================  ========
key                               what                                        goal
================================  ==========================================  ========
capture_vs_output_attentions      bench.extract: ours / reference, scen/s     >= 2
capture_vs_plain_forward          bench.extract: ours / SDPA forward          >= 0.7
mae_train_vs_reference            bench.mae: AP-MAE train img/s / plain ViT   >= 1.5
mae_encode_img_s                  bench.mae: encoding images/s                (reported)
predict_p50_ms, predict_p95_ms    bench.predict: warm POST /api/predict       <= 300 / 600
bytes_per_pattern                 bench.storage: at 10,000 inferences         <= 2,621
matmul_gflops, *_fraction_*       bench.hardware                              (reported)
cluster_2000_idle_min_*           bench.scale: every head x 2,000 points,     (reported)
                                  2 idle cores, per StarCoder2 shape
prefill_cpu_s_*, prefill_peak_*   bench.scale: a shape's 256-token prefill    (reported)
paste_p50_s_3b, paste_p95_s_3b    bench.scale: live paste, 3B-shaped run      (reported)
serve_peak_gib_3b                 bench.scale: that server's peak RSS         (reported)
================================  ==========================================  ========

``predict_*`` and ``bytes_per_pattern`` need a built run (``--run``, default ``default``: what
``apmae demo`` builds); without one they are null and the reason is printed. Full mode also times
the default build from nothing and the 1x/2x/4x scaling (bench.pipeline, about an hour), and the
cost at StarCoder2 scale (bench.scale: clustering and per-layer prefill, extrapolated, minutes;
then the whole pipeline and live pastes at StarCoder2-3B shape, an hour or more on 2 cores).
Prints a table, then (``--json``) one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


GOALS = {  # key: (goal, "min" | "max")
    "capture_vs_output_attentions": (2.0, "min"),
    "capture_vs_plain_forward": (0.7, "min"),
    "mae_train_vs_reference": (1.5, "min"),
    "predict_p50_ms": (300.0, "max"),
    "predict_p95_ms": (600.0, "max"),
    "bytes_per_pattern": (2621, "max"),
}


def run_module(module: str, *flags: str) -> dict:
    """Run ``python -m bench.<module> <flags> --json``; its last line, parsed."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", f"bench.{module}", *flags, "--json"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"bench.{module} failed:\n{done.stderr[-2000:]}")
    print(f"  bench.{module} {' '.join(flags)}: {seconds:.0f} s", file=sys.stderr, flush=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def clustered(run: str) -> bool:
    """Whether ``run``'s heads are clustered in the atlas database, which predict serves."""
    from apmae.atlas.cluster_stage import head_assignments
    from apmae.db.session import reading_engine

    try:
        engine = reading_engine()
    except ValueError:  # no database at this code's schema: nothing this code built
        return False
    try:
        return bool(head_assignments(engine, run))
    finally:
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every benchmark in its quick mode (< 2 min)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--run", default="default", help="the built run predict and storage measure")
    args = ap.parse_args()
    quick = ["--quick"] if args.quick else []
    t0 = time.perf_counter()
    out: dict = {"mode": "quick" if args.quick else "full"}
    notes: list[str] = []

    extract = run_module("extract", *quick)
    out["capture_vs_output_attentions"] = extract["capture_vs_output_attentions"]
    out["capture_vs_plain_forward"] = extract["capture_vs_plain_forward"]
    out["capture_scenarios_per_s"] = extract["ours_scenarios_per_s"]
    out["plain_forward_scenarios_per_s"] = extract["plain_sdpa_scenarios_per_s"]
    mae = run_module("mae", *quick)
    out.update({k: mae[k] for k in ("mae_train_vs_reference", "mae_train_fp32_vs_reference",
                                    "mae_encode_img_s", "mae_encode_bf16_vs_reference_fp32")})
    out.update(run_module("hardware", *quick))
    built = clustered(args.run)
    if built:
        predict = run_module("predict", "--run", args.run, *(["--requests", "20", "--warmup", "3"] if args.quick else []))
        out["predict_p50_ms"], out["predict_p95_ms"] = predict["predict_p50_ms"], predict["predict_p95_ms"]
        storage = run_module("storage", "--run", args.run)
        out["bytes_per_pattern"] = storage["bytes_per_pattern"]
    else:
        out["predict_p50_ms"] = out["predict_p95_ms"] = out["bytes_per_pattern"] = None
        notes.append(f"run {args.run!r} is not built (apmae demo --run {args.run} --build-only): "
                     "predict and storage not measured")
    if not args.quick:
        out.update(run_module("pipeline", "--e2e", "--scaling", "20"))
        out.update(run_module("scale"))
    out["seconds"] = round(time.perf_counter() - t0, 1)

    print(f"{'key':34s} {'value':>10s} {'goal':>8s}  met")
    for key, value in out.items():
        if isinstance(value, dict) or key == "mode":
            continue
        goal, sense = GOALS.get(key, (None, ""))
        met = "" if goal is None or value is None else (
            "yes" if (value >= goal if sense == "min" else value <= goal) else "NO")
        print(f"{key:34s} {str(value):>10s} {'' if goal is None else ('>=' if sense == 'min' else '<=') + str(goal):>8s}  {met}")
    for note in notes:
        print(f"note: {note}")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
