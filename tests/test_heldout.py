"""The held-out protocol: exact metrics, honest intervals, planted signal found, noise at
chance, no held-out scenario in any fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from apmae.atlas import heldout
from apmae.atlas.heldout import (Features, HeldoutConfig, bootstrap_weights, evaluate_heldout,
                                 interval, score_table, weighted_auc)
from apmae.atlas.rows import ROW_STATS, hole_of, row_stats
from apmae.store.format import lower_triangle

FAST = HeldoutConfig(bootstrap=200, max_iter=60, cv_folds=2)


def test_weighted_auc_is_sklearns_with_ties_and_repeats() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.4
    p = np.round(rng.random(300) + 0.3 * y, 1)  # many ties
    assert weighted_auc(y, p, np.ones(300))[0] == pytest.approx(roc_auc_score(y, p))
    w = rng.integers(0, 4, 300)
    rep = np.repeat(np.arange(300), w)
    assert weighted_auc(y, p, w)[0] == pytest.approx(roc_auc_score(y[rep], p[rep]))
    assert math.isnan(weighted_auc(np.ones(5, bool), p[:5], np.ones(5))[0])


def test_bootstrap_interval_covers_the_truth_at_its_nominal_rate() -> None:
    """Binormal scores (positives shifted by d): the true AUC is Phi(d / sqrt 2); the 95%
    interval of 200 independent samples should hold it about 95% of the time."""
    d = 0.8
    truth = 0.5 * (1 + math.erf(d / 2))
    rng = np.random.default_rng(1)
    hits, trials = 0, 200
    for t in range(trials):
        y = rng.random(200) < 0.5
        p = rng.normal(size=200) + d * y
        w = bootstrap_weights(np.zeros(200), 400, seed=t)
        lo, hi = interval(weighted_auc(y, p, w))
        hits += lo <= truth <= hi
    assert 0.89 <= hits / trials <= 0.99


def _synthetic(n: int, signal: float, seed: int = 0):
    """Tasks with different base rates; one feature column carries ``signal`` within task."""
    rng = np.random.default_rng(seed)
    tasks = rng.choice(["easy", "hard", "mid"], n)
    base = {"easy": 0.8, "hard": 0.2, "mid": 0.5}
    y = rng.random(n) < np.array([base[t] for t in tasks])
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[:, 2] += signal * y
    split = np.where(rng.random(n) < 0.5, "train", "test")
    return tasks, y, x, split


def test_planted_signal_found_and_noise_at_chance() -> None:
    tasks, y, x, split = _synthetic(1200, signal=1.5)
    out = evaluate_heldout({"row_stats": Features(x), "pattern_stats": Features(x[:, [0, 1, 3]])},
                           tasks, y, split, FAST)
    found, noise, prior = (out["kinds"][k] for k in ("row_stats", "pattern_stats", "task_prior"))
    assert found["within_task_auc_ci"][0] > 0.75
    assert set(found["tasks_above_chance"]) == {"easy", "hard", "mid"}
    assert noise["within_task_auc_ci"][0] < 0.5 < noise["within_task_auc_ci"][1]
    assert noise["tasks_above_chance"] == []
    # the task prior separates tasks (overall AUC well above 0.5) but nothing within a task
    assert prior["auc"] > 0.65 and prior["within_task_auc"] == 0.5
    assert out["best"] == "row_stats" and out["kinds"]["row_stats"]["attention"]
    assert found["brier"] < prior["brier"]


def test_no_held_out_scenario_reaches_any_fit(monkeypatch) -> None:
    """Held-out rows carry a marker value no training row has; every fit (boosting and PCA, the
    cross-validation that chooses each kind's capacity and the live kind included) must never see it."""
    tasks, y, x, split = _synthetic(400, signal=1.0)
    x[split == "test", 0] = 1e6
    seen: list[np.ndarray] = []
    fit = heldout.Classifier.fit

    def spy(self, f, t, yy):
        seen.append(f.x)
        return fit(self, f, t, yy)

    monkeypatch.setattr(heldout.Classifier, "fit", spy)
    evaluate_heldout({"row_stats": Features(x), "embeddings": Features(x, reduce=np.ones(6, bool))},
                     tasks, y, split, FAST)
    assert len(seen) == 2 + 2 * len(FAST.capacities) * FAST.cv_folds
    assert all((s[:, 0] < 1e6).all() for s in seen)


def test_too_few_of_one_class_is_said_not_scored() -> None:
    tasks, y, x, split = _synthetic(300, signal=1.0)
    y[split == "test"] = True
    out = evaluate_heldout({"row_stats": Features(x)}, tasks, y, split, FAST)
    assert "auc" not in out and "fewer than 10 of one class" in out["skipped"]
    one = score_table(np.array([1, 1, 0, 1]), np.array([.9, .8, .1, .7]),
                      np.array(["a", "a", "b", "b"]), {"a": .5, "b": .5}, FAST)
    assert one["by_task"]["a"]["auc"] is None and "one class" in one["by_task"]["a"]["skipped"]


def test_row_stats_read_the_predicting_row() -> None:
    T, hole = 12, 5
    logp = torch.full((T, T), -30.0)
    logp.fill_diagonal_(0.0)
    logp[T - 1] = -30.0
    logp[T - 1, hole - 1] = 0.0  # the last query looks only at the token left of the hole
    stats = dict(zip(ROW_STATS, row_stats(lower_triangle(logp)[None, None], [hole])[0, 0].tolist()))
    assert stats["left_of_hole"] == pytest.approx(1.0)
    assert stats["max"] == pytest.approx(1.0) and stats["entropy"] == pytest.approx(0.0, abs=1e-6)
    assert stats["distance"] == pytest.approx(T - 1 - (hole - 1))
    for name in ("right_of_hole", "suffix_share", "self", "first_token"):
        assert stats[name] == pytest.approx(0.0, abs=1e-9), name
    assert hole_of([7, 1, 2, 9, 3, 8], suffix_id=9) == 3
    assert hole_of([7, 1, 2, 3], suffix_id=None) == 3


def test_each_kind_takes_the_capacity_its_train_cv_scores_higher() -> None:
    shallow, deep = FAST.capacities
    assert heldout.better_capacity({shallow: 0.70, deep: 0.72}) == deep
    assert heldout.better_capacity({shallow: 0.72, deep: 0.72}) == shallow  # ties: the simpler
    assert heldout.better_capacity({shallow: float("nan"), deep: float("nan")}) == shallow
    tasks, y, x, split = _synthetic(600, signal=1.0)
    out = evaluate_heldout({"row_stats": Features(x)}, tasks, y, split, FAST)
    train = np.flatnonzero(split == "train")  # the stored capacity is the one the train CV picks
    assert tuple(out["kinds"]["row_stats"]["capacity"]) == heldout.chosen_capacity(
        "row_stats", Features(x).rows(train), tasks[train], y[train], FAST)


def test_the_live_kind_is_compared_with_the_confidence_paired() -> None:
    """Attention that carries more signal than the confidence is above it with a paired
    interval; one that carries the same is level (the interval covers 0)."""
    tasks, y, x, split = _synthetic(1600, signal=1.5)
    rng = np.random.default_rng(1)
    weak = Features((y * 0.5 + rng.normal(size=len(y)))[:, None].astype(np.float32))
    out = evaluate_heldout({"row_stats": Features(x), "lm_confidence": weak}, tasks, y, split, FAST)
    diff = out["kinds"]["row_stats"]["minus_lm_confidence"]
    assert diff["auc_ci"][0] > 0 and diff["within_task_auc_ci"][0] > 0
    assert diff["within_task_auc"] == pytest.approx(out["kinds"]["row_stats"]["within_task_auc"]
                                                    - out["kinds"]["lm_confidence"]["within_task_auc"], abs=1e-3)
    same = evaluate_heldout({"row_stats": Features(x), "lm_confidence": Features(x)}, tasks, y, split, FAST)
    level = same["kinds"]["row_stats"]["minus_lm_confidence"]
    assert level["auc_ci"][0] <= 0 <= level["auc_ci"][1]
