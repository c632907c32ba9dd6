"""Switch heads off and watch the completions: ``apmae sweep``.

Heads are ordered as the paper does by their SHAP in the correctness predictor (the pooled mean
over wrong completions, :mod:`apmae.atlas.importance`: ``positive`` first, ``negative`` first,
``neutral``: closest to zero first), by their causal single-ablation effect (``causal``: the
head whose ablation alone raises accuracy most first, heads not measured last), or at random
(``random``: seeded, several repeats), and the first ``n`` of each order are ablated
(:func:`apmae.intervene.ablate_heads`) for ``n`` from 1 to every head on a log scale. Each point
scores held-out scenarios against the unablated model: first-token accuracy, flips both ways
and the change of the target's first-token loss — all from one prefill pass per batch, which
is what first-token correctness needs.
"""

from __future__ import annotations


import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..capture import attention_modules
from ..configs import STRATEGIES, SweepConfig
from ..intervene import ablate_heads
from ..lm.load import TargetModel
from ..scenarios import Scenario


def head_counts(total: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... below ``total``, then ``total``."""
    counts, base = [], 1
    while base < total:
        counts += [c for c in (base, 2 * base, 5 * base) if c < total]
        base *= 10
    return sorted(set(counts)) + [total]


def orders(importance: dict[tuple[int, int], float] | None, gain: dict[tuple[int, int], float],
           seed: int, repeats: int) -> list[tuple[str, int, list[tuple[int, int]]]]:
    """``(strategy, repeat, heads in ablation order)`` for every strategy (the SHAP ones only
    where ``importance`` is known)."""
    heads = sorted(gain)
    ranked = {"causal": np.argsort(-np.array([gain[h] for h in heads]), kind="stable")}
    if importance is not None:
        value = np.array([importance[h] for h in heads])
        ranked |= {"positive": np.argsort(-value, kind="stable"),
                   "negative": np.argsort(value, kind="stable"),
                   "neutral": np.argsort(np.abs(value), kind="stable")}
    out = [(s, 0, [heads[i] for i in ranked[s]]) for s in STRATEGIES if s in ranked]
    rng = np.random.default_rng(seed)
    out += [("random", r, [heads[i] for i in rng.permutation(len(heads))]) for r in range(repeats)]
    return out


Head = tuple[int, int]


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The blocks that hold each attention module, in layer order: one block's output is the
    next one's input, whatever the architecture calls them."""
    names = {module: name for name, module in model.named_modules()}
    return [model.get_submodule(names[a].rsplit(".", 1)[0]) for a in attention_modules(model)]


class FirstTokenScorer:
    """Per scenario, whether the greedy first token is the target's and the target's first-token
    log-probability, with a set of heads ablated; from one prefill pass per batch, which is
    what first-token correctness needs.

    An ablation study scores the same scenarios many times, so two things are reused, both
    exactly: a (scenario, head set) scored once is remembered (orders of the collapse curve all
    end at every head; random sets repeat), and a batch scored unablated keeps each layer's
    output, so an ablation whose first head is in layer ``l`` replays layers below ``l``
    instead of recomputing them (they cannot differ). Replay swaps the blocks' ``forward`` for
    the duration of a batch: the scorer must own its model (the CLI's and the build's do).
    """

    def __init__(self, target: TargetModel, batch_size: int, replay_bytes: int = 1 << 30) -> None:
        self.target, self.batch_size, self.replay_left = target, batch_size, replay_bytes
        self.layers = decoder_layers(target.model)
        self._scores: dict[tuple[str, frozenset[Head]], tuple[bool, float]] = {}
        self._outputs: dict[tuple[str, ...], list[torch.Tensor]] = {}

    @torch.inference_mode()
    def __call__(self, scenarios: list[Scenario], heads: list[Head]) -> tuple[np.ndarray, np.ndarray]:
        key = frozenset(heads)
        todo = [s for s in scenarios if (s.id, key) not in self._scores]
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            hits, lps = self._batch(batch, heads)
            self._scores.update(((s.id, key), (bool(h), float(lp))) for s, h, lp in zip(batch, hits, lps))
        got = [self._scores[(s.id, key)] for s in scenarios]
        return np.array([h for h, _ in got], bool), np.array([lp for _, lp in got])

    def _batch(self, batch: list[Scenario], heads: list[Head]) -> tuple[np.ndarray, np.ndarray]:
        model = self.target.model
        ids = torch.tensor([s.input_ids for s in batch], device=model.device)
        key = tuple(s.id for s in batch)
        outputs = self._outputs.get(key)
        skip = min(layer for layer, _ in heads) if heads and outputs else 0
        recorded: list[torch.Tensor] = []
        hooks = [] if heads or outputs is not None else \
            [block.register_forward_hook(lambda _m, _a, out: recorded.append(out)) for block in self.layers]
        for block, out in zip(self.layers[:skip], outputs or []):
            block.forward = lambda *_a, _out=out, **_k: _out.clone()
        try:
            with ablate_heads(model, heads):
                logits = model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1]
        finally:
            for block in self.layers[:skip]:
                del block.forward
            for hook in hooks:
                hook.remove()
        size = sum(t.numel() * t.element_size() for t in recorded if isinstance(t, torch.Tensor))
        if recorded and all(isinstance(t, torch.Tensor) for t in recorded) and size <= self.replay_left:
            self._outputs[key], self.replay_left = recorded, self.replay_left - size
        lp = logits.float().log_softmax(-1)
        first = torch.tensor([s.target_ids[0] for s in batch], device=lp.device)
        return (lp.argmax(-1) == first).cpu().numpy(), lp.gather(1, first[:, None])[:, 0].cpu().numpy()


def sweep(scorer: FirstTokenScorer, scenarios: list[Scenario],
          importance: dict[tuple[int, int], float] | None, gain: dict[tuple[int, int], float],
          cfg: SweepConfig) -> list[dict]:
    """Every (strategy, n, repeat) point, scored against the unablated model. Nothing is
    captured here, so the model's attention runs as SDPA (:mod:`apmae.capture`)."""
    base_hits, base_lp = scorer(scenarios, [])
    points = [{"strategy": "none", "n_heads": 0, "repeat": 0, "accuracy": float(base_hits.mean()),
               "incorrect_to_correct": 0, "correct_to_incorrect": 0, "loss_change": 0.0, "heads": []}]
    plan = [(s, r, order[:n]) for s, r, order in orders(importance, gain, cfg.seed, cfg.repeats)
            for n in head_counts(len(order))]
    for strategy, repeat, heads in tqdm(plan, desc="sweep", unit="point"):
        hits, lp = scorer(scenarios, heads)
        points.append({
            "strategy": strategy, "n_heads": len(heads), "repeat": repeat,
            "accuracy": float(hits.mean()),
            "incorrect_to_correct": int((hits & ~base_hits).sum()),
            "correct_to_incorrect": int((~hits & base_hits).sum()),
            "loss_change": float((base_lp - lp).mean()),  # mean rise of -log p(target)
            "heads": [list(h) for h in heads]})
    return points
