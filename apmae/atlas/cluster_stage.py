"""``apmae cluster``: every head of a run clustered (:mod:`apmae.atlas.cluster`) into SQL.

A head's facts are its summary, its clusters (with the medoid vector and radius that place new
patterns in them) and each scenario's membership. :func:`store_head` is their one writer: one
transaction per head that writes that head's rows and no other's, so a kill between heads
leaves whole heads or none, and the writes grow linearly with the heads. They are read back by :func:`head_assignments`
(the live explorer's assignment of new patterns) and :func:`membership_labels` (the
predictor's and the sweep's cluster features); the explorer's pages read the rest.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql import ColumnElement
from tqdm import tqdm

from ..configs import ClusterConfig
from ..db import models as m
from ..db.session import session_scope, upsert_rows
from ..run import Run
from .build import labels_of, scenario_ids, sync_run
from .cluster import HeadClusters, cluster_head

#: How a medoid vector is kept in ``clusters.center``: little-endian float32, as clustered.
CENTER_DTYPE = np.dtype("<f4")

#: What a head's clustering needs to place a new pattern (:func:`apmae.atlas.cluster.assign`):
#: its clusters' medoid vectors ``[k, d]``, labels ``[k]`` and radii ``[k]``, in label order.
Assignment = tuple[np.ndarray, np.ndarray, np.ndarray]


def cluster_run(run: Run, cfg: ClusterConfig, engine: Engine) -> int:
    """Cluster every head of the run; returns how many heads were (re)clustered."""
    run_id = sync_run(engine, run)
    emb = run.embeddings()
    keys = emb.ids()
    if not keys:
        raise ValueError(f"run {run.name} has no embeddings (run `apmae encode` first)")
    x = np.stack([np.asarray(emb.get(k), np.float32) for k in keys])  # [n, layers, heads, d]
    ids = scenario_ids(engine, run_id)
    tasks, correct = labels_of(engine, run_id, keys)
    settings_used = {k: v for k, v in asdict(cfg).items() if k != "workers"}  # same result either way
    fingerprint = {"config": settings_used, "scenarios": len(keys), "embeddings": emb.meta.model}
    with session_scope(engine) as session:
        db_run = session.get(m.Run, run_id)
        if (db_run.settings or {}).get("cluster") != fingerprint:
            # heads of other settings go in the transaction that records the new ones: after a
            # kill midway they must not pass for heads done with the new settings
            session.execute(delete(m.Head).where(m.Head.run_id == run_id))
            db_run.settings = {**(db_run.settings or {}), "cluster": fingerprint}
        done = {(l, h) for l, h in session.execute(select(m.Head.layer, m.Head.head).where(_whole(run_id)))}
    heads = [(l, h) for l in range(x.shape[1]) for h in range(x.shape[2]) if (l, h) not in done]
    for (layer, head), hc in tqdm(cluster_heads(x, heads, cfg), total=len(heads), desc="cluster",
                                  unit="head"):
        store_head(engine, run_id, layer, head, hc, keys, ids, tasks, correct)
    return len(heads)


def _whole(run_id: int) -> ColumnElement[bool]:
    """The run's heads whose every cluster can place a new pattern. A head is written whole
    (:func:`store_head`); only one clustered before medoids moved into SQL (migration 0006)
    lacks them, and is clustered again."""
    lacking = select(m.Cluster.head_id).where(m.Cluster.label != -1, m.Cluster.center.is_(None))
    return (m.Head.run_id == run_id) & m.Head.id.not_in(lacking)


def cluster_heads(x: np.ndarray, heads: list[tuple[int, int]], cfg: ClusterConfig
                  ) -> Iterator[tuple[tuple[int, int], HeadClusters]]:
    """Each head's clustering as it finishes: in ``cfg.workers`` processes (one per core by
    default; UMAP with a fixed seed and HDBSCAN each use one core), or inline for one."""
    workers = min(cfg.workers or os.cpu_count() or 1, len(heads))
    if workers <= 1:
        yield from (((l, h), cluster_head(x[:, l, h], cfg)) for l, h in heads)
        return
    # spawn: the parent has torch's thread pools, which a forked child must not inherit
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(cluster_head, x[:, l, h], cfg): (l, h) for l, h in heads}
        for future in as_completed(futures):
            yield futures[future], future.result()


def store_head(engine: Engine, run_id: int, layer: int, head: int, hc: HeadClusters,
               keys: list[str], ids: dict[str, int], tasks: np.ndarray, correct: np.ndarray) -> None:
    """One head's summary, clusters (medoid vectors and radii included) and memberships, in
    one transaction: only this head's rows are written."""
    with session_scope(engine) as session:
        upsert_rows(session, m.Head, [{"run_id": run_id, "layer": layer, "head": head,
                                       "n_clusters": hc.n_clusters, "noise_share": hc.noise_share,
                                       "importance": None}],
                    ["run_id", "layer", "head"], ["n_clusters", "noise_share"])
        head_id = session.scalar(select(m.Head.id).where(
            m.Head.run_id == run_id, m.Head.layer == layer, m.Head.head == head))
        session.execute(delete(m.Cluster).where(m.Cluster.head_id == head_id))
        placed = {int(label): i for i, label in enumerate(hc.center_labels)}
        rows = []
        for label in sorted(set(hc.labels.tolist())):
            members = np.flatnonzero(hc.labels == label)
            at = placed.get(label)
            rows.append({
                "head_id": head_id, "label": label, "size": len(members),
                "medoid_scenario_id": ids[keys[hc.medoids[label]]] if label in hc.medoids else None,
                "exemplars": [keys[i] for i in hc.exemplars.get(label, [])],
                "by_task": {t: int(c) for t, c in zip(*np.unique(tasks[members], return_counts=True))},
                "by_correct": {"correct": int(correct[members].sum()),
                               "incorrect": int((~correct[members]).sum())},
                "center": None if at is None else hc.centers[at].astype(CENTER_DTYPE).tobytes(),
                "radius": None if at is None else float(hc.radii[at])})
        session.execute(m.Cluster.__table__.insert(), rows)
        upsert_rows(session, m.Membership,
                    [{"scenario_id": ids[k], "head_id": head_id, "label": int(hc.labels[i]),
                      "x": float(hc.coords[i, 0]), "y": float(hc.coords[i, 1])}
                     for i, k in enumerate(keys)],
                    ["scenario_id", "head_id"], ["label", "x", "y"])


