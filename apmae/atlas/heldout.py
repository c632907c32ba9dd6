"""Correctness prediction measured the way a claim needs: fit on the train split, score the
held-out split, every figure with a bootstrap interval and beside its baselines.

The train/test split is by directory (:func:`apmae.corpus.split_of`), the same one the default
model and AP-MAE were trained on, so the held-out scenarios come from code that no model of
the pipeline, nor the predictor, ever saw. Each feature kind is fitted once over all non-noise
tasks with the task as a categorical feature, on the natural class balance, so its output is a
probability (Brier score, reliability curve). The paper's balanced decision is kept for
balanced accuracy: a completion is called right when its probability beats its task's base
rate on the train split, which is the Bayes rule once classes are reweighted to 50/50.

The task alone separates right from wrong well (some tasks are easy), so an overall AUC says
little by itself: the within-task AUC (the mean of per-task AUCs) is the figure that says
whether the attention tells a right completion from a wrong one of the same kind.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

#: Feature kinds, in the order of the report's table. ``task_prior`` and ``lm_confidence`` are
#: baselines (the latter reads the model's output distribution, not its attention).
BASELINES = ("task_prior", "lm_confidence")
ATTENTION = ("pattern_stats", "row_stats", "clusters", "embeddings", "rows+clusters",
             "rows+embeddings")
KINDS = BASELINES + ATTENTION


@dataclass
class HeldoutConfig:
    seed: int = 0
    bootstrap: int = 1000  # resamples for every interval
    max_iter: int = 300  # boosting rounds
    learning_rate: float = 0.05
    # (max_depth, min_samples_leaf, share of columns per tree) of the boosted trees: each kind
    # is fitted with the capacity its train-split CV scores higher (ties: the first). Deep trees
    # suit the hundreds of row statistics (half their columns per tree: as good, cheaper),
    # shallow ones the model's two confidence numbers (RESULTS.md `predictor-capacity`)
    capacities: tuple[tuple[int, int, float], ...] = ((3, 20, 1.0), (6, 40, 0.5))
    l2: float = 1.0
    pca_components: int = 32  # embeddings, reduced on the train split
    cv_folds: int = 3  # train-split folds that pick the live predictor among the attention kinds
    min_per_class: int = 10  # train and test each need this many right and wrong completions
    reliability_bins: int = 10


@dataclass
class Features:
    """One feature kind's matrix over all scenarios. ``categorical`` marks label columns,
    ``reduce`` the columns PCA reduces (embeddings: fitted on the training rows only), ``head``
    the head (``layer * heads + head``) each column describes, -1 for none."""

    x: np.ndarray
    categorical: np.ndarray | None = None
    reduce: np.ndarray | None = None
    head: np.ndarray | None = None

    def __post_init__(self) -> None:
        none = np.zeros(self.x.shape[1], bool)
        self.categorical = none if self.categorical is None else self.categorical
        self.reduce = none if self.reduce is None else self.reduce
        self.head = np.full(self.x.shape[1], -1) if self.head is None else self.head

    @staticmethod
    def per_head(x: np.ndarray, n_heads: int, **kwargs) -> Features:
        """Columns grouped by head, each head's ``x.shape[1] // n_heads`` side by side."""
        return Features(x, head=np.repeat(np.arange(n_heads), x.shape[1] // n_heads), **kwargs)

    def rows(self, idx: np.ndarray) -> Features:
        return Features(self.x[idx], self.categorical, self.reduce, self.head)

    @staticmethod
    def join(*parts: Features) -> Features:
        """The parts' columns side by side (a combined kind such as ``rows+clusters``)."""
        return Features(*(np.concatenate([getattr(p, a) for p in parts], 1 if a == "x" else 0)
                          for a in ("x", "categorical", "reduce", "head")))


# --- metrics, vectorised over bootstrap replicates ---------------------------------------------


def weighted_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ROC AUC of scores ``p`` for labels ``y`` under sample weights ``w`` (``[n]`` or
    ``[replicates, n]``), ties counted half; NaN where a class has no weight."""
    w = np.atleast_2d(w).astype(float)
    order = np.argsort(p, kind="stable")
    ys, ps, ws = y[order].astype(bool), p[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])  # groups of tied scores
    pos = np.add.reduceat(ws * ys, starts, axis=1)
    neg = np.add.reduceat(ws * ~ys, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each group
    num = (pos * (below + 0.5 * neg)).sum(1)
    den = pos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def weighted_balanced_accuracy(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    w = np.atleast_2d(w).astype(float)
    y, pred = y.astype(bool), pred.astype(bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = (w * (y & pred)).sum(1) / (w * y).sum(1)
        tnr = (w * (~y & ~pred)).sum(1) / (w * ~y).sum(1)
    return 0.5 * (tpr + tnr)


def weighted_brier(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    w = np.atleast_2d(w).astype(float)
    return (w * (p - y) ** 2).sum(1) / w.sum(1)


def bootstrap_weights(groups: np.ndarray, replicates: int, seed: int) -> np.ndarray:
    """``[replicates, n]`` resampling counts, stratified by group (each task keeps its size,
    so per-task and within-task figures are resampled as they were measured)."""
    rng = np.random.default_rng(seed)
    w = np.zeros((replicates, len(groups)))
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        w[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1 / len(idx)), size=replicates)
    return w


def interval(values: np.ndarray) -> list[float] | None:
    """The 95% percentile interval of bootstrap values (NaN replicates dropped)."""
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def reliability(y: np.ndarray, p: np.ndarray, bins: int) -> list[dict]:
    """Calibration: per bin of predicted probability, its mean, the observed rate and count."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return [{"predicted": round(float(p[which == b].mean()), 4),
             "observed": round(float(y[which == b].mean()), 4), "n": int((which == b).sum())}
            for b in range(bins) if (which == b).any()]


