"""Head importance: SHAP finds the head a planted predictor reads, the causal measure finds the
head whose ablation flips a planted model, and the interventions' pieces do what they say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apmae.atlas.heldout import Classifier, Features, HeldoutConfig
from apmae.atlas.importance import (candidates, causal_effects, mean_interval, per_head,
                                    shap_effects, single_head_scores)
from apmae.atlas.intervention import change, enriched_pairs, sample_per_task, versus_random
from apmae.atlas.sweep import FirstTokenScorer
from apmae.intervene import ablate_heads
from apmae.lm.load import TargetModel
from apmae.scenarios import Scenario

from conftest import TINY_VOCAB, tiny_starcoder2

PLANTED = (1, 2)


def _scenario(i: int, task: str, ids: list[int], target: int, split: str = "train") -> Scenario:
    return Scenario(id=f"s{i}", task=task, path=None, split=split, start=None, end=None,
                    target="", prefix="", suffix="", input_ids=ids, target_ids=[target],
                    window=len(ids), tokenizer="")


@pytest.fixture(scope="module")
def planted():
    """A tiny model whose head ``PLANTED`` dominates the output, and scenarios whose target is
    what the model says with that head switched off: ablating it alone fixes them."""
    model = tiny_starcoder2()
    width = model.config.hidden_size // model.config.num_attention_heads
    with torch.no_grad():
        model.model.layers[PLANTED[0]].self_attn.o_proj.weight[
            :, PLANTED[1] * width:(PLANTED[1] + 1) * width] *= 30
    target = TargetModel("planted", model, None, None, 2, 4, 64)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, TINY_VOCAB, 16).tolist() for _ in range(60)]
    with ablate_heads(model, [PLANTED]), torch.no_grad():
        wanted = model(input_ids=torch.tensor(prompts)).logits[:, -1].argmax(-1).tolist()
    return target, [_scenario(i, "ab"[i % 2], p, t) for i, (p, t) in enumerate(zip(prompts, wanted))]


def test_causal_importance_finds_the_head_whose_ablation_fixes_the_planted_model(planted):
    target, scenarios = planted
    every = [(layer, head) for layer in range(2) for head in range(4)]
    hits, lps = single_head_scores(FirstTokenScorer(target, 16), scenarios, every)
    assert hits.shape == (9, len(scenarios)) and hits[0].mean() < 0.5  # the head hurts as it is
    effects = {(e.measure, e.task): e for e in causal_effects(
        hits, lps, np.array([s.task for s in scenarios]), np.arange(8), 8, 200, 0)}
    index = PLANTED[0] * 4 + PLANTED[1]
    for task in ("a", "b", "all"):
        acc = effects[("causal_accuracy", task)]
        assert int(np.argmax(acc.value)) == index and acc.lo[index] > 0
        assert np.flatnonzero(acc.lo > 0).tolist() == [index]  # no other head is credited
        assert int(np.argmax(effects[("causal_logprob", task)].value)) == index
    # single-head rows are what ablating that head by hand gives
    with ablate_heads(target.model, [PLANTED]), torch.no_grad():
        lp = target.model(input_ids=torch.tensor([s.input_ids for s in scenarios])).logits[:, -1]
    lp = lp.float().log_softmax(-1)
    first = torch.tensor([s.target_ids[0] for s in scenarios])
    assert (hits[1 + index] == (lp.argmax(-1) == first).numpy()).all()
    assert np.allclose(lps[1 + index], lp.gather(1, first[:, None])[:, 0].numpy(), atol=1e-4)


def test_a_subset_of_heads_is_measured_and_only_it_is_stored(planted):
    target, scenarios = planted
    index = PLANTED[0] * 4 + PLANTED[1]
    measured = np.array([0, index, 7])
    hits, lps = single_head_scores(FirstTokenScorer(target, 16), scenarios,
                                   [(int(i) // 4, int(i) % 4) for i in measured])
    acc = next(e for e in causal_effects(hits, lps, np.array([s.task for s in scenarios]), measured,
                                         8, 100, 0) if e.measure == "causal_accuracy")
    assert np.isnan(acc.value).sum() == 5 and not np.isnan(acc.value[measured]).any()
    assert int(np.nanargmax(acc.value)) == index
    assert [(r["layer"], r["head"]) for r in acc.rows(4)] == [(0, 0), PLANTED, (1, 3)]


def test_candidates_are_every_head_else_the_predictors_most_read_else_random():
    shap_abs = np.array([0.1, 0.5, 0.0, 0.3, 0.2])
    assert candidates(shap_abs, 5, 5, 0)[1] == "all"
    chosen, why = candidates(shap_abs, 5, 2, 0)
    assert why == "shap_abs" and chosen.tolist() == [1, 3]
    chosen, why = candidates(None, 720, 64, 0)
    assert why == "random" and len(set(chosen.tolist())) == 64 and chosen.max() < 720
    assert (chosen == candidates(None, 720, 64, 0)[0]).all()  # seeded


def test_shap_finds_the_head_a_planted_predictor_reads():
    rng = np.random.default_rng(0)
    n, heads, per = 600, 6, 3
    x = rng.normal(size=(n, heads * per)).astype(np.float32)
    tasks = np.array(["a", "b"])[rng.integers(0, 2, n)]
    y = x[:, 3 * per] + 0.3 * rng.normal(size=n) > 0  # head 3's first column decides
    f = Features.per_head(x, heads)
    model = Classifier("row_stats", HeldoutConfig(max_iter=100), ["a", "b"]).fit(f, tasks, y)
    contrib = model.contributions(f, tasks)
    # exact TreeSHAP: the columns' shares, the task's and the bias add up to the log-odds
    design = model._design(f, tasks, fit=False)[0]
    full = model.model.predict(design, pred_contrib=True)
    assert np.allclose(full[:, :f.x.shape[1]], contrib)
    p = model.predict(f, tasks)
    assert np.allclose(full.sum(1), np.log(p / (1 - p)), atol=1e-6)
    by_head = per_head(contrib, f.head, heads)
    effects = {(e.measure, e.task): e for e in shap_effects(by_head, tasks, y, 200, 0)}
    for task in ("a", "b", "all"):
        assert int(np.argmax(effects[("shap_abs", task)].value)) == 3
    # over wrong completions the deciding head pushes towards "wrong": most negative
    assert int(np.argmin(effects[("shap", "all")].value)) == 3


def test_shap_of_reduced_columns_is_not_attributed():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    y = x[:, 0] > 0
    tasks = np.full(200, "a")
    f = Features.join(Features.per_head(x[:, :4], 2),
                      Features.per_head(x[:, 4:], 2, reduce=np.ones(4, bool)))
    model = Classifier("rows+embeddings", HeldoutConfig(max_iter=50, pca_components=2), ["a"]).fit(
        f, tasks, y)
    contrib = model.contributions(f, tasks)
    assert np.isnan(contrib[:, 4:]).all() and not np.isnan(contrib[:, :4]).any()
    assert per_head(contrib, f.head, 2).shape == (200, 2)


def test_mean_interval_covers_the_truth_at_its_nominal_rate():
    rng = np.random.default_rng(2)
    covered = 0
    for seed in range(200):
        values = rng.normal(0.3, 1.0, size=(80, 1))
        _, lo, hi = mean_interval(values, 400, seed)
        covered += lo[0] <= 0.3 <= hi[0]
    assert 0.88 <= covered / 200 <= 0.99


def test_enriched_pairs_pick_the_failing_cluster():
    rng = np.random.default_rng(3)
    labels = rng.integers(-1, 3, size=(200, 4))
    y = rng.random(200) < 0.7
    labels[:, 2] = np.where(~y, 5, labels[:, 2])  # every failure lands in cluster 5 of head 2
    pairs = enriched_pairs(labels, y, min_cluster=4, k=1, heads_per_layer=2)
    assert pairs == [((1, 0), 5)]
    assert enriched_pairs(labels, np.ones(200, bool), 4, 2, 2) == []  # no failures: nothing


def test_change_pairs_scenarios_and_counts_flips():
    base = (np.array([True, False, False, True]), np.zeros(4))
    after = (np.array([True, True, True, False]), np.ones(4))
    c = change(base, after, 200, 0)
    assert c["incorrect_to_correct"] == 2 and c["correct_to_incorrect"] == 1 and c["net_flips"] == 1
    assert c["accuracy_change"] == 0.25 and c["logprob_change"] == 1.0
    r = versus_random(0.25, np.array([-0.1, 0.0, 0.3, 0.1]))
    assert r["share_of_random_beaten"] == 0.75


def test_sample_per_task_caps_each_task():
    pool = [_scenario(i, "ab"[i % 2] if i < 10 else "a", [0], 0) for i in range(30)]
    got = sample_per_task(pool, 4, 0)
    assert sum(s.task == "a" for s in got) == 4 and sum(s.task == "b" for s in got) == 4
    assert [s.id for s in got] == [s.id for s in pool if s in got]  # pool order kept


def test_the_verdict_tells_a_helping_selection_from_the_papers_gain():
    from apmae.atlas.summaries import verdict

    def row(change, ci, beaten, base=0.4):
        return {"accuracy_change": change, "accuracy_change_ci": ci, "share_of_random_beaten": beaten,
                "base_accuracy": base}

    pooled = {"shap": {"1": row(-0.01, [-0.03, 0.01], 0.2)},
              "greedy": {"3": row(0.02, [0.004, 0.04], 1.0)}}
    v = verdict(pooled)
    assert v["best"]["method"] == "greedy" and v["best"]["relative_change"] == 0.05
    assert v["reproduced"] and not v["paper_gain_reached"]
    pooled["greedy"]["3"] = row(0.08, [0.03, 0.12], 1.0)
    assert verdict(pooled)["paper_gain_reached"]
    pooled["greedy"]["3"] = row(0.08, [-0.01, 0.12], 1.0)  # interval covers zero: helps nothing
    assert not verdict(pooled)["reproduced"] and not verdict(pooled)["paper_gain_reached"]
