"""The atlas stages over a run, kept in SQL: ``apmae cluster``, ``apmae predictor train``,
``apmae sweep``.

Each stage reads the run's folder (results, embeddings, pattern statistics), computes with the
pure functions of :mod:`apmae.atlas`, and writes in transactions with upserts on natural keys,
so a rerun after an interruption neither duplicates nor loses rows. Clustering commits head by
head and skips heads already clustered with the same settings.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from ..db import models as m
from ..db.session import get_or_create_run, session_scope, upsert_rows
from ..paths import atomic_path
from ..run import Run
from .cluster import ClusterConfig, HeadClusters, cluster_head
from .heldout import Classifier, Features, HeldoutConfig, evaluate_heldout
from .predictor import FEATURES, PredictorConfig, balanced, categorical, cross_validate
from .importance import HeadEffects, causal_effects, per_head, shap_effects, single_head_scores
from .intervention import (InterventionConfig, enriched_pairs, evaluate, greedy, ranked,
                           sample_per_task)
from .summaries import predictor_summary, sweep_summary
from .sweep import FirstTokenScorer, SweepConfig, sweep


def sync_run(engine: Engine, run: Run) -> int:
    """Mirror the run and its scenarios' results into SQL; returns the SQL run id."""
    meta = run.meta()
    if "layers" not in meta:
        raise ValueError(f"run {run.name} has no extraction results (run `apmae extract` first)")
    scenarios = {s.id: s for s in run.scenarios()}
    with session_scope(engine) as session:
        known = session.scalar(select(m.Run.settings).where(m.Run.name == run.name))
        db_run = get_or_create_run(session, run.name, model=meta["model"], tokenizer=meta["tokenizer"],
                                   window=len(next(iter(scenarios.values())).input_ids),
                                   layers=meta["layers"], heads=meta["heads"], settings=known or {})
        rows = [{"run_id": db_run.id, "key": r["id"], "task": r["task"], "path": r["path"] or "",
                 "split": r["split"], "start": scenarios[r["id"]].start, "end": scenarios[r["id"]].end,
                 "target": scenarios[r["id"]].target, "completion": r["completion"],
                 "correct_exact": r["correct_exact"], "correct_first_token": r["correct_first_token"],
                 "logprob_target_first": r.get("logprob_target_first")}
                for r in run.results() if r["id"] in scenarios]
        upsert_rows(session, m.Scenario, rows, ["run_id", "key"],
                    ["completion", "correct_exact", "correct_first_token", "logprob_target_first"])
        return db_run.id


def _set_settings(session: Session, run_id: int, **stage: object) -> None:
    """Record a stage's settings in the transaction that writes its rows: both land or neither."""
    db_run = session.get(m.Run, run_id)
    db_run.settings = {**(db_run.settings or {}), **stage}


#: What a stage records beside its settings: how much it used, not how it was asked to run.
USED = ("scenarios_used", "train_used", "heldout_used")


def settled(engine: Engine, run_name: str, **stages: dict) -> bool:
    """Whether each of ``stages`` last ran on this run with exactly these settings (settings
    land in the transaction of the stage's rows, so settled settings mean whole rows; a stage
    recorded by older code with other fields is not settled)."""
    with session_scope(engine) as session:
        stored = session.scalar(select(m.Run.settings).where(m.Run.name == run_name)) or {}
    want = json.loads(json.dumps(stages))  # tuples as the JSON lists they were stored as
    return all(isinstance(stored.get(name), dict)
               and {k: v for k, v in stored[name].items() if k not in USED} == values
               for name, values in want.items())


def _scenario_ids(engine: Engine, run_id: int) -> dict[str, int]:
    with session_scope(engine) as session:
        return dict(session.execute(select(m.Scenario.key, m.Scenario.id)
                                    .where(m.Scenario.run_id == run_id)).all())


# --- cluster ----------------------------------------------------------------------------------


