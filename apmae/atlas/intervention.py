"""Selective intervention, tested the way the paper's claim needs: heads chosen per task on the
train split, their ablation measured on held-out scenarios beside random heads of equal count.

Methods of choosing ``k`` heads for a task (all on train-split scenarios only):

- ``shap``: the ``k`` heads whose attention most marks a failure for the predictor (most negative
  mean SHAP over the task's wrong completions, :mod:`apmae.atlas.importance`), as the paper;
- ``causal``: the ``k`` heads whose single ablation most raises the task's accuracy (then the
  target's log-probability);
- ``greedy``: forward selection, each step adding the candidate head that most raises the task's
  accuracy with the heads already chosen switched off;
- ``conditional``: what only an atlas of patterns allows: the ``k`` (head, cluster) pairs whose
  cluster is most enriched in failures, each head switched off only for inputs whose pattern at
  that head falls in that cluster.

``random``: ``random_sets`` sets of ``k`` heads drawn once (the same for every task). Each held-out
figure is paired against the same scenarios with nothing ablated.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from tqdm import tqdm

from ..configs import InterventionConfig
from ..scenarios import Scenario
from .importance import HeadEffects, mean_interval
from .sweep import FirstTokenScorer, Head

METHODS = ("shap", "causal", "greedy", "conditional")


def head_name(head: Head) -> str:
    return f"L{head[0]}H{head[1]}"


def sample_per_task(pool: list[Scenario], per_task: int, seed: int) -> list[Scenario]:
    """Up to ``per_task`` scenarios of each task, drawn at random, in pool order."""
    rng = np.random.default_rng(seed)
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(pool):
        by_task[s.task].append(i)
    keep = [j for t in sorted(by_task) for j in rng.permutation(by_task[t])[:per_task]]
    return [pool[i] for i in sorted(keep)]


def ranked(effects: dict[tuple[str, str], HeadEffects], task: str, method: str) -> list[int]:
    """Head indices, best candidate for ablation first, by ``shap`` or ``causal`` effects."""
    if method == "shap":
        shap = effects.get(("shap", task))
        return [] if shap is None else list(np.argsort(shap.value, kind="stable"))
    acc, lp = effects[("causal_accuracy", task)].value, effects[("causal_logprob", task)].value
    return list(np.lexsort((-lp, -acc)))


def greedy(scorer: FirstTokenScorer, scenarios: list[Scenario], candidates: list[Head],
           size: int) -> list[Head]:
    """Forward selection on ``scenarios``: heads in the order they were added (the set of size
    ``k`` is the first ``k``)."""
    chosen: list[Head] = []
    for _ in range(min(size, len(candidates))):
        scores = {}
        for c in (c for c in candidates if c not in chosen):
            hits, lp = scorer(scenarios, chosen + [c])
            scores[c] = (hits.mean(), lp.mean())
        chosen.append(max(scores, key=scores.get))
    return chosen


def enriched_pairs(labels: np.ndarray, y: np.ndarray, min_cluster: int, k: int,
                   heads_per_layer: int) -> list[tuple[Head, int]]:
    """The ``k`` (head, cluster label) pairs of ``labels`` (``[scenarios, heads]``, -1 noise)
    whose members fail most often beyond the scenarios' base rate (ties: more members),
    at most one cluster per head."""
    fail = ~y.astype(bool)
    best: dict[int, tuple[float, int, int]] = {}
    for h in range(labels.shape[1]):
        for c in np.unique(labels[:, h]):
            members = labels[:, h] == c
            if c < 0 or members.sum() < min_cluster:
                continue
            lift = fail[members].mean() - fail.mean()
            if lift > 0 and (h not in best or (lift, members.sum()) > best[h][:2]):
                best[h] = (float(lift), int(members.sum()), int(c))
    top = sorted(best.items(), key=lambda kv: kv[1][:2], reverse=True)[:k]
    return [((h // heads_per_layer, h % heads_per_layer), c) for h, (_, _, c) in top]


def conditional_scores(scorer: FirstTokenScorer, scenarios: list[Scenario], labels: np.ndarray,
                       pairs: list[tuple[Head, int]], heads_per_layer: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per scenario, first-token hit and target log-probability with each pair's head switched
    off only where the scenario's label at that head is the pair's cluster."""
    sets = [tuple(sorted(h for h, c in pairs if labels[i, h[0] * heads_per_layer + h[1]] == c))
            for i in range(len(scenarios))]
    hits, lps = np.zeros(len(scenarios), bool), np.zeros(len(scenarios))
    for heads in set(sets):
        idx = [i for i, s in enumerate(sets) if s == heads]
        h, lp = scorer([scenarios[i] for i in idx], list(heads))
        hits[idx], lps[idx] = h, lp
    return hits, lps


