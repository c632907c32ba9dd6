"""The run report: one JSON summary of a run that every stage adds its section to."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Iterable

from .run import Run


def _rate(hits: int, n: int) -> float | None:
    return round(hits / n, 4) if n else None


def task_table(rows: Iterable[dict]) -> dict:
    """``{task: {n, accuracy_exact, accuracy_first_token}}`` plus ``overall_non_noise``."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in rows:
        c = counts[r["task"]]
        c[0] += 1
        c[1] += bool(r["correct_exact"])
        c[2] += bool(r["correct_first_token"])
    table = {task: {"n": n, "accuracy_exact": _rate(e, n), "accuracy_first_token": _rate(f, n)}
             for task, (n, e, f) in sorted(counts.items())}
    real = [c for task, c in counts.items() if task != "noise"]
    n = sum(c[0] for c in real)
    overall = {"n": n, "accuracy_exact": _rate(sum(c[1] for c in real), n),
               "accuracy_first_token": _rate(sum(c[2] for c in real), n)}
    return {"by_task": table, "overall_non_noise": overall}


def scenario_section(run: Run) -> dict:
    """Accuracies over every scenario of the run, and by the file split (``test`` is held out
    from the default model's and AP-MAE's training; noise belongs to no split)."""
    rows = list(run.results())
    section = task_table(rows)
    section["by_split"] = {split: task_table(r for r in rows if r["split"] == split)
                           for split in ("train", "test") if any(r["split"] == split for r in rows)}
    return section


def build_report(run: Run, url: str | None = None) -> dict:
    """The run's summary: scenarios, patterns, atlas sections (from the database at ``url``,
    default :func:`apmae.db.session.database_url`) and AP-MAE's evaluation."""
    report: dict = {"run": run.name, "path": str(run.path), "meta": run.meta()}
    if run.results_path.exists():
        report["scenarios"] = scenario_section(run)
    store = run.pattern_store()
    if store is not None:
        heads = store.meta.layers * store.meta.heads
        report["patterns"] = {"stored": len(store), "bytes": store.nbytes(),
                              "bytes_per_pattern": round(store.nbytes() / max(1, len(store) * heads))}
    report.update(atlas_sections(run, url))
    mae_eval = run.mae_eval_path
    if mae_eval.exists():
        report.update(json.loads(mae_eval.read_text()))
    return report


def atlas_sections(run: Run, url: str | None = None) -> dict:
    """``clusters``, ``predictor``, ``sweep`` and ``intervention`` from the SQL store, for the
    stages that ran."""
    from .db.session import database_url, sqlite_file

    url = url or database_url()
    path = sqlite_file(url)
    if path is not None and not path.exists():
        return {}  # no atlas yet: do not create an empty database just to report on it
    from .atlas.summaries import cluster_summary, intervention_summary, predictor_summary, sweep_summary
    from .db.session import reading_engine

    engine = reading_engine(url)
    sections = {"clusters": cluster_summary(engine, run.name),
                "predictor": predictor_summary(engine, run.name),
                "sweep": sweep_summary(engine, run.name),
                "intervention": intervention_summary(engine, run.name)}
    return {k: v for k, v in sections.items() if v is not None}


def format_report(report: dict) -> str:
    """A short human-readable table of the per-task accuracies."""
    lines = [f"run {report['run']} at {report['path']}"]
    sc = report.get("scenarios")
    if sc:
        lines.append(f"{'task':24s} {'n':>6s} {'exact':>7s} {'first':>7s}")
        for task, row in sc["by_task"].items():
            lines.append(f"{task:24s} {row['n']:6d} {row['accuracy_exact'] or 0:7.1%} "
                         f"{row['accuracy_first_token'] or 0:7.1%}")
        o = sc["overall_non_noise"]
        lines.append(f"{'all but noise':24s} {o['n']:6d} {o['accuracy_exact'] or 0:7.1%} "
                     f"{o['accuracy_first_token'] or 0:7.1%}")
    if "patterns" in report:
        p = report["patterns"]
        lines.append(f"patterns: {p['stored']} scenarios, {p['bytes'] / 1e6:.1f} MB")
    return "\n".join(lines)


def dumps(report: dict) -> str:
    return json.dumps(report, indent=2)