def cluster_run(run: Run, cfg: ClusterConfig, engine: Engine) -> int:
    """Cluster every head of the run; returns how many heads were (re)clustered."""
    run_id = sync_run(engine, run)
    emb = run.embeddings()
    keys = emb.ids()
    if not keys:
        raise ValueError(f"run {run.name} has no embeddings (run `apmae encode` first)")
    x = np.stack([np.asarray(emb.get(k), np.float32) for k in keys])  # [n, layers, heads, d]
    ids = _scenario_ids(engine, run_id)
    tasks, correct = _labels_of(engine, run_id, keys)
    settings_used = {k: v for k, v in asdict(cfg).items() if k != "workers"}  # same result either way
    fingerprint = {"config": settings_used, "scenarios": len(keys), "embeddings": emb.meta.model}
    with session_scope(engine) as session:
        db_run = session.get(m.Run, run_id)
        done = {(h.layer, h.head) for h in session.scalars(select(m.Head).where(m.Head.run_id == run_id))}
        if (db_run.settings or {}).get("cluster") != fingerprint:
            # heads of other settings go in the transaction that records the new ones: after a
            # kill midway they must not pass for heads done with the new settings
            session.execute(delete(m.Head).where(m.Head.run_id == run_id))
            db_run.settings = {**(db_run.settings or {}), "cluster": fingerprint}
            done = set()
    arrays = dict(np.load(run.assignments_path)) if run.assignments_path.exists() and done else {}
    # a head committed, then killed before the file with its arrays was renamed: cluster it again
    done = {(l, h) for l, h in done if f"L{l}H{h}_centers" in arrays}
    heads = [(l, h) for l in range(x.shape[1]) for h in range(x.shape[2]) if (l, h) not in done]
    for (layer, head), hc in tqdm(_cluster_heads(x, heads, cfg), total=len(heads), desc="cluster",
                                  unit="head"):
        _store_head(engine, run_id, layer, head, hc, keys, ids, tasks, correct)
        arrays[f"L{layer}H{head}_centers"] = hc.centers
        arrays[f"L{layer}H{head}_labels"] = hc.center_labels
        arrays[f"L{layer}H{head}_radii"] = hc.radii
        with atomic_path(run.assignments_path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return len(heads)


def _cluster_heads(x: np.ndarray, heads: list[tuple[int, int]], cfg: ClusterConfig
                   ) -> Iterator[tuple[tuple[int, int], HeadClusters]]:
    """Each head's clustering as it finishes: in ``cfg.workers`` processes (one per core by
    default; UMAP with a fixed seed and HDBSCAN each use one core), or inline for one."""
    workers = min(cfg.workers or os.cpu_count() or 1, len(heads))
    if workers <= 1:
        yield from (((l, h), cluster_head(x[:, l, h], cfg)) for l, h in heads)
        return
    # spawn: the parent has torch's thread pools, which a forked child must not inherit
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(cluster_head, x[:, l, h], cfg): (l, h) for l, h in heads}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _store_head(engine: Engine, run_id: int, layer: int, head: int, hc: HeadClusters,
                keys: list[str], ids: dict[str, int], tasks: np.ndarray, correct: np.ndarray) -> None:
    """One head's summary, clusters and memberships, in one transaction."""
    with session_scope(engine) as session:
        upsert_rows(session, m.Head, [{"run_id": run_id, "layer": layer, "head": head,
                                       "n_clusters": hc.n_clusters, "noise_share": hc.noise_share,
                                       "importance": None}],
                    ["run_id", "layer", "head"], ["n_clusters", "noise_share"])
        head_id = session.scalar(select(m.Head.id).where(
            m.Head.run_id == run_id, m.Head.layer == layer, m.Head.head == head))
        session.execute(delete(m.Cluster).where(m.Cluster.head_id == head_id))
        rows = []
        for label in sorted(set(hc.labels.tolist())):
            members = np.flatnonzero(hc.labels == label)
            rows.append({
                "head_id": head_id, "label": label, "size": len(members),
                "medoid_scenario_id": ids[keys[hc.medoids[label]]] if label in hc.medoids else None,
                "exemplars": [keys[i] for i in hc.exemplars.get(label, [])],
                "by_task": {t: int(c) for t, c in zip(*np.unique(tasks[members], return_counts=True))},
                "by_correct": {"correct": int(correct[members].sum()),
                               "incorrect": int((~correct[members]).sum())}})
        session.execute(m.Cluster.__table__.insert(), rows)
        upsert_rows(session, m.Membership,
                    [{"scenario_id": ids[k], "head_id": head_id, "label": int(hc.labels[i]),
                      "x": float(hc.coords[i, 0]), "y": float(hc.coords[i, 1])}
                     for i, k in enumerate(keys)],
                    ["scenario_id", "head_id"], ["label", "x", "y"])


