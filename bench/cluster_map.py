"""Is the explorer's 2-D cluster map as good when it starts from the 8-D map's principal axes?

``python -m bench.cluster_map --run RUN [--heads 6]``: for a sample of the run's heads, the
8-D UMAP and HDBSCAN clusters as ``apmae cluster`` computes them, then the 2-D display map two
ways on the same neighbour graph: UMAP's spectral start with 200 epochs (the former map) and
the principal axes of the 8-D map with ``ClusterConfig.map_epochs`` (the current one). Per
head: CPU seconds, the silhouette of the clusters on the map (how well the map keeps them
apart) and trustworthiness (how far a point's map neighbours are its embedding neighbours),
on the same 1,500 sampled points.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from apmae.atlas.cluster import exact_neighbors, jitter_duplicates, principal_axes, umap_map
from apmae.configs import ClusterConfig
from apmae.run import Run


def compare(x: np.ndarray, cfg: ClusterConfig, rng: np.random.Generator) -> dict[str, tuple]:
    import hdbscan
    from sklearn.manifold import trustworthiness
    from sklearn.metrics import silhouette_score

    neighbors, min_samples, min_size = cfg.scaled(len(x))
    knn = exact_neighbors(x, neighbors, cfg.metric)

    reduced = umap_map(x, cfg.n_components, cfg.n_epochs, "spectral", knn, neighbors, cfg)
    labels = hdbscan.HDBSCAN(min_samples=min_samples, min_cluster_size=min_size,
                             cluster_selection_method=cfg.cluster_selection).fit(reduced).labels_
    sample = rng.choice(len(x), min(1500, len(x)), replace=False)
    clustered = sample[labels[sample] >= 0]
    out = {}
    for name, epochs, init in (("spectral, 200 epochs", 200, lambda: "spectral"),
                               (f"principal axes, {cfg.map_epochs} epochs", cfg.map_epochs,
                                lambda: principal_axes(reduced, 2))):
        t = time.process_time()
        coords = umap_map(x, 2, epochs, init(), knn, neighbors, cfg)
        seconds = time.process_time() - t
        sil = (silhouette_score(coords[clustered], labels[clustered])
               if len(set(labels[clustered])) > 1 else float("nan"))
        out[name] = (seconds, sil, trustworthiness(x[sample], coords[sample], n_neighbors=10,
                                                   metric=cfg.metric))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="default")
    ap.add_argument("--heads", type=int, default=6, help="heads sampled at random")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    emb = Run(args.run).embeddings()
    keys = emb.ids()
    data = np.stack([np.asarray(emb.get(k), np.float32) for k in keys])  # [n, layers, heads, d]
    rng = np.random.default_rng(args.seed)
    layers, heads = data.shape[1:3]
    picks = rng.choice(layers * heads, min(args.heads, layers * heads), replace=False)
    cfg = ClusterConfig(cluster_selection="leaf", seed=args.seed)  # as the default build clusters
    rows: dict[str, list[tuple]] = {}
    for i in picks:
        layer, head = divmod(int(i), heads)
        x = jitter_duplicates(data[:, layer, head].astype(np.float64), cfg.seed)
        for name, row in compare(x, cfg, rng).items():
            rows.setdefault(name, []).append(row)
            print(f"L{layer}H{head}  {name:28s} {row[0]:5.2f} CPU s  silhouette {row[1]:.3f}  "
                  f"trustworthiness {row[2]:.3f}")
    print(f"run {args.run}: {len(keys)} points per head, {len(picks)} heads")
    for name, r in rows.items():
        a = np.array(r)
        print(f"mean  {name:28s} {a[:, 0].mean():5.2f} CPU s  silhouette {np.nanmean(a[:, 1]):.3f}  "
              f"trustworthiness {a[:, 2].mean():.3f}")


if __name__ == "__main__":
    main()
