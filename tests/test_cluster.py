"""Clustering one head's embeddings: recovers planted blobs, survives duplicates and tiny heads."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from apmae.atlas.cluster import ClusterConfig, assign, cluster_head, jitter_duplicates


def blobs(seed: int = 0, per: int = 60, k: int = 3, d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``k`` well separated directions (cosine metric) with small noise."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 3
    truth = np.repeat(np.arange(k), per)
    return centers[truth] + rng.normal(scale=0.3, size=(k * per, d)), truth


@pytest.fixture(scope="module")
def clustered():
    x, truth = blobs()
    return x, truth, cluster_head(x, ClusterConfig())


def test_recovers_planted_blobs(clustered):
    x, truth, hc = clustered
    assert adjusted_rand_score(truth, hc.labels) >= 0.9
    assert hc.n_clusters == 3 and hc.coords.shape == (len(x), 2)
    for label, medoid in hc.medoids.items():
        assert hc.labels[medoid] == label and hc.exemplars[label][0] == medoid


def test_assignment_puts_members_back_in_their_cluster(clustered):
    x, _, hc = clustered
    clustered_points = hc.labels >= 0
    got = assign(x[clustered_points], hc.centers, hc.center_labels, hc.radii)
    assert (got == hc.labels[clustered_points]).mean() >= 0.9
    far = -10 * hc.centers.mean(0, keepdims=True)  # opposite direction of everything
    assert assign(far, hc.centers, hc.center_labels, hc.radii).tolist() == [-1]


def test_duplicates_are_jittered_deterministically():
    x = np.repeat(np.eye(4), 5, axis=0)
    j = jitter_duplicates(x, 0)
    assert len(np.unique(j, axis=0)) == len(x)
    assert np.array_equal(j, jitter_duplicates(x, 0)) and np.abs(j - x).max() < 1e-3
    x2, truth = blobs(per=30)
    hc = cluster_head(np.concatenate([x2, x2[:20]]), ClusterConfig())  # 20 exact duplicates
    assert adjusted_rand_score(np.concatenate([truth, truth[:20]]), hc.labels) >= 0.9


def test_small_heads_scale_the_settings_down():
    cfg = ClusterConfig()
    assert cfg.scaled(1000) == (20, 20, 25)
    neighbors, samples, size = cfg.scaled(40)
    assert neighbors == 20 and size == 4 and samples <= size
    hc = cluster_head(blobs(per=2, k=1)[0], cfg)  # 2 points: one cluster, no crash
    assert hc.labels.tolist() == [0, 0]
