"""The ablation sweep: head orders, counts, and scores against the unablated model."""

from __future__ import annotations

import numpy as np
import torch

from apmae.atlas.summaries import collapse_points
from apmae.atlas.sweep import FirstTokenScorer, decoder_layers, head_counts, orders, sweep
from apmae.capture import attention_modules
from apmae.configs import STRATEGIES, SweepConfig
from apmae.intervene import ablate_heads
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
    points = sweep(FirstTokenScorer(tiny_target, 4), scenarios, imp, imp, SweepConfig(repeats=2))
    base = points[0]
    assert base["strategy"] == "none"
    assert {p["strategy"] for p in points[1:]} == set(STRATEGIES)
    n = len(scenarios)
    for p in points[1:]:
        # flips reconcile the accuracies
        assert round(p["accuracy"] * n) == round(base["accuracy"] * n) + p["incorrect_to_correct"] \
            - p["correct_to_incorrect"]
    assert set(collapse_points(points)) == set(STRATEGIES)


def _plain_scores(target, scenarios, heads):
    """First-token hits and log-probabilities the plain way: one pass over all, nothing reused."""
    with ablate_heads(target.model, heads), torch.no_grad():
        lp = target.model(input_ids=torch.tensor([s.input_ids for s in scenarios])).logits[:, -1]
    lp = lp.float().log_softmax(-1)
    first = torch.tensor([s.target_ids[0] for s in scenarios])
    return (lp.argmax(-1) == first).numpy(), lp.gather(1, first[:, None])[:, 0].numpy()


def test_the_scorer_reuses_scores_and_lower_layers_exactly(pattern_run, tiny_target):
    scenarios = [s for s in read_scenarios(pattern_run.scenarios_path) if s.task != "noise"][:10]
    scorer = FirstTokenScorer(tiny_target, 4)
    ran = []  # the layers whose attention actually computed
    attention = attention_modules(tiny_target.model)
    hooks = [a.register_forward_pre_hook(lambda m, a, i=i: ran.append(i)) for i, a in enumerate(attention)]
    top = tiny_target.layers - 1
    try:
        for heads in ([], [(top, 0)], [(top, 1), (0, 1)], [(1, 0), (top, 2)]):
            ran.clear()
            hits, lps = scorer(scenarios, heads)
            if heads == [(top, 0)]:  # below the top layer, the unablated pass's outputs replayed
                assert set(ran) == {top}
            want = _plain_scores(tiny_target, scenarios, heads)
            assert (hits == want[0]).all()
            np.testing.assert_allclose(lps, want[1], rtol=1e-4, atol=1e-4)
        assert all("forward" not in vars(b) for b in decoder_layers(tiny_target.model))  # put back
        ran.clear()
        again = scorer(scenarios, [(0, 1), (top, 1)])  # a set already scored, in another order
        assert ran == [] and (again[0] == scorer(scenarios, [(top, 1), (0, 1)])[0]).all()
    finally:
        for h in hooks:
            h.remove()


def test_collapse_points_halve_the_base_and_a_never_right_model_has_none():
    def point(strategy, n, accuracy):
        return {"strategy": strategy, "n_heads": n, "accuracy": accuracy}
    points = [point("none", 0, 0.6), point("random", 1, 0.5), point("random", 5, 0.3),
              point("causal", 1, 0.6), point("causal", 5, 0.4)]
    got = collapse_points(points)
    assert got["random"] == 5 and got["causal"] is None
    never = [point("none", 0, 0.0), point("random", 1, 0.0)]
    assert collapse_points(never) == dict.fromkeys(STRATEGIES)
