"""Which heads behave alike: each head's nearest heads by the distribution of its patterns, in
one run or between two runs (another model, another head count).

Two measures, both over every encoded scenario of a run:

- ``embedding``: 1 − cosine similarity of the heads' mean AP-MAE embeddings. Only meaningful
  between runs whose embeddings come from the same AP-MAE (:func:`comparable`), since another
  autoencoder has another embedding space.
- ``profile``: Euclidean distance between heads' *pattern profiles*, model-agnostic statistics
  that :mod:`apmae.atlas.encode` keeps for every scenario: the mean and the spread over
  scenarios of each whole-pattern statistic (entropy, distance, first-token and self weight)
  and the mean of each predicting-row statistic (:data:`apmae.atlas.rows.ROW_STATS`). Entropies
  are divided by ``log(window)`` and distances by the window, so runs with different windows
  compare; each feature is then standardised over the heads of both runs together, so no
  feature dominates by its unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..run import Run
from ..scenarios import read_scenarios
from ..store.arrays import ArrayStore
from .encode import STATS
from .rows import ROW_STATS

MEASURES = ("embedding", "profile")


class SimilarError(ValueError):
    """A run lacks what a measure reads; the message says how to build it."""


class Incomparable(SimilarError):
    """Two runs' vectors live in different spaces; the message says why."""


@dataclass(frozen=True)
class HeadVectors:
    """One vector per head of one run: ``values[layer, head]``, over ``n`` scenarios."""

    run: str
    values: np.ndarray  # [layers, heads, features]
    n: int
    source: str  # what made them: the AP-MAE's identity, or "profile"


def _stack(store: ArrayStore) -> np.ndarray:
    keys = store.ids()
    if not keys:
        raise SimilarError(f"{store.root} is empty")
    return np.stack([np.asarray(store.get(k), np.float32) for k in keys])


def _store(run: Run, name: str) -> ArrayStore:
    """``run``'s store ``name`` (``embeddings``, ``pattern_stats``, ``row_stats``: written by
    :mod:`apmae.atlas.encode`), which must exist."""
    try:
        return getattr(run, name)()
    except FileNotFoundError:
        raise SimilarError(f"run {run.name} has no {name} "
                           f"(run `apmae encode --run {run.name}`)") from None


def mean_embeddings(run: Run) -> HeadVectors:
    """Each head's mean AP-MAE embedding over the run's encoded scenarios."""
    store = _store(run, "embeddings")
    x = _stack(store)
    return HeadVectors(run.name, x.mean(0), len(x), store.meta.model)


def profiles(run: Run) -> HeadVectors:
    """Each head's pattern profile (module docstring), before standardisation."""
    stats = _stack(_store(run, "pattern_stats"))  # [n, L, H, 4]
    rows = _stack(_store(run, "row_stats"))  # [n, L, H, 10]
    window = _window(run)
    for block, names in ((stats, STATS), (rows, ROW_STATS)):
        block[..., names.index("entropy")] /= np.log(window)
        block[..., names.index("distance")] /= window
    values = np.concatenate([stats.mean(0), stats.std(0), rows.mean(0)], -1)
    return HeadVectors(run.name, values, len(stats), "profile")


def _window(run: Run) -> int:
    """The run's prompt length, from its first scenario."""
    try:
        first = next(read_scenarios(run.scenarios_source), None)
    except (OSError, ValueError) as e:
        raise SimilarError(f"run {run.name}'s scenarios cannot be read: {e}") from None
    if first is None:
        raise SimilarError(f"run {run.name} has no scenarios")
    return first.window


def comparable(a: HeadVectors, b: HeadVectors) -> None:
    """Raise :class:`Incomparable` unless ``a`` and ``b`` live in one space."""
    if a.source != b.source:
        raise Incomparable(f"runs {a.run} and {b.run} were embedded by different AP-MAEs "
                           f"({a.source} vs {b.source}); compare them by profile")
    if a.values.shape[-1] != b.values.shape[-1]:
        raise Incomparable(f"runs {a.run} and {b.run} have vectors of different widths")


def nearest(a: HeadVectors, layer: int, head: int, b: HeadVectors, k: int, measure: str
            ) -> list[dict]:
    """The ``k`` heads of ``b`` nearest to head ``(layer, head)`` of ``a`` by ``measure``
    (itself left out when ``a`` is ``b``), nearest first: ``{layer, head, distance}``."""
    if measure not in MEASURES:
        raise Incomparable(f"unknown measure {measure!r}; known: {', '.join(MEASURES)}")
    comparable(a, b)
    L, H, F = b.values.shape
    others = b.values.reshape(L * H, F).astype(np.float64)
    query = a.values[layer, head].astype(np.float64)
    if measure == "embedding":
        norms = np.linalg.norm(others, axis=1) * np.linalg.norm(query)
        distance = 1 - others @ query / np.where(norms > 0, norms, 1)
    else:
        pooled = np.concatenate([a.values.reshape(-1, F), others]) if a is not b else others
        mean, std = pooled.mean(0), pooled.std(0)
        std = np.where(std > 0, std, 1)
        distance = np.linalg.norm((others - mean) / std - (query - mean) / std, axis=1)
    if a is b:
        distance[layer * H + head] = np.inf
    order = np.argsort(distance, kind="stable")[:min(k, L * H - (a is b))]
    return [{"layer": int(i // H), "head": int(i % H), "distance": float(distance[i])} for i in order]