def change(base: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray],
           replicates: int, seed: int) -> dict:
    """Accuracy and log-probability change of ``after`` against ``base`` on the same scenarios,
    with a paired bootstrap interval, and the flips both ways."""
    d = np.stack([after[0].astype(float) - base[0], after[1] - base[1]], 1)
    mean, lo, hi = mean_interval(d, replicates, seed)
    up, down = int((after[0] & ~base[0]).sum()), int((~after[0] & base[0]).sum())
    return {"accuracy_change": round(float(mean[0]), 4),
            "accuracy_change_ci": [round(float(lo[0]), 4), round(float(hi[0]), 4)],
            "logprob_change": round(float(mean[1]), 4),
            "incorrect_to_correct": up, "correct_to_incorrect": down, "net_flips": up - down,
            "n": int(len(d))}


def versus_random(method_change: float, random_changes: np.ndarray) -> dict:
    """Where a method's accuracy change falls among the random sets' changes."""
    return {"random_mean": round(float(random_changes.mean()), 4),
            "random_range": [round(float(np.percentile(random_changes, 2.5)), 4),
                             round(float(np.percentile(random_changes, 97.5)), 4)],
            "share_of_random_beaten": round(float((random_changes < method_change).mean()), 4)}


def evaluate(scorer: FirstTokenScorer, heldout: list[Scenario], sets: dict[str, dict[str, dict[int, list[Head]]]],
             pairs: dict[str, dict[int, list[tuple[Head, int]]]], heldout_labels: np.ndarray,
             n_layers: int, n_heads: int, cfg: InterventionConfig) -> dict:
    """The report's ``intervention.by_task`` and ``intervention.all``: every task's chosen sets
    (``sets[task][method][k]``, ``pairs[task][k]`` for ``conditional``) ablated on that task's
    held-out scenarios, beside ``cfg.random_sets`` random sets of each size."""
    tasks = np.array([s.task for s in heldout])
    base = scorer(heldout, [])
    rng = np.random.default_rng(cfg.seed)
    every = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    random_runs = {k: [scorer(heldout, [every[i] for i in rng.choice(len(every), k, replace=False)])
                       for _ in range(cfg.random_sets)]
                   for k in tqdm(cfg.sizes, desc="random sets", unit="size")}
    pooled: dict[tuple[str, int], list[np.ndarray]] = defaultdict(lambda: [[], [], []])
    by_task: dict[str, dict] = {}
    for task in tqdm(sorted(sets), desc="selected sets", unit="task"):
        sel = np.flatnonzero(tasks == task)
        scen = [heldout[i] for i in sel]
        tb = (base[0][sel], base[1][sel])
        entry: dict = {"n_heldout": int(len(sel)), "base_accuracy": round(float(tb[0].mean()), 4),
                       "random": {}, "methods": {}}
        rnd = {k: np.array([(r[0][sel].astype(float) - tb[0]).mean() for r in random_runs[k]])
               for k in cfg.sizes}
        for k, changes in rnd.items():
            entry["random"][k] = {"mean": round(float(changes.mean()), 4),
                                  "range": [round(float(np.percentile(changes, 2.5)), 4),
                                            round(float(np.percentile(changes, 97.5)), 4)]}
        for method in METHODS:
            for k in cfg.sizes:
                if method == "conditional":
                    chosen = pairs.get(task, {}).get(k, [])
                    if not chosen:
                        continue
                    after = conditional_scores(scorer, scen, heldout_labels[sel], chosen, n_heads)
                    heads = [f"{head_name(h)}@{c}" for h, c in chosen]
                else:
                    chosen_heads = sets[task].get(method, {}).get(k)
                    if not chosen_heads:
                        continue
                    after = scorer(scen, chosen_heads)
                    heads = [head_name(h) for h in chosen_heads]
                c = change(tb, after, cfg.bootstrap, cfg.seed)
                entry["methods"].setdefault(method, {})[k] = {
                    "heads": heads, **c, **versus_random(c["accuracy_change"], rnd[k])}
                pool = pooled[(method, k)]
                pool[0].append(tb[0].astype(float))
                pool[1].append(after[0].astype(float))
                pool[2].append(np.full(len(sel), task))
        by_task[task] = entry
    return {"by_task": by_task, "all": _pooled(pooled, base, tasks, random_runs, cfg)}


def _pooled(pooled: dict, base: tuple[np.ndarray, np.ndarray], tasks: np.ndarray,
            random_runs: dict[int, list], cfg: InterventionConfig) -> dict:
    """Over all tasks (each with its own heads): accuracy change with an interval resampled
    within task, beside the random sets' pooled changes."""
    from .heldout import bootstrap_weights, interval

    out: dict = {}
    for (method, k), (before, after, where) in pooled.items():
        before, after, where = np.concatenate(before), np.concatenate(after), np.concatenate(where)
        w = bootstrap_weights(where, cfg.bootstrap, cfg.seed)
        d = after - before
        rnd = np.array([r[0].astype(float).mean() - base[0].mean() for r in random_runs[k]])
        out.setdefault(method, {})[k] = {
            "base_accuracy": round(float(before.mean()), 4),
            "accuracy_change": round(float(d.mean()), 4), "accuracy_change_ci": interval(w @ d / len(d)),
            "net_flips": int(d.sum()), "n": int(len(d)), "tasks": int(len(set(where.tolist()))),
            **versus_random(float(d.mean()), rnd)}
    return out