def score_table(y: np.ndarray, p: np.ndarray, tasks: np.ndarray, prior: dict[str, float],
                cfg: HeldoutConfig) -> dict:
    """Held-out metrics of probabilities ``p``, each with its 95% bootstrap interval: AUC,
    within-task AUC (mean of per-task AUCs), balanced accuracy (called right above the task's
    train base rate), Brier score, a reliability curve, and the same per task. A task counts as
    above chance only when its AUC interval lies above 0.5."""
    y = y.astype(bool)
    w = bootstrap_weights(tasks, cfg.bootstrap, cfg.seed)
    ones = np.ones(len(y))
    pred = p > np.array([prior[t] for t in tasks])
    per_task, task_aucs, task_reps = {}, [], []
    for t in sorted(set(tasks.tolist())):
        sel = tasks == t
        auc_t, reps = weighted_auc(y[sel], p[sel], ones[sel])[0], weighted_auc(y[sel], p[sel], w[:, sel])
        per_task[t] = {"n": int(sel.sum()), "n_correct": int(y[sel].sum())}
        if np.isnan(auc_t):
            per_task[t]["auc"] = None
            per_task[t]["skipped"] = "one class only in the held-out scenarios"
            continue
        ci = interval(reps)
        per_task[t].update(auc=round(float(auc_t), 4), auc_ci=ci,
                           above_chance=bool(ci is not None and ci[0] > 0.5),
                           balanced_accuracy=round(float(
                               weighted_balanced_accuracy(y[sel], pred[sel], ones[sel])[0]), 4))
        task_aucs.append(auc_t)
        task_reps.append(reps)

    def point_ci(fn, *args) -> tuple[float, list[float] | None]:
        return round(float(fn(*args, ones)[0]), 4), interval(fn(*args, w))

    auc, auc_ci = point_ci(weighted_auc, y, p)
    ba, ba_ci = point_ci(weighted_balanced_accuracy, y, pred)
    brier, brier_ci = point_ci(weighted_brier, y, p)
    within = float(np.mean(task_aucs)) if task_aucs else float("nan")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate that drew one class only
        within_ci = interval(np.nanmean(np.stack(task_reps), 0)) if task_reps else None
    return {"auc": auc, "auc_ci": auc_ci,
            "within_task_auc": round(within, 4) if task_aucs else None, "within_task_auc_ci": within_ci,
            "balanced_accuracy": ba, "balanced_accuracy_ci": ba_ci, "brier": brier,
            "brier_ci": brier_ci, "n_test": int(len(y)), "n_correct": int(y.sum()),
            "tasks_above_chance": sorted(t for t, v in per_task.items() if v.get("above_chance")),
            "reliability": reliability(y, p, cfg.reliability_bins), "by_task": per_task}


# --- fitting ----------------------------------------------------------------------------------


def task_codes(tasks: np.ndarray, known: list[str]) -> np.ndarray:
    """Tasks as the small categorical codes the classifier takes (unknown: one past the last)."""
    index = {t: i for i, t in enumerate(known)}
    return np.array([index.get(t, len(known)) for t in tasks], np.int64)


