"""Which heads matter for a task, measured two ways that answer different questions.

- **SHAP** (what the paper ranks heads by): how much a head's attention moves the correctness
  predictor's output. Read from the exact TreeSHAP values of the ``rows+clusters`` predictor (the
  best kind whose every column belongs to one head), fitted on the train split. Per task, two
  figures over the task's train-split scenarios: ``shap_abs``, the mean absolute contribution
  (how much the predictor listens to the head), and ``shap``, the mean signed contribution over
  the *wrong* completions (negative: the head's pattern marks a failure, the paper's "most
  negative" heads). This ranks what *predicts* correctness, not what the model needs.
- **Causal** (what an intervention needs): switch the head off alone and score the task's
  train-split scenarios again; ``causal_accuracy`` is the change of first-token accuracy,
  ``causal_logprob`` the change of the target's first-token log-probability (positive: the
  model does better without the head). One ablated pass per head costs what a whole model's
  forward costs, so a model with more heads than :func:`candidates` allows has only its
  candidates measured; the other heads have no causal figure (NaN here, no row in SQL).

Every figure carries a 95% bootstrap interval over the scenarios it was measured on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ..scenarios import Scenario
from .sweep import FirstTokenScorer, Head

MEASURES = ("shap_abs", "shap", "causal_accuracy", "causal_logprob")


@dataclass
class HeadEffects:
    """One measure for every head on one task: the point estimate and its interval (``[heads]``
    arrays, heads in ``layer * heads_per_layer + head`` order) over ``n`` scenarios."""

    measure: str
    task: str
    value: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: int

    def rows(self, heads_per_layer: int) -> list[dict]:
        """One SQL row per measured head (``apmae.db.models.HeadEffect`` without its run)."""
        return [{"task": self.task, "measure": self.measure, "layer": i // heads_per_layer,
                 "head": i % heads_per_layer, "value": float(v), "lo": float(a), "hi": float(b),
                 "n": self.n}
                for i, (v, a, b) in enumerate(zip(self.value, self.lo, self.hi)) if not np.isnan(v)]


def mean_interval(values: np.ndarray, replicates: int, seed: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means of ``values`` (``[n, k]``) and their 95% bootstrap interval (rows resampled)."""
    n = len(values)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n, np.full(n, 1 / n), size=replicates) / n  # [replicates, n]
    reps = w @ values
    return values.mean(0), np.percentile(reps, 2.5, axis=0), np.percentile(reps, 97.5, axis=0)


def groups(tasks: np.ndarray) -> dict[str, np.ndarray]:
    """Each task's rows, and ``all`` of them pooled."""
    return {**{t: tasks == t for t in sorted(set(tasks.tolist()))}, "all": np.ones(len(tasks), bool)}


def per_head(contributions: np.ndarray, head_of_column: np.ndarray, n_heads: int) -> np.ndarray:
    """``[n, n_heads]``: each head's share of each prediction, summed over its columns
    (columns of no head, ``-1``, and NaN ones left out)."""
    out = np.zeros((len(contributions), n_heads))
    ok = (head_of_column >= 0) & ~np.isnan(contributions).any(0)
    np.add.at(out.T, head_of_column[ok], contributions[:, ok].T)
    return out


def shap_effects(by_head: np.ndarray, tasks: np.ndarray, y: np.ndarray, replicates: int,
                 seed: int) -> list[HeadEffects]:
    """``shap_abs`` and ``shap`` (see the module's docstring) per task from per-head SHAP
    values ``[n, heads]`` of train-split scenarios; a task with no wrong completion has no
    ``shap``."""
    out = []
    for task, sel in groups(tasks).items():
        out.append(HeadEffects("shap_abs", task, *mean_interval(np.abs(by_head[sel]), replicates, seed),
                               int(sel.sum())))
        wrong = sel & ~y.astype(bool)
        if wrong.any():
            out.append(HeadEffects("shap", task, *mean_interval(by_head[wrong], replicates, seed),
                                   int(wrong.sum())))
    return out


def candidates(shap_abs: np.ndarray | None, total: int, limit: int, seed: int
               ) -> tuple[np.ndarray, str]:
    """Which of ``total`` heads get a single-head ablation, and why: every head when there are
    at most ``limit``; else the ``limit`` heads the correctness predictor listens to most
    (``shap_abs`` over all tasks, the paper's ranking), else, where no predictor could be fitted,
    a seeded random sample. Head indices ascending."""
    if total <= limit:
        return np.arange(total), "all"
    if shap_abs is not None:
        return np.sort(np.argsort(-shap_abs, kind="stable")[:limit]), "shap_abs"
    return np.sort(np.random.default_rng(seed).choice(total, limit, replace=False)), "random"


@torch.inference_mode()
def single_head_scores(scorer: FirstTokenScorer, scenarios: list[Scenario], heads: list[Head]
                       ) -> tuple[np.ndarray, np.ndarray]:
    """First-token hits and target log-probabilities, ``[1 + len(heads), scenarios]``: row 0
    with nothing ablated, row ``1 + i`` with ``heads[i]`` alone switched off."""
    sets = [[]] + [[head] for head in heads]
    hits, lps = zip(*(scorer(scenarios, heads)
                      for heads in tqdm(sets, desc="single-head ablations", unit="head")))
    return np.stack(hits), np.stack(lps)


def causal_effects(hits: np.ndarray, logprobs: np.ndarray, tasks: np.ndarray, measured: np.ndarray,
                   total: int, replicates: int, seed: int) -> list[HeadEffects]:
    """``causal_accuracy`` and ``causal_logprob`` per task from :func:`single_head_scores` of
    the heads ``measured`` (indices into ``total``; the others NaN): each head's change
    against row 0, paired per scenario."""
    d_hit = (hits[1:].astype(float) - hits[0].astype(float)).T  # [scenarios, measured]
    d_lp = (logprobs[1:] - logprobs[0]).T
    out = []
    for task, sel in groups(tasks).items():
        for measure, d in (("causal_accuracy", d_hit), ("causal_logprob", d_lp)):
            full = np.full((3, total), np.nan)
            full[:, measured] = mean_interval(d[sel], replicates, seed)
            out.append(HeadEffects(measure, task, *full, int(sel.sum())))
    return out
