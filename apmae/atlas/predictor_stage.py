"""``apmae predictor train``: correctness predicted from each feature kind, into SQL.

Reads the clusters (:mod:`.cluster_stage`), embeddings and pattern statistics of a run; writes
the predictors' metrics, each head's SHAP (the grid's importance) and each held-out scenario's
score in one transaction. :func:`training_data` is also what the live predictor refits on.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits

from ..configs import PredictorConfig
from ..db import models as m
from ..db.session import session_scope, upsert_rows
from ..run import Run
from .build import labels_of, set_settings, store_effects, sync_run
from .cluster_stage import membership_labels
from .heldout import Classifier, Features, HeldoutConfig, evaluate_heldout
from .importance import HeadEffects, per_head, shap_effects
from .predictor import FEATURES, balanced, categorical, cross_validate
from .summaries import predictor_summary


def _feature_matrices(run: Run, engine: Engine, run_id: int, keys: list[str]) -> dict[str, np.ndarray]:
    """Per scenario (rows in ``keys`` order): cluster-label codes, embeddings, raw statistics."""
    emb, stats = run.embeddings(), run.pattern_stats()
    return {"clusters": categorical(membership_labels(engine, run, run_id, keys)),
            "embeddings": np.stack([np.asarray(emb.get(k), np.float32).reshape(-1) for k in keys]),
            "baseline": np.stack([np.asarray(stats.get(k), np.float32).reshape(-1) for k in keys])}


def _heldout_features(run: Run, feats: dict[str, np.ndarray], keys: list[str],
                      results: dict[str, dict]) -> dict[str, Features]:
    """Every held-out feature kind the run has: the model's confidence (where extraction
    recorded it), whole-pattern and predicting-row statistics, cluster labels, embeddings, and
    the row statistics beside each AP-MAE kind."""
    rows = run.row_stats()
    out: dict[str, Features] = {}
    if all("top1_prob" in results[k] for k in keys):
        out["lm_confidence"] = Features(np.array([[results[k]["top1_prob"], results[k]["entropy"]]
                                                  for k in keys], np.float32))
    heads = feats["clusters"].shape[1]
    out["pattern_stats"] = Features.per_head(feats["baseline"], heads)
    if all(rows.has(k) for k in keys):
        r = np.stack([np.asarray(rows.get(k), np.float32).reshape(-1) for k in keys])
        out["row_stats"] = Features.per_head(r, heads)
    out["clusters"] = Features.per_head(feats["clusters"], heads,
                                        categorical=np.ones(heads, bool))
    out["embeddings"] = Features.per_head(feats["embeddings"], heads,
                                          reduce=np.ones(feats["embeddings"].shape[1], bool))
    if "row_stats" in out:
        for kind in ("clusters", "embeddings"):
            out[f"rows+{kind}"] = Features.join(out["row_stats"], out[kind])
    return out


@dataclass
class TrainingData:
    """Every encoded scenario of a run, rows in one order: what the predictors are fitted on."""

    run_id: int
    keys: list[str]  # the scenarios, in row order
    tasks: np.ndarray
    y: np.ndarray  # first-token correctness
    split: np.ndarray  # "train" | "test" | "" (noise)
    feats: dict[str, np.ndarray]  # k-fold kinds (_feature_matrices)
    heldout: dict[str, Features]  # held-out kinds (_heldout_features)

    @property
    def noise_share(self) -> np.ndarray:
        """Per scenario, the share of its heads in no cluster."""
        return (self.feats["clusters"] == categorical(np.array(-1))).mean(1)


def training_data(run: Run, engine: Engine, run_id: int) -> TrainingData:
    """What :func:`predictor_run` scores and the live predictor refits, read (never written)
    from the run's folder and the atlas of SQL run ``run_id``."""
    keys = run.embeddings().ids()
    tasks, y = labels_of(engine, run_id, keys)
    results = {r["id"]: r for r in run.results()}
    split = np.array([results[k]["split"] or "" for k in keys])
    feats = _feature_matrices(run, engine, run_id, keys)
    return TrainingData(run_id, keys, tasks, y, split, feats, _heldout_features(run, feats, keys, results))


def predictor_run(run: Run, cfg: PredictorConfig, engine: Engine,
                  heldout: HeldoutConfig | None = None) -> dict:
    """Train and evaluate every feature kind: per task by k-fold (the paper's balanced design)
    and, over all tasks, fitted on the train split and scored on the held-out split; store the
    metrics and each head's SHAP per task. Returns the report's ``predictor`` section."""
    heldout = heldout or HeldoutConfig(seed=cfg.seed, min_per_class=cfg.min_per_class)
    data = training_data(run, engine, sync_run(engine, run))
    run_id, tasks, y = data.run_id, data.tasks, data.y
    # a task's balanced set is tens to a few hundred scenarios: OpenMP threads only add
    # overhead to the boosting of so few rows (joblib gives its workers one thread each too)
    with threadpool_limits(1):
        section, rows = _evaluate_predictors(tasks, y, data.feats, run_id, cfg)
    held = evaluate_heldout(data.heldout, tasks, y, data.split, heldout)
    rows += _heldout_rows(run_id, held)
    effects = head_shap(data, heldout, held.get("kinds", {}))
    with session_scope(engine) as session:
        upsert_rows(session, m.Predictor, rows, ["run_id", "protocol", "task", "features"], ["metrics"])
        store_effects(session, run_id, effects, ("shap_abs", "shap"), run.meta()["heads"])
        # the grid's and the sweep's per-head figure: the pooled SHAP over wrong completions
        pooled = next((e for e in effects if e.measure == "shap" and e.task == "all"), None)
        for i in range(len(pooled.value) if pooled else 0):
            session.execute(m.Head.__table__.update().where(
                m.Head.run_id == run_id, m.Head.layer == i // run.meta()["heads"],
                m.Head.head == i % run.meta()["heads"]).values(importance=float(pooled.value[i])))
        _store_scores(session, run_id, data.keys, held)
        set_settings(session, run_id, predictor=asdict(cfg), predictor_heldout=asdict(heldout))
    return predictor_summary(engine, run.name)