class Classifier:
    """A fitted predictor of one kind: the task as a categorical column beside the kind's
    features (embeddings reduced by PCA fitted on the training rows)."""

    def __init__(self, kind: str, cfg: HeldoutConfig, tasks: list[str],
                 capacity: Sequence[float] | None = None) -> None:
        self.kind, self.cfg, self.tasks = kind, cfg, tasks
        self.max_depth, self.min_samples_leaf, self.colsample = capacity or cfg.capacities[0]
        self.pca = None
        self.model = None

    def _design(self, f: Features, tasks: np.ndarray, fit: bool) -> tuple[np.ndarray, np.ndarray]:
        x, cat, emb = f.x.astype(np.float32), f.categorical, f.reduce
        if emb.any():
            if fit:
                from sklearn.decomposition import PCA

                self.pca = PCA(min(self.cfg.pca_components, int(emb.sum()), len(x)),
                               random_state=self.cfg.seed).fit(x[:, emb])
            x = np.concatenate([x[:, ~emb], self.pca.transform(x[:, emb])], 1)
            cat = np.concatenate([cat[~emb], np.zeros(self.pca.n_components_, bool)])
        x = np.concatenate([x, task_codes(tasks, self.tasks)[:, None]], 1)
        return x, np.r_[cat, True]

    def fit(self, f: Features, tasks: np.ndarray, y: np.ndarray) -> Classifier:
        import lightgbm

        x, cat = self._design(f, tasks, fit=True)
        # LightGBM rather than sklearn's boosting: its TreeSHAP (pred_contrib) is exact for
        # categorical splits too, which the head importance (apmae.atlas.importance) reads
        self.model = lightgbm.LGBMClassifier(
            n_estimators=self.cfg.max_iter, learning_rate=self.cfg.learning_rate,
            max_depth=self.max_depth, num_leaves=2 ** self.max_depth,
            min_child_samples=self.min_samples_leaf, reg_lambda=self.cfg.l2,
            min_data_per_group=self.min_samples_leaf, cat_smooth=self.cfg.l2,
            colsample_bytree=self.colsample,
            random_state=self.cfg.seed, deterministic=True, force_col_wise=True, n_jobs=1,
            verbose=-1).fit(x, y, categorical_feature=[int(i) for i in np.flatnonzero(cat)])
        return self

    def predict(self, f: Features, tasks: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(self._design(f, tasks, fit=False)[0])[:, 1]

    def contributions(self, f: Features, tasks: np.ndarray) -> np.ndarray:
        """Exact TreeSHAP values in log-odds, ``[n, columns of f]``: what each of ``f``'s
        columns adds to each prediction. A column reduced by PCA gets NaN (its share is spread
        over components that mix columns); the task's share is left out."""
        x, _ = self._design(f, tasks, fit=False)
        shap = self.model.predict(x, pred_contrib=True)
        out = np.full(f.x.shape, np.nan)
        out[:, ~f.reduce] = shap[:, :int((~f.reduce).sum())]
        return out


def _prior(tasks: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {t: float(y[tasks == t].mean()) for t in sorted(set(tasks.tolist()))}


def cv_within_task_auc(kind: str, f: Features, tasks: np.ndarray, y: np.ndarray,
                       cfg: HeldoutConfig, capacity: Sequence[float]) -> float:
    """Within-task AUC of out-of-fold scores on the train split alone (stratified by task and
    class): how each kind's capacity and the live predictor are chosen without looking at the
    held-out split."""
    from sklearn.model_selection import StratifiedKFold

    strata = np.char.add(tasks.astype(str), y.astype(int).astype(str))
    folds = min(cfg.cv_folds, int(np.unique(strata, return_counts=True)[1].min()))
    if folds < 2:
        return float("nan")
    known = sorted(set(tasks.tolist()))
    p = np.zeros(len(y))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=cfg.seed).split(f.x, strata):
        model = Classifier(kind, cfg, known, capacity).fit(f.rows(tr), tasks[tr], y[tr])
        p[te] = model.predict(f.rows(te), tasks[te])
    aucs = [weighted_auc(y[tasks == t], p[tasks == t], np.ones((tasks == t).sum()))[0]
            for t in known]
    return float(np.nanmean(aucs))


def paired_difference(y: np.ndarray, tasks: np.ndarray, a: np.ndarray, b: np.ndarray,
                      weights: np.ndarray) -> dict:
    """AUC of scores ``a`` minus that of ``b`` on the same scenarios, overall and within task
    (mean of per-task AUCs), each with a 95% interval from the same bootstrap replicates."""
    def both(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        overall = weighted_auc(y, a, w) - weighted_auc(y, b, w)
        per_task = [weighted_auc(y[tasks == t], a[tasks == t], w[..., tasks == t])
                    - weighted_auc(y[tasks == t], b[tasks == t], w[..., tasks == t])
                    for t in np.unique(tasks) if 0 < y[tasks == t].sum() < (tasks == t).sum()]
        return overall, np.nanmean(per_task, 0) if per_task else np.full_like(overall, np.nan)
    point, reps = both(np.ones(len(y))), both(weights)

    def figure(v: float) -> float | None:
        return None if np.isnan(v) else round(float(v), 4)
    return {"auc": figure(point[0][0]), "auc_ci": interval(reps[0]),
            "within_task_auc": figure(point[1][0]), "within_task_auc_ci": interval(reps[1])}


def better_capacity(cv_auc: dict[tuple, float]) -> tuple:
    """The capacity with the highest train-split CV score (:func:`cv_within_task_auc`); ties,
    and folds too small to score (NaN), go to the earlier, simpler one."""
    return max(cv_auc, key=lambda c: np.nan_to_num(cv_auc[c], nan=-1))


def chosen_capacity(kind: str, f: Features, tasks: np.ndarray, y: np.ndarray,
                    cfg: HeldoutConfig) -> tuple:
    """:func:`better_capacity` of ``kind`` on these (train-split) rows, one fit at a time."""
    return better_capacity({tuple(c): cv_within_task_auc(kind, f, tasks, y, cfg, c) for c in cfg.capacities})


def evaluate_heldout(features: dict[str, Features], tasks: np.ndarray, y: np.ndarray,
                     split: np.ndarray, cfg: HeldoutConfig) -> dict:
    """Every kind in ``features`` (plus ``task_prior``) fitted on ``split == "train"`` and
    scored on ``split == "test"``; noise scenarios take no part. Returns the report's
    ``predictor.heldout`` section: ``{kinds: {kind: score_table | skipped}, best, ...}``, and
    each kind's held-out probabilities ``scores[kind]`` of the rows ``test``."""
    y = y.astype(bool)
    real = tasks != "noise"
    train, test = np.flatnonzero(real & (split == "train")), np.flatnonzero(real & (split == "test"))
    for name, idx in (("train", train), ("held-out", test)):
        pos = int(y[idx].sum())
        if min(pos, len(idx) - pos) < cfg.min_per_class:
            return {"skipped": f"the {name} split has {pos} right and {len(idx) - pos} wrong "
                               f"completions: fewer than {cfg.min_per_class} of one class"}
    prior = _prior(tasks[train], y[train])
    # a task the train split never saw has no base rate: the overall one stands in
    overall = float(y[train].mean())
    test_prior = {t: prior.get(t, overall) for t in set(tasks[test].tolist())}
    kinds: dict[str, dict] = {"task_prior": {
        **score_table(y[test], np.array([test_prior[t] for t in tasks[test]]), tasks[test],
                      test_prior, cfg), "attention": False}}
    known = sorted(set(tasks[train].tolist()))

    def held_out_scores(kind: str, capacity: Sequence[float]) -> np.ndarray:
        f = features[kind]
        return Classifier(kind, cfg, known, capacity).fit(f.rows(train), tasks[train], y[train]).predict(
            f.rows(test), tasks[test])

    # every fit is single-threaded and LightGBM trains outside the GIL: one fit per core
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        cv = {(k, tuple(c)): pool.submit(cv_within_task_auc, k, features[k].rows(train), tasks[train],
                                         y[train], cfg, c)
              for k in features for c in cfg.capacities}
        cv_auc = {key: job.result() for key, job in cv.items()}
        capacity = {k: better_capacity({tuple(c): cv_auc[(k, tuple(c))] for c in cfg.capacities})
                    for k in features}
        fitted = {kind: pool.submit(held_out_scores, kind, capacity[kind]) for kind in features}
        scores = {kind: job.result() for kind, job in fitted.items()}
    candidates = {k: cv_auc[(k, capacity[k])] for k in features if k in ATTENTION}
    for kind, p in scores.items():
        kinds[kind] = {**score_table(y[test], p, tasks[test], test_prior, cfg),
                       "attention": kind in ATTENTION, "capacity": list(capacity[kind])}
    # ties go to the simpler kind, earlier in ATTENTION
    best = max(candidates, key=lambda k: (np.nan_to_num(candidates[k], nan=-1), -ATTENTION.index(k))
               ) if candidates else None
    if best and "lm_confidence" in scores:  # is the attention above the model's own confidence?
        kinds[best]["minus_lm_confidence"] = paired_difference(
            y[test], tasks[test], scores[best], scores["lm_confidence"],
            bootstrap_weights(tasks[test], cfg.bootstrap, cfg.seed))
    return {"kinds": kinds, "best": best,
            "selection": {"rule": f"highest within-task AUC of {cfg.cv_folds}-fold out-of-fold "
                                  "scores on the train split (the held-out split is not looked at), "
                                  "each kind at its better capacity by the same rule",
                          "train_cv_within_task_auc": {k: round(v, 4) for k, v in candidates.items()}},
            "n_train": int(len(train)), "n_test": int(len(test)), "train_prior": prior,
            "test": test, "scores": scores}
