"""Predict whether a completion is correct from its attention, without the ground truth.

As the paper: per task, the classes are balanced (as many incorrect as correct completions,
drawn at random) so chance is 50%, and a gradient-boosted classifier sees one *categorical*
feature per head, its cluster label. Two variants beside it: the AP-MAE embeddings themselves
(reduced by PCA inside each fold), and a baseline that uses no AP-MAE at all (per-head entropy,
attention distance, first-token and self weight of the raw pattern). Scores are out-of-fold
predictions of a stratified k-fold cross-validation: every balanced scenario is predicted once by
a model that did not train on it, which keeps small tasks measurable.
"""

from __future__ import annotations

import numpy as np

from ..configs import PredictorConfig

FEATURES = ("clusters", "embeddings", "baseline")


def balanced(y: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices with, in every group (task), as many of each class as the rarer one has."""
    keep = []
    for g in np.unique(groups):
        pos = np.flatnonzero((groups == g) & y)
        neg = np.flatnonzero((groups == g) & ~y)
        k = min(len(pos), len(neg))
        keep += [rng.choice(pos, k, replace=False), rng.choice(neg, k, replace=False)]
    return np.sort(np.concatenate(keep)) if keep else np.array([], int)


def _classifier(kind: str, cfg: PredictorConfig, n_features: int, n_samples: int):
    from sklearn.decomposition import PCA
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline

    # sklearn's default leaf of 20 samples leaves a balanced task of ~60 training scenarios
    # without a single split; scale it with the data, as the paper's CatBoost does not need to
    hgb = HistGradientBoostingClassifier(
        max_iter=cfg.max_iter, learning_rate=cfg.learning_rate, max_depth=cfg.max_depth,
        min_samples_leaf=max(2, min(20, n_samples // 10)),
        categorical_features=np.ones(n_features, bool) if kind == "clusters" else None,
        random_state=cfg.seed)
    if kind == "embeddings":
        components = min(cfg.pca_components, n_features, n_samples)
        return make_pipeline(PCA(components, random_state=cfg.seed), hgb)
    return hgb


def categorical(labels: np.ndarray) -> np.ndarray:
    """Cluster labels (−1 noise) as the small non-negative codes the classifier's categorical
    support takes: noise 0, cluster ``c`` → ``c + 1`` (at most 254 per head)."""
    return np.clip(labels + 1, 0, 254).astype(np.int64)


def cross_validate(x: np.ndarray, y: np.ndarray, kind: str, cfg: PredictorConfig) -> dict:
    """Out-of-fold metrics of one feature kind on an already balanced set."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    folds = min(cfg.folds, int(min(y.sum(), (~y).sum())))
    proba = np.zeros(len(y))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=cfg.seed).split(x, y):
        model = _classifier(kind, cfg, x.shape[1], len(train)).fit(x[train], y[train])
        proba[test] = model.predict_proba(x[test])[:, 1]
    pred = proba >= 0.5
    return {"balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "accuracy": float(accuracy_score(y, pred)), "auc": float(roc_auc_score(y, proba)),
            "n_test": int(len(y)), "n_correct": int(y.sum())}