def _store_scores(session: Session, run_id: int, keys: list[str], held: dict) -> None:
    """Each held-out scenario's probability from the chosen (live) predictor kind; every other
    scenario's is cleared, so a rerun leaves no stale score."""
    session.execute(update(m.Scenario).where(m.Scenario.run_id == run_id).values(predicted_correct=None))
    if not held.get("best"):
        return
    table = m.Scenario.__table__
    session.execute(update(table).where(table.c.run_id == run_id, table.c.key == bindparam("k"))
                    .values(predicted_correct=bindparam("p")),
                    [{"k": keys[i], "p": float(p)} for i, p in zip(held["test"], held["scores"][held["best"]])])


def head_shap(data: TrainingData, cfg: HeldoutConfig, kinds: dict[str, dict]) -> list[HeadEffects]:
    """Per task, each head's SHAP in the ``rows+clusters`` predictor (``clusters`` where the
    run has no row statistics) fitted, at the capacity the held-out evaluation chose for it
    (``kinds``: its section), on the train split's non-noise scenarios, over those same
    scenarios (:mod:`apmae.atlas.importance`); none where a class is missing."""
    kind = "rows+clusters" if "rows+clusters" in data.heldout else "clusters"
    f = data.heldout[kind]
    train = np.flatnonzero((data.tasks != "noise") & (data.split == "train"))
    if len(set(data.y[train].tolist())) < 2:
        return []
    tasks, y = data.tasks[train], data.y[train]
    model = Classifier(kind, cfg, sorted(set(tasks.tolist())), kinds.get(kind, {}).get("capacity")).fit(
        f.rows(train), tasks, y)
    by_head = per_head(model.contributions(f.rows(train), tasks), f.head,
                       data.feats["clusters"].shape[1])
    return shap_effects(by_head, tasks, y, cfg.bootstrap, cfg.seed)


def _heldout_rows(run_id: int, held: dict) -> list[dict]:
    """One SQL row per held-out kind (``task`` "all"; per-task figures inside), each saying
    whether it is the one chosen for live use; a split that cannot be scored is one row
    saying why."""
    base = {"run_id": run_id, "protocol": "heldout", "task": "all"}
    if "skipped" in held:
        return [{**base, "features": "task_prior", "metrics": {"skipped": held["skipped"]}}]
    cv = held["selection"]["train_cv_within_task_auc"]
    return [{**base, "features": kind, "metrics": {
        **metrics, "selected": kind == held["best"], "train_cv_within_task_auc": cv.get(kind),
        "selection_rule": held["selection"]["rule"], "n_train": held["n_train"],
        "train_prior": held["train_prior"]}} for kind, metrics in held["kinds"].items()]


def _evaluate_predictors(tasks: np.ndarray, y: np.ndarray, feats: dict[str, np.ndarray], run_id: int,
                         cfg: PredictorConfig) -> tuple[dict, list[dict]]:
    """Per task and over all: every feature kind's cross-validated metrics (the report's
    section and the SQL rows). The (task, kind) fits are independent and each single-threaded:
    they run in one process per core."""
    from joblib import Parallel, delayed

    rng = np.random.default_rng(cfg.seed)
    groups = {t: tasks == t for t in sorted(set(tasks.tolist()))}
    groups["all"] = tasks != "noise"
    section, chosen = {}, {}
    for task, sel in groups.items():
        pos, neg = int((y & sel).sum()), int((~y & sel).sum())
        if min(pos, neg) < cfg.min_per_class:
            section[task] = {"skipped": f"{pos} correct / {neg} incorrect: fewer than "
                                        f"{cfg.min_per_class} of one class"}
        else:
            chosen[task] = np.flatnonzero(sel)[balanced(y[sel], tasks[sel], rng)]
    jobs = [(task, kind) for task in chosen for kind in FEATURES]
    scored = Parallel(n_jobs=min(len(jobs), os.cpu_count() or 1) or 1)(
        delayed(cross_validate)(feats[kind][chosen[task]], y[chosen[task]], kind, cfg)
        for task, kind in jobs)
    metrics = dict(zip(jobs, scored))
    rows = [{"run_id": run_id, "protocol": "kfold", "task": task, "features": "clusters",
             "metrics": why} for task, why in section.items()]  # the report says why there is no figure
    rows += [{"run_id": run_id, "protocol": "kfold", "task": task, "features": kind,
              "metrics": metrics[task, kind]} for task, kind in jobs]
    for task in chosen:
        section[task] = {**metrics[task, "clusters"],
                         "embeddings_balanced_accuracy": metrics[task, "embeddings"]["balanced_accuracy"],
                         "baseline_balanced_accuracy": metrics[task, "baseline"]["balanced_accuracy"]}
    return {task: section[task] for task in groups}, rows
