"""The atlas's read side: the report's ``clusters``, ``predictor``, ``sweep`` and
``intervention`` sections, read from SQL (never written), for the report and the API alike."""

from __future__ import annotations

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..configs import STRATEGIES
from ..db import models as m
from ..db.session import session_scope


def cluster_summary(engine: Engine, run_name: str) -> dict | None:
    """The report's ``clusters`` section."""
    with session_scope(engine) as session:
        run_id = session.scalar(select(m.Run.id).where(m.Run.name == run_name))
        heads = session.scalars(select(m.Head).where(m.Head.run_id == run_id)).all() if run_id else []
        if not heads:
            return None
        return {"heads": len(heads),
                "clustered_share": float(np.mean([1 - h.noise_share for h in heads])),
                "clusters_per_head_mean": float(np.mean([h.n_clusters for h in heads])),
                "noise_share_mean": float(np.mean([h.noise_share for h in heads]))}


def predictor_summary(engine: Engine, run_name: str) -> dict | None:
    """The report's ``predictor`` section: ``by_task`` (k-fold, the paper's design) and
    ``heldout`` (the chosen attention-only predictor's held-out figures, its baselines and
    the other AP-MAE variants, all on the same held-out scenarios)."""
    with session_scope(engine) as session:
        run_id = session.scalar(select(m.Run.id).where(m.Run.name == run_name))
        rows = session.execute(select(m.Predictor.protocol, m.Predictor.task, m.Predictor.features,
                                      m.Predictor.metrics)
                               .where(m.Predictor.run_id == run_id)).all() if run_id else []
    if not rows:
        return None
    by: dict[str, dict] = {}
    kinds: dict[str, dict] = {}
    for protocol, task, kind, metrics in rows:
        if protocol == "heldout":
            kinds[kind] = metrics
            continue
        entry = by.setdefault(task, {})
        if kind == "clusters":
            entry.update(metrics)
        elif "balanced_accuracy" in metrics:
            entry[f"{kind}_balanced_accuracy"] = metrics["balanced_accuracy"]
    out: dict = {"by_task": by}
    if kinds:
        out["heldout"] = heldout_section(kinds)
    return out


def heldout_section(kinds: dict[str, dict]) -> dict:
    """``predictor.heldout`` from the stored kinds: the selected predictor's table at the top."""
    if any("skipped" in v and "auc" not in v for v in kinds.values()):
        return {"skipped": next(v["skipped"] for v in kinds.values() if "skipped" in v)}
    best = next((k for k, v in kinds.items() if v.get("selected")), None)
    baselines = ("task_prior", "lm_confidence", "pattern_stats", "row_stats")
    top = {k: v for k, v in kinds.get(best, {}).items()
           if k not in ("selected", "attention", "train_prior", "selection_rule")}
    return {"predictor": best, **top,
            "selection_rule": kinds[best]["selection_rule"] if best else None,
            "baselines": {k: kinds[k] for k in baselines if k in kinds},
            "variants": {k: v for k, v in kinds.items() if k not in baselines}}


def intervention_summary(engine: Engine, run_name: str) -> dict | None:
    """The report's ``intervention`` section: per task and method, the heads chosen on the
    train split and their held-out accuracy change with its interval beside random heads of
    equal count; the same pooled over tasks; and which method wins."""
    with session_scope(engine) as session:
        run_id = session.scalar(select(m.Run.id).where(m.Run.name == run_name))
        i = m.Intervention
        rows = session.execute(select(i.task, i.method, i.size, i.heads, i.metrics)
                               .where(i.run_id == run_id)
                               .order_by(i.task, i.method, i.size)).all() if run_id else []
        settings = session.scalar(select(m.Run.settings).where(m.Run.id == run_id)) if run_id else {}
    if not rows:
        return None
    by_task: dict[str, dict] = {}
    pooled: dict[str, dict] = {}
    for r in rows:
        if r.task == "all":
            pooled.setdefault(r.method, {})[str(r.size)] = r.metrics
        else:
            by_task.setdefault(r.task, {}).setdefault(r.method, {})[str(r.size)] = {
                "heads": r.heads, **r.metrics}
    return {"settings": (settings or {}).get("intervention"), "all": pooled, "by_task": by_task,
            "verdict": verdict(pooled)}


