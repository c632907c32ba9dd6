"""The correctness predictor: above chance on a planted signal, at chance on noise."""

from __future__ import annotations

import numpy as np

from apmae.atlas.predictor import balanced, categorical, cross_validate
from apmae.configs import PredictorConfig

CFG = PredictorConfig(max_iter=50)


def planted(n: int = 300, heads: int = 8, seed: int = 0, signal: bool = True):
    """Cluster labels of ``heads`` heads; with ``signal``, head 3's label (mostly) decides y."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, 4, size=(n, heads))
    y = rng.random(n) < 0.5
    if signal:
        flip = rng.random(n) < 0.1
        labels[:, 3] = np.where(y ^ flip, 2, 1)
    return categorical(labels), y


def test_balanced_subsample_evens_every_group():
    y = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0], bool)
    groups = np.array(["a"] * 5 + ["b"] * 5)
    idx = balanced(y, groups, np.random.default_rng(0))
    for g in ("a", "b"):
        sel = idx[groups[idx] == g]
        assert y[sel].sum() == (~y[sel]).sum()
    assert len(idx) == 2  # a: 1 negative, so 1 + 1; b has no positive, so none


def test_planted_signal_is_found_and_its_head_ranked_first():
    x, y = planted()
    metrics = cross_validate(x, y, "clusters", CFG)
    assert metrics["balanced_accuracy"] >= 0.8 and metrics["auc"] >= 0.8
    assert metrics["n_test"] == len(y)


def test_noise_stays_at_chance():
    x, y = planted(signal=False)
    for kind in ("clusters", "baseline"):
        metrics = cross_validate(x.astype(float) if kind == "baseline" else x, y, kind, CFG)
        assert 0.38 <= metrics["balanced_accuracy"] <= 0.62


def test_embeddings_variant_runs_through_pca():
    rng = np.random.default_rng(1)
    y = rng.random(200) < 0.5
    x = rng.normal(size=(200, 40)) + y[:, None] * 1.0
    assert cross_validate(x, y, "embeddings", CFG)["balanced_accuracy"] >= 0.8
