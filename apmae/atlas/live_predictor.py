"""The correctness predictor the explorer uses live, and when it should not be trusted.

``apmae predictor train`` measures every feature kind on held-out scenarios and marks the
attention-only kind chosen on the train split; the explorer refits that kind (and the
model-confidence baseline, shown beside it, labelled) on the train split when it starts, so no
pickled estimator is ever loaded. A live answer carries the kind's name and its held-out
figures. Inputs unlike the training prompts (not Java, far shorter than the window, most heads
outside every cluster) get reasons instead of a probability.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from sqlalchemy import select
from sqlalchemy.engine import Engine

from ..db import models as m
from ..db.session import session_scope
from ..run import Run
from ..spans import syntax_tree
from .predictor_stage import training_data
from .encode import pattern_stats
from .heldout import Classifier, Features, HeldoutConfig
from .predictor import categorical
from .rows import row_stats

#: Code with more syntax errors per token than this is not Java (:func:`error_share`). Held-out
#: prompt windows, cut out of files mid-comment or mid-string, reach 0.2 (99th percentile);
#: English prose is at 0.3.
MAX_ERROR_SHARE = 0.25
#: A prompt shorter than this share of the run's window is unlike every training prompt.
MIN_WINDOW_SHARE = 0.5
#: The share of a prompt's heads outside every cluster may not exceed the training scenarios'
#: quantile of it.
NOISE_QUANTILE = 0.99


@dataclass
class LivePredictor:
    """The chosen attention-only classifier and the confidence baseline, fitted on the train
    split, with their held-out figures and the limits of the training data."""

    kind: str
    model: Classifier
    heldout: dict  # the kind's held-out table (auc, auc_ci, within_task_auc, ...)
    confidence: Classifier | None
    confidence_heldout: dict | None
    max_noise_share: float  # NOISE_QUANTILE of the training scenarios' noise share

    def predict(self, features: Features | None, task: str) -> float | None:
        """Probability that a completion of ``task`` is right, from its attention features."""
        if features is None:
            return None
        return float(self.model.predict(features, np.array([task]))[0])

    def predict_confidence(self, conf: dict[str, float], task: str) -> float | None:
        """The same from the model's own confidence (:func:`apmae.extract.confidence`)."""
        if self.confidence is None:
            return None
        x = np.array([[conf["top1_prob"], conf["entropy"]]], np.float32)
        return float(self.confidence.predict(Features(x), np.array([task]))[0])

    def summary(self) -> dict:
        """What a live answer says about the predictor that made it."""
        h = self.heldout
        return {"name": self.kind, "heldout_auc": h.get("auc"), "heldout_auc_ci": h.get("auc_ci"),
                "within_task_auc": h.get("within_task_auc"),
                "within_task_auc_ci": h.get("within_task_auc_ci"), "brier": h.get("brier")}


def fit_live_predictor(run: Run, engine: Engine) -> LivePredictor | None:
    """Refit the chosen held-out kind and the confidence baseline on the train split; None
    when ``apmae predictor train`` has chosen none (it says why in the report)."""
    with session_scope(engine) as session:
        run_id = session.scalar(select(m.Run.id).where(m.Run.name == run.name))
        stored = dict(session.execute(select(m.Predictor.features, m.Predictor.metrics).where(
            m.Predictor.run_id == run_id, m.Predictor.protocol == "heldout")).all()) if run_id else {}
        settings = (session.get(m.Run, run_id).settings or {}) if run_id else {}
    best = next((k for k, v in stored.items() if v.get("selected")), None)
    if best is None:
        return None
    known_fields = {f.name for f in fields(HeldoutConfig)}  # settings stored by older code may have more
    cfg = HeldoutConfig(**{k: v for k, v in settings.get("predictor_heldout", {}).items() if k in known_fields})
    data = training_data(run, engine, run_id)
    features, tasks, y = data.heldout, data.tasks, data.y
    if best not in features:
        return None
    train = np.flatnonzero((data.split == "train") & (tasks != "noise"))
    known = sorted(set(tasks[train].tolist()))
    # each kind at the capacity its train-split CV chose (older runs stored none: the first)
    model = Classifier(best, cfg, known, stored[best].get("capacity")).fit(
        features[best].rows(train), tasks[train], y[train])
    confidence = None
    if "lm_confidence" in features and "lm_confidence" in stored:
        confidence = Classifier("lm_confidence", cfg, known, stored["lm_confidence"].get("capacity")).fit(
            features["lm_confidence"].rows(train), tasks[train], y[train])
    return LivePredictor(best, model, stored[best], confidence, stored.get("lm_confidence"),
                         float(np.quantile(data.noise_share[train], NOISE_QUANTILE)))


def live_features(kind: str, patterns: torch.Tensor, hole: int, labels: np.ndarray | None,
                  embeddings: np.ndarray | None) -> Features | None:
    """One prompt's features of ``kind``, built as :func:`apmae.atlas.predictor_stage.training_data`
    builds the training rows: ``patterns [layers, heads, tri]`` log-probs in the store's
    precision, ``labels``/``embeddings`` ``[layers, heads(, d)]`` (None without an atlas)."""
    parts = []
    for part in kind.split("+"):
        if part in ("rows", "row_stats"):
            parts.append(Features(row_stats(patterns[None], [hole]).reshape(1, -1).numpy()))
        elif part == "pattern_stats":
            parts.append(Features(pattern_stats(patterns[None]).reshape(1, -1).numpy()))
        elif part == "clusters" and labels is not None:
            x = categorical(labels.reshape(1, -1))
            parts.append(Features(x, np.ones(x.shape[1], bool)))
        elif part == "embeddings" and embeddings is not None:
            x = embeddings.reshape(1, -1).astype(np.float32)
            parts.append(Features(x, reduce=np.ones(x.shape[1], bool)))
        else:
            return None
    return Features.join(*parts)


def error_share(code: str) -> float:
    """Syntax errors per token as tree-sitter-java reads the code: ERROR and MISSING nodes over
    leaf tokens. Near 0 for Java, a fragment included; prose parses as a run of broken
    declarations (a MISSING ";" every few words), so it scores high."""
    leaves = errors = 0
    stack = [syntax_tree(code).root_node]
    while stack:
        node = stack.pop()
        errors += node.is_error or node.is_missing
        if node.child_count == 0:
            leaves += 1
        stack.extend(node.children)
    return errors / max(1, leaves)


def out_of_distribution(code: str, prompt_tokens: int, window: int, labels: np.ndarray | None,
                        max_noise_share: float | None) -> list[str]:
    """Why an input is unlike the prompts the predictor was fitted on (empty: it is not)."""
    reasons = []
    share = error_share(code)
    if share > MAX_ERROR_SHARE:
        reasons.append(f"the code does not parse as Java ({share:.0%} of its tokens are syntax "
                       "errors: prose or another language?); the predictor was fitted on Java")
    if prompt_tokens < MIN_WINDOW_SHARE * window:
        reasons.append(f"the prompt has {prompt_tokens} tokens, far shorter than the "
                       f"{window}-token prompts the predictor was fitted on")
    if labels is not None and max_noise_share is not None:
        noise = float((labels == -1).mean())
        if noise > max_noise_share:
            reasons.append(f"{noise:.0%} of the heads fall outside every cluster, where only 1 in "
                           f"{round(1 / (1 - NOISE_QUANTILE))} training prompts exceeds "
                           f"{max_noise_share:.0%}")
    return reasons