#: The paper's figure for a selective intervention: accuracy up by 13.6% (of itself).
PAPER_GAIN = 0.136


def verdict(pooled: dict[str, dict]) -> dict:
    """Which method wins over all tasks, and whether any selective intervention helps: its
    accuracy change's interval above zero and above 95% of the random sets of its size. The
    paper's claim is judged in two parts: that selection helps at all (``reproduced``), and
    whether the gain, relative to the unablated accuracy, reaches the paper's 13.6%."""
    best = max(((method, size, v) for method, sizes in pooled.items() for size, v in sizes.items()),
               key=lambda t: t[2]["accuracy_change"], default=None)
    helps = [(method, size) for method, sizes in pooled.items() for size, v in sizes.items()
             if v["accuracy_change_ci"] and v["accuracy_change_ci"][0] > 0
             and v["share_of_random_beaten"] >= 0.95]
    relative = (best[2]["accuracy_change"] / best[2]["base_accuracy"]
                if best and best[2].get("base_accuracy") else None)
    return {"best": {"method": best[0], "size": int(best[1]),
                     "accuracy_change": best[2]["accuracy_change"],
                     "accuracy_change_ci": best[2]["accuracy_change_ci"],
                     "relative_change": None if relative is None else round(relative, 4),
                     "share_of_random_beaten": best[2]["share_of_random_beaten"]} if best else None,
            "helps": [{"method": a, "size": int(b)} for a, b in helps],
            "paper_claim": "+13.6% accuracy when heads are ablated selectively",
            "reproduced": bool(helps),
            "paper_gain_reached": bool(helps) and relative is not None and relative >= PAPER_GAIN}


def sweep_points(session: Session, run_id: int, with_heads: bool = False) -> list[dict]:
    """The run's collapse-curve points in (strategy, heads off, repeat) order; ``with_heads``
    adds each point's ablated heads (the explorer shows them, the report does not)."""
    q = select(m.SweepPoint).where(m.SweepPoint.run_id == run_id).order_by(
        m.SweepPoint.strategy, m.SweepPoint.n_heads, m.SweepPoint.repeat)
    return [{"strategy": p.strategy, "n_heads": p.n_heads, "repeat": p.repeat, "accuracy": p.accuracy,
             "incorrect_to_correct": p.incorrect_to_correct,
             "correct_to_incorrect": p.correct_to_incorrect, "loss_change": p.loss_change,
             **({"heads": p.heads} if with_heads else {})} for p in session.scalars(q)]


def sweep_summary(engine: Engine, run_name: str) -> dict | None:
    with session_scope(engine) as session:
        run_id = session.scalar(select(m.Run.id).where(m.Run.name == run_name))
        points = sweep_points(session, run_id) if run_id else []
    if not points:
        return None
    return {"points": points, "collapse": collapse_points(points)}


def collapse_points(points: list[dict]) -> dict[str, int | None]:
    """Per strategy, the fewest heads at which mean accuracy falls to half the unablated one
    or below (None if it never does, and for a model never right: it has nothing to lose)."""
    base = next(p["accuracy"] for p in points if p["strategy"] == "none")
    out: dict[str, int | None] = dict.fromkeys(STRATEGIES)
    if base <= 0:
        return out
    for s in STRATEGIES:
        by_n: dict[int, list[float]] = {}
        for p in points:
            if p["strategy"] == s:
                by_n.setdefault(p["n_heads"], []).append(p["accuracy"])
        out[s] = next((n for n in sorted(by_n) if np.mean(by_n[n]) <= base / 2), None)
    return out