def _labels_of(engine: Engine, run_id: int, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    with session_scope(engine) as session:
        rows = {k: (t, c) for k, t, c in session.execute(
            select(m.Scenario.key, m.Scenario.task, m.Scenario.correct_first_token)
            .where(m.Scenario.run_id == run_id))}
    return (np.array([rows[k][0] for k in keys]), np.array([bool(rows[k][1]) for k in keys]))


# --- predictor --------------------------------------------------------------------------------


def _cluster_features(engine: Engine, run: Run, run_id: int, keys: list[str]) -> np.ndarray:
    """Per scenario (rows in ``keys`` order), each head's cluster label as a categorical code."""
    ids = _scenario_ids(engine, run_id)
    with session_scope(engine) as session:
        heads = {hid: (l, h) for hid, l, h in session.execute(
            select(m.Head.id, m.Head.layer, m.Head.head).where(m.Head.run_id == run_id))}
        members = session.execute(select(m.Membership.scenario_id, m.Membership.head_id,
                                         m.Membership.label)
                                  .where(m.Membership.head_id.in_(list(heads)))).all()
    if not heads:
        raise ValueError(f"run {run.name} has no clusters (run `apmae cluster` first)")
    meta = run.meta()
    row = {ids[k]: i for i, k in enumerate(keys)}
    labels = np.full((len(keys), meta["layers"], meta["heads"]), -1, int)
    for sid, hid, label in members:
        if sid in row:
            labels[row[sid], heads[hid][0], heads[hid][1]] = label
    return categorical(labels.reshape(len(keys), -1))


def _feature_matrices(run: Run, engine: Engine, run_id: int, keys: list[str]) -> dict[str, np.ndarray]:
    """Per scenario (rows in ``keys`` order): cluster-label codes, embeddings, raw statistics."""
    emb, stats = run.embeddings(), run.pattern_stats()
    return {"clusters": _cluster_features(engine, run, run_id, keys),
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
    tasks, y = _labels_of(engine, run_id, keys)
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
    # overhead to the boosting of so few rows
    with threadpool_limits(1):
        section, rows = _evaluate_predictors(tasks, y, data.feats, run_id, cfg)
    held = evaluate_heldout(data.heldout, tasks, y, data.split, heldout)
    rows += _heldout_rows(run_id, held)
    effects = head_shap(data, heldout)
    with session_scope(engine) as session:
        upsert_rows(session, m.Predictor, rows, ["run_id", "protocol", "task", "features"], ["metrics"])
        _store_effects(session, run_id, effects, ("shap_abs", "shap"), run.meta()["heads"])
        # the grid's and the sweep's per-head figure: the pooled SHAP over wrong completions
        pooled = next((e for e in effects if e.measure == "shap" and e.task == "all"), None)
        for i in range(len(pooled.value) if pooled else 0):
            session.execute(m.Head.__table__.update().where(
                m.Head.run_id == run_id, m.Head.layer == i // run.meta()["heads"],
                m.Head.head == i % run.meta()["heads"]).values(importance=float(pooled.value[i])))
        _store_scores(session, run_id, data.keys, held)
        _set_settings(session, run_id, predictor=asdict(cfg), predictor_heldout=asdict(heldout))
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


def head_shap(data: TrainingData, cfg: HeldoutConfig) -> list[HeadEffects]:
    """Per task, each head's SHAP in the ``rows+clusters`` predictor (``clusters`` where the
    run has no row statistics) fitted on the train split's non-noise scenarios, over those
    same scenarios (:mod:`apmae.atlas.importance`); none where a class is missing."""
    kind = "rows+clusters" if "rows+clusters" in data.heldout else "clusters"
    f = data.heldout[kind]
    train = np.flatnonzero((data.tasks != "noise") & (data.split == "train"))
    if len(set(data.y[train].tolist())) < 2:
        return []
    tasks, y = data.tasks[train], data.y[train]
    model = Classifier(kind, cfg, sorted(set(tasks.tolist()))).fit(f.rows(train), tasks, y)
    by_head = per_head(model.contributions(f.rows(train), tasks), f.head,
                       data.feats["clusters"].shape[1])
    return shap_effects(by_head, tasks, y, cfg.bootstrap, cfg.seed)


def _store_effects(session: Session, run_id: int, effects: list[HeadEffects],
                   measures: tuple[str, ...], heads_per_layer: int) -> None:
    """Replace the run's ``measures`` rows by ``effects``."""
    session.execute(delete(m.HeadEffect).where(m.HeadEffect.run_id == run_id,
                                               m.HeadEffect.measure.in_(measures)))
    rows = [{"run_id": run_id, **r} for e in effects for r in e.rows(heads_per_layer)]
    if rows:
        session.execute(m.HeadEffect.__table__.insert(), rows)


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
    section and the SQL rows)."""
    rng = np.random.default_rng(cfg.seed)
    groups = {t: tasks == t for t in sorted(set(tasks.tolist()))}
    groups["all"] = tasks != "noise"
    rows, section = [], {}
    for task, sel in groups.items():
        pos, neg = int((y & sel).sum()), int((~y & sel).sum())
        if min(pos, neg) < cfg.min_per_class:
            section[task] = {"skipped": f"{pos} correct / {neg} incorrect: fewer than "
                                        f"{cfg.min_per_class} of one class"}
            rows.append({"run_id": run_id, "protocol": "kfold", "task": task,
                         "features": "clusters", "metrics": section[task]})  # the report says why there is no figure
            continue
        idx = np.flatnonzero(sel)[balanced(y[sel], tasks[sel], rng)]
        metrics = {kind: cross_validate(feats[kind][idx], y[idx], kind, cfg) for kind in FEATURES}
        rows += [{"run_id": run_id, "protocol": "kfold", "task": task, "features": kind,
                  "metrics": metrics[kind]} for kind in FEATURES]
        section[task] = {**metrics["clusters"],
                         "embeddings_balanced_accuracy": metrics["embeddings"]["balanced_accuracy"],
                         "baseline_balanced_accuracy": metrics["baseline"]["balanced_accuracy"]}
    return section, rows


# --- sweep ------------------------------------------------------------------------------------


def _effects_of(engine: Engine, run_id: int) -> dict[tuple[str, str], HeadEffects]:
    """The run's stored head effects, ``{(measure, task): HeadEffects}``."""
    e = m.HeadEffect
    with session_scope(engine) as session:
        rows = session.execute(select(e.measure, e.task, e.value, e.lo, e.hi, e.n)
                               .where(e.run_id == run_id).order_by(e.layer, e.head)).all()
    grouped: dict[tuple[str, str], list] = {}
    for r in rows:
        grouped.setdefault((r.measure, r.task), []).append(r)
    return {key: HeadEffects(key[0], key[1], *(np.array([getattr(r, a) for r in rs])
                                               for a in ("value", "lo", "hi")), rs[0].n)
            for key, rs in grouped.items()}


def sweep_run(run: Run, cfg: SweepConfig, engine: Engine, target,
              selective: InterventionConfig | None = None) -> dict:
    """Switch heads off and measure, with the heads always chosen on the train split and the
    effect always measured on held-out (test-split, non-noise) scenarios: each head's causal
    single-ablation effect per task, the selective interventions against random heads
    (:mod:`apmae.atlas.intervention`), and the collapse sweep. Stores all three."""
    selective = selective or InterventionConfig(seed=cfg.seed)
    run_id = sync_run(engine, run)
    effects = _effects_of(engine, run_id)
    if not any(measure == "shap_abs" for measure, _ in effects):
        raise ValueError(f"run {run.name} has no head importance (run `apmae predictor train` first)")
    meta = run.meta()
    n_layers, n_heads = meta["layers"], meta["heads"]
    every = [s for s in run.scenarios() if s.task != "noise"]
    train_pool = [s for s in every if s.split == "train"]
    pool = [s for s in every if s.split == "test"]
    if not pool or not train_pool:
        raise ValueError(f"run {run.name} has no {'held-out' if not pool else 'train-split'} "
                         "scenarios to choose heads on and test them")
    train = sample_per_task(train_pool, selective.train_per_task, selective.seed)
    scorer = FirstTokenScorer(target, cfg.batch_size)  # one for every stage: scores are reused
    hits, lps = single_head_scores(scorer, train, n_layers, n_heads)
    causal = causal_effects(hits, lps, np.array([s.task for s in train]), selective.bootstrap,
                            selective.seed)
    effects.update({(e.measure, e.task): e for e in causal})
    heldout = sample_per_task(pool, selective.heldout_per_task, selective.seed)
    # each scenario's cluster label per head (-1 noise) and correctness, train pool first
    keys = [s.id for s in train_pool + heldout]
    labels = _cluster_features(engine, run, run_id, keys).astype(int) - 1
    y = _labels_of(engine, run_id, keys)[1]
    n = len(train_pool)
    sets, pairs = _choose(scorer, train, train_pool, labels[:n], y[:n], effects, n_layers * n_heads,
                          n_heads, selective, tasks={s.task for s in heldout})
    result = evaluate(scorer, heldout, sets, pairs, labels[n:], n_layers, n_heads, selective)

    importance = {(i // n_heads, i % n_heads): float(v)
                  for i, v in enumerate(effects[("shap", "all")].value)} \
        if ("shap", "all") in effects else None
    gain = {(i // n_heads, i % n_heads): float(v)
            for i, v in enumerate(effects[("causal_accuracy", "all")].value)}
    pick = np.sort(np.random.default_rng(cfg.seed).permutation(len(pool))[:cfg.scenarios])
    points = sweep(scorer, [pool[i] for i in pick], importance, gain, cfg)
    with session_scope(engine) as session:
        _store_effects(session, run_id, causal, ("causal_accuracy", "causal_logprob"), n_heads)
        _store_interventions(session, run_id, result)
        session.execute(delete(m.SweepPoint).where(m.SweepPoint.run_id == run_id))
        session.execute(m.SweepPoint.__table__.insert(),
                        [{"run_id": run_id, **p} for p in points])
        _set_settings(session, run_id, sweep={**asdict(cfg), "scenarios_used": len(pick)},
                      intervention={**asdict(selective), "train_used": len(train),
                                    "heldout_used": len(heldout)})
    return sweep_summary(engine, run.name)


def _choose(scorer: FirstTokenScorer, train: list, train_pool: list, labels: np.ndarray, y: np.ndarray,
            effects: dict[tuple[str, str], HeadEffects], total: int, n_heads: int,
            cfg: InterventionConfig, tasks: set[str]) -> tuple[dict, dict]:
    """Per task, the heads each method picks on the train split (``sets[task][method][k]``)
    and the failure-enriched (head, cluster) pairs (``pairs[task][k]``); ``labels`` and ``y``
    are the train pool's cluster labels and correctness."""
    sets: dict[str, dict] = {}
    pairs: dict[str, dict] = {}
    pool_tasks = np.array([s.task for s in train_pool])
    as_head = [(i // n_heads, i % n_heads) for i in range(total)]
    for task in tqdm(sorted(tasks), desc="choosing heads", unit="task"):
        if ("causal_accuracy", task) not in effects:
            continue
        by_shap = [as_head[i] for i in ranked(effects, task, "shap")]
        by_causal = [as_head[i] for i in ranked(effects, task, "causal")]
        mine = [s for s in train if s.task == task]
        order = greedy(scorer, mine, by_causal[:cfg.greedy_candidates], max(cfg.sizes))
        sets[task] = {"shap": {k: by_shap[:k] for k in cfg.sizes if len(by_shap) >= k},
                      "causal": {k: by_causal[:k] for k in cfg.sizes},
                      "greedy": {k: order[:k] for k in cfg.sizes if len(order) >= k}}
        sel = pool_tasks == task
        pairs[task] = {k: enriched_pairs(labels[sel], y[sel], cfg.min_cluster, k, n_heads)
                       for k in cfg.sizes}
    return sets, pairs


def _store_interventions(session: Session, run_id: int, result: dict) -> None:
    """Replace the run's interventions by ``result`` (:func:`apmae.atlas.intervention.evaluate`)."""
    session.execute(delete(m.Intervention).where(m.Intervention.run_id == run_id))
    rows = []
    for task, entry in result["by_task"].items():
        for k, rnd in entry["random"].items():
            rows.append({"task": task, "method": "random", "size": k, "heads": [],
                         "metrics": {**rnd, "n": entry["n_heldout"],
                                     "base_accuracy": entry["base_accuracy"]}})
        for method, by_size in entry["methods"].items():
            rows += [{"task": task, "method": method, "size": k, "heads": v["heads"],
                      "metrics": {**{a: b for a, b in v.items() if a != "heads"},
                                  "base_accuracy": entry["base_accuracy"]}}
                     for k, v in by_size.items()]
    for method, by_size in result["all"].items():
        rows += [{"task": "all", "method": method, "size": k, "heads": [], "metrics": v}
                 for k, v in by_size.items()]
    if rows:
        session.execute(m.Intervention.__table__.insert(), [{"run_id": run_id, **r} for r in rows])
