"""Cluster descriptions: pattern metrics on patterns of known shape, enrichment against a head's
base rate, and the one-line description."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apmae.atlas.describe import METRICS, describe, enrichment, pattern_metrics, summarize
from apmae.store.format import lower_triangle

T = 16


def _packed(weights: np.ndarray) -> np.ndarray:
    """``[T, T]`` attention weights (rows sum to 1) -> packed log-probabilities."""
    with np.errstate(divide="ignore"):
        logp = np.log(weights)
    return lower_triangle(torch.from_numpy(np.maximum(logp, -20.0).astype(np.float32))).numpy()


def _rows(pick) -> np.ndarray:
    w = np.full((T, T), 1e-9)
    for q in range(T):
        for k, v in pick(q).items():
            w[q, k] = v
    w = np.tril(w)
    return w / w.sum(1, keepdims=True)


def metric(values: np.ndarray, name: str) -> float:
    return float(values[0, METRICS.index(name)])


def test_metrics_of_known_patterns():
    ids = [list(range(T))]  # no repeated token: induction undefined
    prev = pattern_metrics(_packed(_rows(lambda q: {max(q - 1, 0): 1.0})[None]), ids)
    assert metric(prev, "previous") == pytest.approx(1, abs=1e-3)
    assert metric(prev, "self") == pytest.approx(0, abs=1e-3) and metric(prev, "sink") == pytest.approx(1 / (T - 1), abs=1e-3)
    assert metric(prev, "distance") == pytest.approx(1, abs=1e-3)
    assert metric(prev, "local") == pytest.approx(1, abs=1e-3)
    assert np.isnan(metric(prev, "induction")) and metric(prev, "entropy") < 0.01
    sink = pattern_metrics(_packed(_rows(lambda q: {0: 1.0})[None]), ids)
    assert metric(sink, "sink") == pytest.approx(1, abs=1e-3)
    assert metric(sink, "distance") == pytest.approx(np.mean(np.arange(1, T)), abs=1e-2)
    assert metric(sink, "local") == pytest.approx(7 / (T - 1), abs=1e-3)  # key 0 is local to rows 1..7
    uniform = pattern_metrics(_packed(_rows(lambda q: {k: 1.0 for k in range(q + 1)})[None]), ids)
    assert metric(uniform, "entropy") == pytest.approx(np.mean(np.log(np.arange(2, T + 1))), abs=1e-3)


def test_induction_weight_reads_the_token_after_an_earlier_copy():
    """Tokens 0..7 twice: at the second occurrence of token t (position 8 + t) an induction head
    attends to position t + 1, the token that followed t before."""
    ids = [list(range(8)) * 2]
    w = _rows(lambda q: {q - 7: 1.0} if q >= 8 else {0: 1.0})
    m = pattern_metrics(_packed(w[None]), ids)
    assert metric(m, "induction") == pytest.approx(1, abs=1e-3)
    # the same pattern over a prompt with nothing repeated has no induction rows
    assert np.isnan(metric(pattern_metrics(_packed(w[None]), [list(range(T))]), "induction"))
    # a sink head on the repeating prompt puts no weight there
    sink = pattern_metrics(_packed(_rows(lambda q: {0: 1.0})[None]), ids)
    assert metric(sink, "induction") == pytest.approx(0, abs=1e-3)


def test_summary_and_description():
    ids = [list(range(T))] * 3
    prev = pattern_metrics(_packed(np.stack([_rows(lambda q: {max(q - 1, 0): 0.7, 0: 0.3})] * 3)), ids)
    s = summarize(prev)
    assert s["n"] == 3 and s["induction"] is None and s["previous"] == pytest.approx(0.7, abs=0.02)
    line = describe(s)
    assert line.startswith("attends to the previous token (0.7") and "sink 0.3" in line
    head = {**s, "previous": 0.4}
    assert describe(s, head).endswith(f"previous {s['previous']:.2f} vs 0.40 in the head")
    assert "in the head" not in describe(s, {**s, "previous": s["previous"] - 0.01})
    farther = {**s, "distance": s["distance"] * 2}
    assert describe(s, farther).endswith(f"distance {s['distance']:.0f} vs {2 * s['distance']:.0f} in the head")
    assert describe(summarize(np.empty((0, len(METRICS))))) == "no kept patterns"


def test_enrichment_marks_an_over_represented_task():
    clusters = {0: {"eol": 40, "identifiers": 2}, 1: {"eol": 5, "identifiers": 45},
                -1: {"eol": 5, "identifiers": 3}}
    out = enrichment(clusters, {0: 40, 1: 10, -1: 4})
    eol = out[0]["tasks"]["eol"]
    assert eol["count"] == 40 and eol["share"] == pytest.approx(40 / 42)
    assert eol["base"] == pytest.approx(50 / 100) and eol["lift"] == pytest.approx((40 / 42) / 0.5)
    assert eol["mark"] == "***" and eol["direction"] == "over" and eol["q"] >= eol["p"]
    assert out[1]["tasks"]["eol"]["direction"] == "under" and out[1]["tasks"]["eol"]["mark"]
    assert out[0]["correct"]["direction"] == "over" and out[0]["correct"]["mark"]
    noise = out[-1]["tasks"]["eol"]
    assert noise["mark"] == "" and noise["q"] > 0.05  # 5 of 8 against a base of one half


def test_even_split_is_not_significant():
    out = enrichment({0: {"a": 10, "b": 10}, 1: {"a": 10, "b": 10}}, {0: 5, 1: 5})
    assert all(t["mark"] == "" and t["lift"] == pytest.approx(1) for c in out.values()
               for t in [*c["tasks"].values(), c["correct"]])
