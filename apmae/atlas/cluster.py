"""Recurring patterns of one head: UMAP then HDBSCAN over its embeddings (pure functions).

The paper's settings — UMAP to 8 dimensions (20 neighbours, min_dist 0.05, cosine), HDBSCAN
(min_samples 20, min_cluster_size 25), label −1 for noise — are the defaults; for heads with
few points they shrink so that a cluster can still form. Both UMAP maps (8-D for HDBSCAN, 2-D
for the explorer) share one exact neighbour graph: much faster than UMAP's own neighbour search.
The 8-D map runs 200 epochs, with clusters that agree as well with UMAP's default 500 epochs as
those agree with each other. The 2-D map, only for display, starts from the 8-D map's two
principal axes instead of a second spectral embedding and needs half the epochs to separate
the clusters as well (bench/RESULTS.md `cluster-map`). Exact duplicate embeddings (identical
patterns) get a tiny deterministic jitter, as the paper does, since UMAP's neighbour graph
breaks on zero distances.

New patterns are assigned to a head's clusters by nearest medoid in embedding space (cosine),
as noise beyond the cluster's radius: plain arrays, no pickled estimators to trust or
version, and it is what the live explorer needs for one pattern at a time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..configs import ClusterConfig


@dataclass
class HeadClusters:
    """One head's clustering: per point, its label and 2-D map position;
    per cluster, medoid and exemplars (point indices) and the assignment arrays."""

    labels: np.ndarray  # [n] int, -1 noise
    coords: np.ndarray  # [n, 2] float32
    medoids: dict[int, int] = field(default_factory=dict)
    exemplars: dict[int, list[int]] = field(default_factory=dict)
    centers: np.ndarray | None = None  # [k, d] unit vectors of the medoids, label order
    center_labels: np.ndarray | None = None  # [k]
    radii: np.ndarray | None = None  # [k] cosine distance

    @property
    def n_clusters(self) -> int:
        return int(len(set(self.labels.tolist()) - {-1}))

    @property
    def noise_share(self) -> float:
        return float((self.labels == -1).mean()) if len(self.labels) else 0.0


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def jitter_duplicates(x: np.ndarray, seed: int) -> np.ndarray:
    """``x`` with every repeated row (after its first occurrence) nudged by 1e-4 of the scale."""
    _, first, inverse = np.unique(x, axis=0, return_index=True, return_inverse=True)
    dup = np.ones(len(x), bool)
    dup[first] = False
    if not dup.any():
        return x
    out = x.astype(np.float64, copy=True)
    scale = float(np.abs(x).mean()) or 1.0
    out[dup] += np.random.default_rng(seed).normal(0, 1e-4 * scale, (int(dup.sum()), x.shape[1]))
    return out


def cluster_head(x: np.ndarray, cfg: ClusterConfig) -> HeadClusters:
    """Cluster ``x`` (``[n, d]`` embeddings of one head)."""
    import hdbscan

    x = jitter_duplicates(np.asarray(x, np.float64), cfg.seed)
    n = len(x)
    neighbors, min_samples, min_size = cfg.scaled(n)
    if n < 4:  # too few points for a neighbour graph: one cluster
        labels, coords = np.zeros(n, int), np.zeros((n, 2), np.float32)
        return _summarise(x, labels, coords, cfg)
    knn = exact_neighbors(x, neighbors, cfg.metric) if n < cfg.exact_knn_below else None
    reduced = umap_map(x, min(cfg.n_components, n - 2), cfg.n_epochs, "spectral", knn, neighbors, cfg)
    coords = umap_map(x, 2, cfg.map_epochs, principal_axes(reduced, 2), knn, neighbors, cfg)
    fit = hdbscan.HDBSCAN(min_samples=min_samples, min_cluster_size=min_size,
                          cluster_selection_method=cfg.cluster_selection, allow_single_cluster=True).fit(reduced)
    return _summarise(x, fit.labels_.astype(int), coords.astype(np.float32), cfg)


def umap_map(x: np.ndarray, k: int, epochs: int, init: str | np.ndarray,
             knn: tuple | None, neighbors: int, cfg: ClusterConfig) -> np.ndarray:
    """``x`` laid out in ``k`` dimensions by UMAP with the head's settings, on the neighbour
    graph ``knn`` (:func:`exact_neighbors`; None: UMAP searches), from ``init``."""
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs overridden by random_state; spectral fallbacks
        return umap.UMAP(n_components=k, n_neighbors=neighbors, min_dist=cfg.min_dist,
                         metric=cfg.metric, random_state=cfg.seed, n_epochs=epochs, init=init,
                         precomputed_knn=knn or (None, None, None)).fit_transform(x)


def principal_axes(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` projected on its ``k`` leading principal axes, each axis's sign fixed (its largest
    loading positive) so that the result does not depend on the SVD's sign choice."""
    centred = x - x.mean(0)
    axes = np.linalg.svd(centred, full_matrices=False)[2][:k]
    axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(1)])[:, None]
    return centred @ axes.T