def head_assignments(engine: Engine, run_name: str) -> dict[tuple[int, int], Assignment]:
    """Per clustered head of the run, ``(layer, head)``, its :data:`Assignment`; empty arrays
    for a head that is all noise."""
    with session_scope(engine) as session:
        run_id = session.scalar(select(m.Run.id).where(m.Run.name == run_name))
        if run_id is None:
            return {}
        rows = session.execute(select(m.Head.layer, m.Head.head, m.Cluster.label, m.Cluster.center,
                                      m.Cluster.radius)
                               .join(m.Cluster, m.Cluster.head_id == m.Head.id).where(_whole(run_id))
                               .order_by(m.Head.layer, m.Head.head, m.Cluster.label)).all()
    placed: dict[tuple[int, int], list] = {}
    for layer, head, label, center, radius in rows:
        clusters = placed.setdefault((layer, head), [])
        if label != -1:
            clusters.append((label, np.frombuffer(center, CENTER_DTYPE), radius))
    return {key: (np.stack([c for _, c, _ in clusters]).astype(np.float32) if clusters
                  else np.empty((0, 0), np.float32),
                  np.array([label for label, _, _ in clusters], int),
                  np.array([r for _, _, r in clusters], np.float32))
            for key, clusters in placed.items()}


def membership_labels(engine: Engine, run: Run, run_id: int, keys: list[str]) -> np.ndarray:
    """Per scenario (rows in ``keys`` order), each head's cluster label, ``[n, layers * heads]``
    (−1 noise, and for a head not clustered)."""
    ids = scenario_ids(engine, run_id)
    with session_scope(engine) as session:
        heads = {hid: (l, h) for hid, l, h in session.execute(
            select(m.Head.id, m.Head.layer, m.Head.head).where(m.Head.run_id == run_id))}
        members = session.execute(select(m.Membership.scenario_id, m.Membership.head_id,
                                         m.Membership.label)
                                  .where(m.Membership.head_id.in_(list(heads)))).all()
    if not heads:
        raise ValueError(f"run {run.name} has no clusters (run `apmae cluster` first)")
    meta = run.meta()
    row = {ids[k]: i for i, k in enumerate(keys)}
    labels = np.full((len(keys), meta["layers"], meta["heads"]), -1, int)
    for sid, hid, label in members:
        if sid in row:
            labels[row[sid], heads[hid][0], heads[hid][1]] = label
    return labels.reshape(len(keys), -1)
