"""The ablation sweep: head orders, counts, and scores against the unablated model."""

from __future__ import annotations

from apmae.atlas.sweep import (STRATEGIES, SweepConfig, collapse_points, head_counts, orders,
                               sweep)
from apmae.scenarios import read_scenarios


def test_head_counts_are_a_log_scale_ending_at_all():
    assert head_counts(32) == [1, 2, 5, 10, 20, 32]
    assert head_counts(720) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 720]
    assert head_counts(1) == [1]


def test_orders_follow_importance_and_causal_gain():
    imp = {(0, 0): 0.3, (0, 1): -0.2, (1, 0): 0.01, (1, 1): 0.1}
    gain = {(0, 0): -0.1, (0, 1): 0.0, (1, 0): 0.0, (1, 1): 0.05}
    got = {(s, r): o for s, r, o in orders(imp, gain, seed=0, repeats=2)}
    assert got[("positive", 0)][0] == (0, 0) and got[("negative", 0)][0] == (0, 1)
    assert got[("neutral", 0)][0] == (1, 0)
    assert got[("causal", 0)][0] == (1, 1) and got[("causal", 0)][-1] == (0, 0)
    assert {s for s, _ in got} == set(STRATEGIES)
    assert {s for s, _, _ in orders(None, gain, seed=0, repeats=1)} == {"causal", "random"}
    assert got[("random", 0)] != got[("random", 1)] or len(imp) < 3
    assert all(sorted(o) == sorted(imp) for o in got.values())


def test_sweep_scores_every_point_against_the_baseline(pattern_run, tiny_target):
    scenarios = [s for s in read_scenarios(pattern_run.scenarios_path) if s.task != "noise"]
    heads = [(l, h) for l in range(tiny_target.layers) for h in range(tiny_target.heads)]
    imp = {h: float(i) for i, h in enumerate(heads)}
    points = sweep(tiny_target, scenarios, imp, imp, SweepConfig(repeats=2, batch_size=4))
    base = points[0]
    assert base["strategy"] == "none"
    assert {p["strategy"] for p in points[1:]} == set(STRATEGIES)
    n = len(scenarios)
    for p in points[1:]:
        # flips reconcile the accuracies
        assert round(p["accuracy"] * n) == round(base["accuracy"] * n) + p["incorrect_to_correct"] \
            - p["correct_to_incorrect"]
    assert set(collapse_points(points)) == set(STRATEGIES)
