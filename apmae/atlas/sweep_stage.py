"""``apmae sweep``: heads switched off and the effect measured, into SQL.

Reads the clusters (:mod:`.cluster_stage`) and the heads' SHAP (:mod:`.predictor_stage`);
writes each head's causal effect, the selective interventions and the collapse sweep in one
transaction. Heads are always chosen on the train split and tested on held-out scenarios.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from tqdm import tqdm

from ..configs import InterventionConfig, SweepConfig
from ..db import models as m
from ..db.session import session_scope
from ..run import Run
from .build import effects_of, labels_of, run_settings, set_settings, store_effects, sync_run
from .cluster_stage import membership_labels
from .importance import HeadEffects, candidates, causal_effects, single_head_scores
from .intervention import enriched_pairs, evaluate, greedy, ranked, sample_per_task
from .summaries import sweep_summary
from .sweep import FirstTokenScorer, sweep


def sweep_run(run: Run, cfg: SweepConfig, engine: Engine, target,
              selective: InterventionConfig | None = None) -> dict:
    """Switch heads off and measure, with the heads always chosen on the train split and the
    effect always measured on held-out (test-split, non-noise) scenarios: each candidate head's
    causal single-ablation effect per task (:func:`.importance.candidates`), the selective
    interventions against random heads (:mod:`apmae.atlas.intervention`), and the collapse
    sweep. Stores all three. A run whose predictor could fit no task (a model that is never
    right) has no SHAP: its SHAP-based methods and orders are left out, not faked."""
    selective = selective or InterventionConfig(seed=cfg.seed)
    run_id = sync_run(engine, run)
    if "predictor" not in run_settings(engine, run.name):
        raise ValueError(f"run {run.name} has no head importance (run `apmae predictor train` first)")
    effects = effects_of(engine, run_id)
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
    shap_abs = effects.get(("shap_abs", "all"))
    measured, measured_by = candidates(None if shap_abs is None else shap_abs.value,
                                       n_layers * n_heads, selective.candidates, selective.seed)
    hits, lps = single_head_scores(scorer, train, [(int(i) // n_heads, int(i) % n_heads) for i in measured])
    causal = causal_effects(hits, lps, np.array([s.task for s in train]), measured,
                            n_layers * n_heads, selective.bootstrap, selective.seed)
    effects.update({(e.measure, e.task): e for e in causal})
    heldout = sample_per_task(pool, selective.heldout_per_task, selective.seed)
    # each scenario's cluster label per head (-1 noise) and correctness, train pool first
    keys = [s.id for s in train_pool + heldout]
    labels = membership_labels(engine, run, run_id, keys)
    y = labels_of(engine, run_id, keys)[1]
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
        store_effects(session, run_id, causal, ("causal_accuracy", "causal_logprob"), n_heads)
        _store_interventions(session, run_id, result)
        session.execute(delete(m.SweepPoint).where(m.SweepPoint.run_id == run_id))
        session.execute(m.SweepPoint.__table__.insert(),
                        [{"run_id": run_id, **p} for p in points])
        set_settings(session, run_id, sweep={**asdict(cfg), "scenarios_used": len(pick)},
                      intervention={**asdict(selective), "train_used": len(train),
                                    "heldout_used": len(heldout), "heads_measured": len(measured),
                                    "heads_measured_by": measured_by})
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