def exact_neighbors(x: np.ndarray, k: int, metric: str, chunk: int = 2048
                    ) -> tuple[np.ndarray, np.ndarray, None]:
    """UMAP's ``precomputed_knn``: the exact ``k`` nearest neighbours by brute force, computed
    once for both maps, each point its own first neighbour (as UMAP expects, even when a
    jittered duplicate lies at distance ~0). UMAP's own approximate search took most of a
    head's time."""
    if metric == "cosine":  # one float32 matrix product per chunk
        u = _unit(x).astype(np.float32)
        dist_of = lambda rows: 1.0 - u[rows] @ u.T  # noqa: E731
    else:
        from sklearn.metrics import pairwise_distances

        dist_of = lambda rows: pairwise_distances(x[rows], x, metric=metric)  # noqa: E731
    n = len(x)
    idx, dist = np.empty((n, k), np.int64), np.empty((n, k), np.float32)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        d = dist_of(rows)
        d[np.arange(len(rows)), rows] = -np.inf  # self first
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        near = np.take_along_axis(d, part, 1)
        order = np.argsort(near, axis=1, kind="stable")
        idx[rows] = np.take_along_axis(part, order, 1)
        dist[rows] = np.maximum(np.take_along_axis(near, order, 1), 0)
    return idx, dist, None


def _summarise(x: np.ndarray, labels: np.ndarray, coords: np.ndarray, cfg: ClusterConfig) -> HeadClusters:
    """Medoids, exemplars and assignment radii of each cluster (cosine distance)."""
    out = HeadClusters(labels, coords)
    unit = _unit(x)
    centers, center_labels, radii = [], [], []
    for label in sorted(set(labels.tolist()) - {-1}):
        members = np.flatnonzero(labels == label)
        dist = 1 - unit[members] @ unit[members].T
        medoid = members[int(dist.sum(1).argmin())]
        to_medoid = 1 - unit[members] @ unit[medoid]
        out.medoids[label] = int(medoid)
        out.exemplars[label] = [int(i) for i in members[np.argsort(to_medoid, kind="stable")][:cfg.exemplars]]
        centers.append(unit[medoid])
        center_labels.append(label)
        radii.append(float(np.quantile(to_medoid, cfg.radius_quantile)) if len(members) > 1 else 0.0)
    d = x.shape[1]
    out.centers = np.array(centers, np.float32).reshape(-1, d)
    out.center_labels = np.array(center_labels, int)
    out.radii = np.array(radii, np.float32)
    return out


def assign(x: np.ndarray, centers: np.ndarray, center_labels: np.ndarray,
           radii: np.ndarray) -> np.ndarray:
    """Labels of new embeddings ``x [m, d]``: the nearest medoid's, or −1 beyond its radius."""
    if len(centers) == 0:
        return np.full(len(x), -1, int)
    dist = 1 - _unit(np.asarray(x, np.float32)) @ centers.T
    nearest = dist.argmin(1)
    within = dist[np.arange(len(x)), nearest] <= radii[nearest] + 1e-6
    return np.where(within, center_labels[nearest], -1)
