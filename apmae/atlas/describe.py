"""What tells one cluster of a head from another: enrichment of tasks and correctness against the
head's base rate, metrics of the stored patterns, and a one-line description made from them.

Pure functions over counts and packed log-probability patterns (no SQL, no web).

**Pattern metrics** (:data:`METRICS`), each a mean over a pattern's query rows ``q >= 1`` (row 0
can only attend to itself, so it would add the same 1 to every pattern); every row is first
renormalised to sum to 1, since 8-bit storage floors small weights:

- ``sink``: weight on the first token (key 0), the usual attention sink.
- ``previous``: weight on key ``q - 1``.
- ``self``: weight on key ``q`` (the diagonal).
- ``local``: weight on the ``LOCAL`` most recent keys, ``q - LOCAL < k <= q`` (self and
  previous included; key 0 only when it falls inside the window).
- ``induction``: weight on keys ``k`` whose *preceding* token equals the query's token
  (``ids[k - 1] == ids[q]``, ``1 <= k < q``): where an earlier occurrence of the current token
  was continued, which a copying (induction) head attends to. Averaged only over the rows that
  have such a key at all; None when no row has one (a prompt without repeated tokens).
- ``distance``: mean ``q - k`` in tokens.
- ``entropy``: the row's entropy in nats.

A set of patterns (a cluster's members, a head's) is summarised by the mean of each metric over
its patterns, with ``n``, the number of patterns it rests on: the run keeps only a sample of
patterns, so a cluster's figures come from its members that were kept.

**Enrichment**: a cluster of ``n`` patterns among the head's ``N``, ``k`` of them of a category
(a task, or right completions) that has ``K`` in the head, is tested against drawing ``n``
without replacement (hypergeometric, two-sided: twice the smaller tail, capped at 1); the p-values
of one head's tests (every cluster, every category) are corrected together by Benjamini-Hochberg,
and ``mark`` is ``*``, ``**``, ``***`` below 0.05, 0.01, 0.001 of that corrected value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import false_discovery_control, hypergeom

from ..store.format import unpack_lower_triangle

METRICS = ("sink", "previous", "self", "local", "induction", "distance", "entropy")
#: Keys counted as local: the query itself and the ``LOCAL - 1`` before it.
LOCAL = 8
#: Patterns unpacked at once (each ``T x T`` float32).
CHUNK = 32
#: Corrected p-value thresholds of the significance marks.
MARKS = ((0.001, "***"), (0.01, "**"), (0.05, "*"))
#: Metrics that are shares of attention (the others: distance in tokens, entropy in nats).
SHARES = ("sink", "previous", "self", "local", "induction")
#: A share below this counts as this much when a cluster is compared with its head.
SHARE_FLOOR = 0.1
#: Relative difference from the head that a description mentions.
DISTINCT = 0.2
#: The share metrics a description names, with their phrases.
PHRASES = {"sink": "attends to the first token", "previous": "attends to the previous token",
           "self": "attends to itself", "induction": "attends after earlier copies of its token"}


def pattern_metrics(packed: np.ndarray, input_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """``[N, T*(T+1)/2]`` log-probabilities of ``N`` patterns (``input_ids[i]``: pattern i's
    prompt) -> ``[N, len(METRICS)]``; NaN where a metric is undefined (``induction``)."""
    packed = np.asarray(packed, np.float32)
    out = np.empty((len(packed), len(METRICS)))
    for start in range(0, len(packed), CHUNK):
        out[start:start + CHUNK] = _chunk(packed[start:start + CHUNK],
                                          input_ids[start:start + CHUNK])
    return out


def _chunk(packed: np.ndarray, input_ids: Sequence[Sequence[int]]) -> np.ndarray:
    p = np.exp(unpack_lower_triangle(packed, fill=-np.inf))[:, 1:]  # rows q >= 1: [n, T-1, T]
    p /= p.sum(-1, keepdims=True)
    T = p.shape[-1]
    q = np.arange(1, T)[:, None]
    k = np.arange(T)[None, :]
    rows = np.arange(T - 1)
    logp = np.log(np.where(p > 0, p, 1.0))
    ids = np.asarray(input_ids)
    # induction keys: ids[k - 1] == ids[q], 1 <= k < q
    match = (ids[:, None, :-1] == ids[:, 1:, None]) & (np.arange(1, T)[None, None, :] < q[None])
    match = np.concatenate([np.zeros(match.shape[:2] + (1,), bool), match], -1)
    has = match.any(-1)
    ind = (p * match).sum(-1)
    induction = np.where(has.any(-1), (ind * has).sum(-1) / np.maximum(has.sum(-1), 1), np.nan)
    return np.stack([p[:, :, 0].mean(-1), p[:, rows, rows].mean(-1), p[:, rows, rows + 1].mean(-1),
                     (p * ((q - k < LOCAL) & (k <= q))).sum(-1).mean(-1), induction,
                     (p * np.maximum(q - k, 0)).sum(-1).mean(-1), -(p * logp).sum(-1).mean(-1)], -1)


def summarize(metrics: np.ndarray) -> dict:
    """``[n, len(METRICS)]`` per-pattern metrics -> ``{metric: mean or None, "n": n}`` (each
    mean over the patterns where the metric is defined)."""
    out: dict = {"n": int(len(metrics))}
    for i, name in enumerate(METRICS):
        col = metrics[:, i] if len(metrics) else np.empty(0)
        col = col[~np.isnan(col)]
        out[name] = float(col.mean()) if len(col) else None
    return out


def describe(metrics: Mapping[str, float | None], reference: Mapping[str, float | None] | None = None
             ) -> str:
    """One line naming what a set of patterns mostly does, e.g. "attends to the previous token
    (0.62); sink 0.21"; with ``reference`` (the head's metrics) it adds the metric that sets it
    apart most from the head, by relative difference, e.g. "local 0.41 vs 0.35 in the head"
    (clusters of one head often share their dominant behaviour and differ in degree)."""
    if not metrics.get("n"):
        return "no kept patterns"
    shares = {k: metrics[k] for k in PHRASES if metrics.get(k) is not None}
    top = max(shares, key=shares.get)
    if shares[top] >= 0.3:
        line = f"{PHRASES[top]} ({shares[top]:.2f})"
    elif (metrics.get("local") or 0) >= 0.5:
        line = f"attends to the last {LOCAL} tokens ({metrics['local']:.2f})"
    else:
        line = f"spread out: mean distance {metrics['distance']:.0f} tokens, entropy {metrics['entropy']:.1f}"
    others = sorted((k for k in shares if k != top and shares[k] >= 0.1), key=shares.get, reverse=True)
    line += "".join(f"; {k} {shares[k]:.2f}" for k in others[:2])
    if reference and reference.get("n"):
        # shares are compared on a floor of SHARE_FLOOR, so a tiny share doubling is no news
        rel = {k: (metrics[k] - reference[k]) / max(abs(reference[k]), SHARE_FLOOR if k in SHARES else 1e-9)
               for k in METRICS if metrics.get(k) is not None and reference.get(k) is not None}
        if rel:
            k = max(rel, key=lambda d: abs(rel[d]))
            if abs(rel[k]) >= DISTINCT:
                fmt = ".0f" if k == "distance" else ".2f"
                line += f"; {k} {metrics[k]:{fmt}} vs {reference[k]:{fmt}} in the head"
    return line


def enrichment(clusters: Mapping[int, Mapping[str, int]], correct: Mapping[int, int]) -> dict[int, dict]:
    """Per cluster label: ``{"tasks": {task: test}, "correct": test}``, each test ``{count,
    share, base, lift, p, q, mark, direction}`` against the head (the union of ``clusters``).

    ``clusters[label]`` counts the cluster's scenarios by task, ``correct[label]`` its right
    completions (module docstring: the test and its correction)."""
    size = {c: sum(t.values()) for c, t in clusters.items()}
    N = sum(size.values())
    by_task: dict[str, int] = {}
    for t in clusters.values():
        for task, k in t.items():
            by_task[task] = by_task.get(task, 0) + k
    tests = [(c, task, clusters[c].get(task, 0), K) for c in clusters for task, K in sorted(by_task.items())]
    tests += [(c, None, correct.get(c, 0), sum(correct.values())) for c in clusters]
    p = np.array([_two_sided(k, N, K, size[c]) for c, _, k, K in tests])
    qv = false_discovery_control(p) if len(p) else p
    out: dict[int, dict] = {c: {"tasks": {}, "correct": None} for c in clusters}
    for (c, task, k, K), pv, qq in zip(tests, p, qv):
        share, base = k / size[c] if size[c] else 0.0, K / N if N else 0.0
        test = {"count": int(k), "share": share, "base": base,
                "lift": share / base if base else None, "p": float(pv), "q": float(qq),
                "mark": next((mk for lim, mk in MARKS if qq < lim), ""),
                "direction": "over" if share > base else "under" if share < base else "even"}
        if task is None:
            out[c]["correct"] = test
        else:
            out[c]["tasks"][task] = test
    return out


def _two_sided(k: int, N: int, K: int, n: int) -> float:
    """Hypergeometric two-sided p-value of ``k`` of ``n`` draws being of a category with ``K``
    of ``N``: twice the smaller tail, at most 1."""
    if N == 0:
        return 1.0
    return float(min(1.0, 2 * min(hypergeom.sf(k - 1, N, K, n), hypergeom.cdf(k, N, K, n))))
