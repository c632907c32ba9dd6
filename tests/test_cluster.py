"""Clustering one head's embeddings: recovers planted blobs, survives duplicates and tiny heads."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from apmae.atlas.cluster import assign, cluster_head, exact_neighbors, jitter_duplicates, principal_axes
from apmae.configs import ClusterConfig


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


def test_the_map_keeps_clusters_apart(clustered):
    """The 2-D map (started from the 8-D map's principal axes) shows the blobs apart."""
    from sklearn.metrics import silhouette_score

    _, truth, hc = clustered
    assert silhouette_score(hc.coords, truth) > 0.5


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_neighbours_are_exact_with_each_point_first(metric):
    from sklearn.neighbors import NearestNeighbors

    x = blobs(per=50, d=8)[0]
    x = np.concatenate([x, x[:5] + 1e-12])  # near-duplicates: a point must still come first
    idx, dist, _ = exact_neighbors(x, 7, metric, chunk=64)
    assert (idx[:, 0] == np.arange(len(x))).all() and (dist[:, 0] == 0).all()
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=7, metric=metric, algorithm="brute").fit(x).kneighbors(x)
    assert np.allclose(dist, ref_dist, atol=1e-5)
    rest = [set(a) == set(b) for a, b in zip(idx[:, 1:].tolist(), ref_idx[:, 1:].tolist())]
    assert np.mean(rest) > 0.95  # ties among near-duplicates may order differently


def test_principal_axes_do_not_depend_on_sign_or_order():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * [5, 3, 1, 0.5, 0.1]
    p = principal_axes(x, 2)
    assert p.shape == (200, 2) and abs(np.corrcoef(p[:, 0], x[:, 0])[0, 1]) > 0.99
    assert np.allclose(principal_axes(-x, 2), -p)  # the same axes, whatever sign the SVD picks


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
