"""The run report: one JSON summary of a run that every stage adds its section to."""

from __future__ import annotations

import json
from collections import defaultdict

from .run import Run


def _rate(hits: int, n: int) -> float | None:
    return round(hits / n, 4) if n else None


def scenario_section(run: Run) -> dict:
    """``by_task.<task>``: n and both accuracies on held-out scenarios (the file split's test
    side, plus the noise control); ``train_split`` the same for scenarios from training files."""
    counts: dict[str, dict[str, dict[str, int]]] = {
        "test": defaultdict(lambda: {"n": 0, "exact": 0, "first": 0}),
        "train": defaultdict(lambda: {"n": 0, "exact": 0, "first": 0}),
    }
    for r in run.results():
        side = "train" if r["split"] == "train" else "test"
        c = counts[side][r["task"]]
        c["n"] += 1
        c["exact"] += bool(r["correct_exact"])
        c["first"] += bool(r["correct_first_token"])

    def table(side: str) -> dict:
        return {task: {"n": c["n"], "accuracy_exact": _rate(c["exact"], c["n"]),
                       "accuracy_first_token": _rate(c["first"], c["n"])}
                for task, c in sorted(counts[side].items())}

    by_task = table("test")
    real = [c for task, c in counts["test"].items() if task != "noise"]
    n = sum(c["n"] for c in real)
    overall = {"n": n, "accuracy_exact": _rate(sum(c["exact"] for c in real), n),
               "accuracy_first_token": _rate(sum(c["first"] for c in real), n)}
    return {"by_task": by_task, "overall_non_noise": overall, "train_split": table("train")}


def build_report(run: Run) -> dict:
    report: dict = {"run": run.name, "path": str(run.path), "meta": run.meta()}
    if run.results_path.exists():
        report["scenarios"] = scenario_section(run)
    store = run.pattern_store()
    if store is not None:
        heads = store.meta.layers * store.meta.heads
        report["patterns"] = {"stored": len(store), "bytes": store.nbytes(),
                              "bytes_per_pattern": round(store.nbytes() / max(1, len(store) * heads))}
    return report


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

