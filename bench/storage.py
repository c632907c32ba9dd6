"""Bytes kept on disk per analysed (inference, head) pattern of a built run, everything counted.

    python -m bench.storage [--run default] [--at 10000] [--json]

Counts every file of the run folder (kept patterns, embeddings, pattern statistics, 2-D maps and
fitted cluster centres, scenarios and results, AP-MAE weights and checkpoints) and the run's SQL
rows (scenarios, heads, clusters, memberships with their map coordinates, predictors, sweep
points), measured by copying exactly those rows into an empty SQLite file and vacuuming it. No
thumbnails are stored: the explorer renders them on demand from the kept patterns or one forward
pass.

Each part is either **per inference** (grows with the number of scenarios: embeddings, rows,
results) or **fixed** (AP-MAE weights, the bounded ``keep sample:N`` of training patterns, which
stops growing at N inferences). ``bytes_per_pattern`` at ``--at`` inferences is therefore
``per_inference_bytes * at + fixed_bytes`` over ``at * layers * heads``, every term measured on the
run; the figure at the run's own size is printed beside it. The reference keeps 262,144 bytes per
pattern (a float32 256 x 256 image).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from sqlalchemy import select

from apmae.db import models
from apmae.db.session import make_engine, session_scope
from apmae.run import Run

REFERENCE_BYTES = 256 * 256 * 4
#: Run-folder entries whose size does not grow with the number of inferences.
FIXED = ("mae", "run.json")


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def sql_bytes(run_name: str) -> tuple[int, int]:
    """``(bytes, rows)`` of the run's rows alone in a fresh, vacuumed SQLite database."""
    tables = [models.Run, models.Scenario, models.Head, models.Cluster, models.Membership,
              models.Predictor, models.SweepPoint]
    source = make_engine()
    with tempfile.TemporaryDirectory() as tmp:
        dest = make_engine(f"sqlite:///{tmp}/copy.db", foreign_keys=False)
        models.Base.metadata.create_all(dest)
        rows = 0
        with session_scope(source) as src, dest.begin() as conn:
            run = src.scalar(select(models.Run).where(models.Run.name == run_name))
            if run is None:
                raise SystemExit(f"run {run_name!r} is not in {source.url}: build it first")
            head_ids = select(models.Head.id).where(models.Head.run_id == run.id)
            queries = {
                models.Run: select(models.Run.__table__).where(models.Run.id == run.id),
                models.Scenario: select(models.Scenario.__table__).where(models.Scenario.run_id == run.id),
                models.Head: select(models.Head.__table__).where(models.Head.run_id == run.id),
                models.Cluster: select(models.Cluster.__table__).where(models.Cluster.head_id.in_(head_ids)),
                models.Membership: select(models.Membership.__table__).where(
                    models.Membership.head_id.in_(head_ids)),
                models.Predictor: select(models.Predictor.__table__).where(models.Predictor.run_id == run.id),
                models.SweepPoint: select(models.SweepPoint.__table__).where(
                    models.SweepPoint.run_id == run.id),
            }
            for table in tables:
                batch = [dict(r._mapping) for r in src.execute(queries[table])]
                if batch:
                    conn.execute(table.__table__.insert(), batch)
                rows += len(batch)
        with dest.connect() as conn:
            conn.exec_driver_sql("VACUUM")
        dest.dispose()
        return Path(tmp, "copy.db").stat().st_size, rows


def measure(run: Run, at: int) -> dict:
    meta = run.meta()
    heads = meta["layers"] * meta["heads"]
    n = sum(1 for _ in run.results())
    store = run.pattern_store()
    kept = len(store) if store is not None else 0
    parts = {p.name: folder_bytes(p) for p in sorted(run.path.iterdir())}
    db, rows = sql_bytes(run.name)
    parts["sql"] = db
    kept_bytes = parts.pop("patterns", 0)
    per_kept = kept_bytes / kept if kept else 0.0
    keep = str(meta.get("keep", "all"))
    kept_at = at if keep == "all" else min(at, int(keep.split(":")[1])) if keep.startswith("sample:") else 0
    fixed = sum(v for k, v in parts.items() if k in FIXED)
    per_inference = sum(v for k, v in parts.items() if k not in FIXED) / n
    total_here = fixed + per_inference * n + kept_bytes
    total_at = fixed + per_inference * at + per_kept * kept_at
    return {
        "run": run.name, "inferences": n, "heads": heads, "keep": keep, "kept_inferences": kept,
        "parts_bytes": {**parts, "patterns": kept_bytes}, "sql_rows": rows,
        "per_inference_bytes": round(per_inference), "fixed_bytes": fixed,
        "kept_bytes_per_inference": round(per_kept),
        "bytes_per_pattern_here": round(total_here / (n * heads)),
        "at_inferences": at, "bytes_per_pattern": round(total_at / (at * heads)),
        "vs_reference": round(REFERENCE_BYTES / (total_at / (at * heads)), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="default")
    ap.add_argument("--at", type=int, default=10_000, help="inferences to state the figure at")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    r = measure(Run(args.run), args.at)
    print(f"run {r['run']}: {r['inferences']} inferences x {r['heads']} heads, keep {r['keep']} "
          f"({r['kept_inferences']} kept)")
    for name, size in sorted(r["parts_bytes"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:16s} {size / 1e6:10.2f} MB")
    print(f"  per inference {r['per_inference_bytes']} B + fixed {r['fixed_bytes'] / 1e6:.1f} MB + "
          f"kept patterns {r['kept_bytes_per_inference']} B per kept inference")
    print(f"bytes per pattern: {r['bytes_per_pattern_here']} at this run's size, "
          f"{r['bytes_per_pattern']} at {args.at} inferences ({r['vs_reference']}x less than "
          f"the reference's {REFERENCE_BYTES})")
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
