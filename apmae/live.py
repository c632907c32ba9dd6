"""Analyse one piece of pasted Java against a built run: what the explorer's ``/try`` does.

A request names the span to complete (character offsets, a task whose span the analyser
picks, or an open cursor without ground truth). The analyser builds the same FIM prompt as
mining (:func:`apmae.lm.fim.build_prompt`), completes it greedily with chosen heads ablated
or not, captures every head's pattern in the prefill pass, embeds the patterns with the run's
AP-MAE, places each in its head's clusters (nearest medoid, :func:`apmae.atlas.cluster.assign`)
and asks the correctness predictor (:mod:`apmae.atlas.live_predictor`), which sees only the
attention, never the target; the model's own confidence is given beside it, labelled.

Everything heavy is loaded once (:meth:`LiveAtlas.load`); each call is one prefill plus greedy
decoding. Ablation and capture are isolated per thread (context variables), so concurrent
calls on one model do not see each other's hooks.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np
import torch

from .atlas.cluster import assign
from .atlas.cluster_stage import Assignment, head_assignments
from .atlas.encode import embed
from .atlas.live_predictor import LivePredictor, fit_live_predictor, live_features, out_of_distribution
from .atlas.rows import hole_of
from .configs import EncodeConfig
from .extract import confidence
from .capture import record_attention
from .store.format import lower_triangle, tril_window, unpack_lower_triangle
from .intervene import ablate_heads
from .lm.fim import Window, build_prompt
from .lm.load import ModelLoadError, TargetModel, load_target
from .lm.score import greedy_continue, judge, kv_cache, to_completion
from .mae.model import APMAEModel
from .run import Run
from .scenarios import TASKS, random_token_span, read_scenarios
from .spans import SPAN_TASKS, find_spans, parse_java, syntax_tree
from .store.arrays import ArrayStore

#: Decoding budget beyond the target's length; an open completion gets ``OPEN_TOKENS``.
EXTRA_TOKENS = 4
OPEN_TOKENS = 16
#: Most probable next tokens reported at the predicting position.
TOP_K = 10


class LiveError(ValueError):
    """A request the analyser cannot serve; the message says what to change."""


@dataclass(frozen=True)
class Span:
    """The masked span; ``target`` is None for an open completion at a cursor."""

    start: int
    end: int
    task: str | None
    target: str | None


def locate(code: str, tokenizer, *, start: int | None = None, end: int | None = None,
           task: str | None = None, cursor: int | None = None) -> Span:
    """The span a request asks for: exactly one of ``start``+``end``, ``task`` or ``cursor``
    (``tokenizer`` cuts the ``random`` task's tokens)."""
    if not code.strip():
        raise LiveError("the code is empty")
    try:
        code.encode("utf-8")
    except UnicodeEncodeError as e:  # JSON may escape a lone surrogate: "\ud800"
        raise LiveError(f"the code has an unpaired surrogate ({code[e.start]!r}) at offset "
                        f"{e.start}: it is not valid Unicode text") from None
    modes = [start is not None or end is not None, task is not None, cursor is not None]
    if sum(modes) != 1:
        raise LiveError("give exactly one of: start and end (the span to mask), task (a task "
                        "whose span the server picks), cursor (an open completion)")
    if cursor is not None:
        if not 0 <= cursor <= len(code):
            raise LiveError(f"cursor {cursor} is outside the code (0..{len(code)})")
        return Span(cursor, cursor, None, None)
    if task is not None:
        return _task_span(code, task, tokenizer)
    if start is None or end is None:
        raise LiveError("start and end go together")
    if not 0 <= start < end <= len(code):
        raise LiveError(f"span {start}..{end} is not a non-empty range inside the code "
                        f"(0..{len(code)})")
    if not code[start:end].strip():
        raise LiveError("the span to mask is only whitespace")
    return Span(start, end, None, code[start:end])


def _task_span(code: str, task: str, tokenizer) -> Span:
    """A span of ``task`` in ``code``: the candidate nearest the middle, so the prompt has
    context on both sides (``random``: a seeded 3–10 token span)."""
    if task not in TASKS:
        raise LiveError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if task == "noise":
        raise LiveError("noise is the control of random tokens, not a span of code; pick another task")
    if task == "random":
        found = random_token_span(tokenizer, code, random.Random(0)) if code else None
        spans = [found] if found else []
    else:
        tree = parse_java(code)
        if tree is None:
            raise LiveError(f"the code does not parse as Java (syntax errors), so no {task} span "
                            "can be found in it; mark the span with start and end instead")
        spans = find_spans(task, code, tree)
    if not spans:
        raise LiveError(f"no {task} span in the code")
    middle = len(code) / 2
    s, e = min(spans, key=lambda se: (abs((se[0] + se[1]) / 2 - middle), se[0]))
    return Span(s, e, task, code[s:e])


#: Tasks tried for a marked span, the narrower first (a method call's name is an identifier too).
SPAN_ORDER = ("function_call", "function_name", "string_literals", "boolean_literals",
              "numeric_literals", *(t for t in SPAN_TASKS if t not in (
                  "function_call", "function_name", "string_literals", "boolean_literals",
                  "numeric_literals")))


def task_of_span(code: str, span: Span) -> str:
    """The mining task whose candidate spans include ``span`` (narrowest first), or ``random``
    (an arbitrary span, or an open completion): what the predictor, which was fitted with the
    task as a feature, reads the completion as. Pasted code is often a cut-out with syntax
    errors at its edges, so it is read with tree-sitter's error recovery."""
    if span.target is None:
        return "random"
    tree = syntax_tree(code)
    return next((t for t in SPAN_ORDER if (span.start, span.end) in find_spans(t, code, tree)),
                "random")


@dataclass
class Outcome:
    """One completion of one prompt, with what the model's attention says about it."""

    completion: str
    finished: bool  # ended with end-of-text within the budget
    first_token: str
    correct_exact: bool | None  # None without ground truth
    correct_first_token: bool | None
    target_first_prob: float | None  # probability of the target's first token
    target_first_logprob: float | None  # its natural log
    top_k: list[dict]  # the TOP_K most probable next tokens: token, token_id, prob, logprob
    predicted_correct: float | None  # the predictor's probability; None without one, or withheld
    labels: np.ndarray | None  # [layers, heads] cluster per head (-1 noise); None without an atlas
    confidence: dict  # the model's top-1 probability and entropy (from its output, not attention)
    confidence_predicted: float | None  # the confidence baseline's probability of a right answer
    out_of_distribution: list[str]  # why the input is unlike the training prompts (prediction withheld)
    patterns: torch.Tensor  # [layers, heads, T*(T+1)/2] log-probs (float16), the prefill's


@dataclass
class Analysis:
    span: Span
    window: Window
    tokens: list[str]  # the prompt's tokens, as the heatmaps' axis labels
    approximate: bool  # prompt shorter than the run's window: patterns resized for AP-MAE
    baseline: Outcome
    ablated: Outcome | None = None
    ablate: tuple[tuple[int, int], ...] = ()
    task: str = "random"  # the task the predictor reads the span as (task_of_span)


class LiveAtlas:
    """A built run, loaded for live analysis: target model, AP-MAE, cluster medoids, predictor.

    The atlas parts are optional: without them a call still completes and captures, and says
    which parts are missing in :attr:`missing`.
    """

    def __init__(self, run: Run, lm: TargetModel, window: int, mae: APMAEModel | None = None,
                 centers: dict[tuple[int, int], Assignment] | None = None,
                 predictor: LivePredictor | None = None, codec: ArrayStore | None = None) -> None:
        """``codec``: the run's pattern store, whose precision live patterns are brought to
        before embedding, as ``apmae encode`` does with the patterns it recomputes."""
        self.run, self.lm, self.window = run, lm, window
        self.mae, self.centers, self.predictor = mae, centers or {}, predictor
        self.codec = codec

    @classmethod
    def load(cls, run: Run, engine=None, lm: TargetModel | None = None) -> LiveAtlas:
        """Load everything the run has; ``engine`` (the SQL store) is needed for the clusters and
        the predictor."""
        meta = run.meta()
        if "layers" not in meta:
            raise LiveError(f"run {run.name} at {run.path} has no extraction results "
                            "(build it with `apmae demo` or `apmae extract`)")
        lm = lm or load_target(meta["model"], dtype=meta.get("model_dtype"))
        window = _window_of(run)
        model_dir = run.mae_model_path
        mae = APMAEModel.from_pretrained(model_dir, use_safetensors=True).eval() if (model_dir / "config.json").exists() else None
        centers = head_assignments(engine, run.name) if engine else {}
        predictor = fit_live_predictor(run, engine) if engine and centers else None
        return cls(run, lm, window, mae, centers, predictor, codec=run.pattern_store())

    @property
    def missing(self) -> list[str]:
        """Parts of the atlas this run lacks, each with the command that builds it."""
        out = []
        if self.mae is None:
            out.append("AP-MAE (apmae mae train)")
        if not self.centers:
            out.append("clusters (apmae encode, apmae cluster)")
        if self.predictor is None:
            out.append("correctness predictor (apmae predictor train; needs right and wrong "
                       "completions in both splits)")
        return out

    def check_heads(self, heads: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
        """Validated ``(layer, head)`` pairs to ablate."""
        total = self.lm.layers * self.lm.heads
        if len(heads) > total:
            raise LiveError(f"{len(heads)} heads to ablate, but the model has only {total}")
        out = []
        for pair in heads:
            if len(pair) != 2:
                raise LiveError(f"ablate entry {list(pair)} is not [layer, head]")
            layer, head = int(pair[0]), int(pair[1])
            if not (0 <= layer < self.lm.layers and 0 <= head < self.lm.heads):
                raise LiveError(f"head [{layer}, {head}] does not exist: layers 0..{self.lm.layers - 1}, "
                                f"heads 0..{self.lm.heads - 1}")
            if (layer, head) in out:
                raise LiveError(f"head [{layer}, {head}] is listed twice")
            out.append((layer, head))
        return tuple(out)

    def analyze(self, code: str, span: Span, ablate: Sequence[Sequence[int]] = ()) -> Analysis:
        """Complete ``span`` of ``code``; with ``ablate``, again with those heads switched off."""
        heads = self.check_heads(ablate)
        window = build_prompt(self.lm.tokenizer, code, span.start, span.end, self.window,
                              self.lm.ids)
        if not window.input_ids:
            raise LiveError("there is no code before the span for a left-to-right model to continue")
        try:
            self.lm.check_window(len(window.input_ids), extra=_budget(window, span))
        except ModelLoadError as e:
            raise LiveError(f"{e}: mask a shorter span") from None
        tokens = [self.lm.tokenizer.decode([i]) for i in window.input_ids]
        task = span.task or task_of_span(code, span)
        out = Analysis(span, window, tokens, len(window.input_ids) != self.window,
                       self.complete(window, span, code=code, task=task), task=task)
        if heads:
            out.ablated = self.complete(window, span, heads, code=code, task=task)
            out.ablate = heads
        return out

    @torch.inference_mode()
    def complete(self, window: Window, span: Span, heads: Sequence[tuple[int, int]] = (),
                 code: str = "", task: str = "random") -> Outcome:
        """Greedy completion of one prompt with ``heads`` ablated, judged against the span's
        target when there is one, its prefill's patterns placed in the atlas and read by the
        predictor as a completion of ``task`` (withheld when ``code`` is unlike its training)."""
        model, ids = self.lm.model, self.lm.ids
        input_ids = torch.tensor([window.input_ids], device=model.device)
        stops = [i for i in (ids.eos, ids.prefix, ids.suffix, ids.middle, ids.pad) if i is not None]
        budget = _budget(window, span)
        with ablate_heads(model, heads):
            with record_attention(model) as rec:
                out = model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
            patterns = rec.take()[0]
            last = out.logits[:, -1].float()
            row = greedy_continue(model, kv_cache(out), last, budget, stops)[0]
        c = to_completion(self.lm.tokenizer, row, stops)
        exact = first = logprob = None
        logp = last[0].log_softmax(-1)
        if span.target is not None:
            exact, first = judge(c, span.target, window.target_ids, fim=ids.fim)
            logprob = float(logp[window.target_ids[0]]) if window.target_ids else None
        best = logp.topk(min(TOP_K, logp.numel()))
        top = [{"token": self.lm.tokenizer.decode([i]), "token_id": i, "prob": math.exp(v),
                "logprob": v} for v, i in zip(best.values.tolist(), best.indices.tolist())]
        coded = self._coded(patterns)
        labels, embeddings = self.labels(coded)
        conf = confidence(logp)
        ood = out_of_distribution(code, len(window.input_ids), self.window, labels,
                                  self.predictor.max_noise_share if self.predictor else None)
        predicted = conf_predicted = None
        if self.predictor is not None:
            conf_predicted = self.predictor.predict_confidence(conf, task)
            if not ood:
                hole = hole_of(window.input_ids, ids.suffix)
                predicted = self.predictor.predict(live_features(self.predictor.kind, coded, hole,
                                                                 labels, embeddings), task)
        return Outcome(
            completion=c.text, finished=c.finished,
            first_token=self.lm.tokenizer.decode([c.first_token]) if c.first_token >= 0 else "",
            correct_exact=exact, correct_first_token=first,
            target_first_prob=None if logprob is None else math.exp(logprob),
            target_first_logprob=logprob, top_k=top,
            predicted_correct=predicted, labels=labels, confidence=conf,
            confidence_predicted=conf_predicted, out_of_distribution=ood, patterns=patterns)

    def _coded(self, patterns: torch.Tensor) -> torch.Tensor:
        """Patterns in the run's stored precision, as every training feature was computed."""
        if self.codec is None:
            return patterns.float()
        return torch.from_numpy(self.codec.quantize(patterns.float().numpy()))

    def labels(self, patterns: torch.Tensor) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``[layers, heads]`` cluster of each head's pattern (−1 noise) and ``[layers, heads,
        d]`` embeddings; None without an atlas."""
        if self.mae is None or not self.centers:
            return None, None
        L, H, n = patterns.shape
        emb = embed(self.mae, _resized(patterns.reshape(L * H, n), self.mae.config.image_size),
                    EncodeConfig())
        emb = emb.reshape(L, H, -1).numpy()
        out = np.full((L, H), -1, int)
        for (l, h), (centers, center_labels, radii) in self.centers.items():
            out[l, h] = assign(emb[l, h][None], centers, center_labels, radii)[0]
        return out, emb


def _budget(window: Window, span: Span) -> int:
    """Tokens decoded after the prompt: the target's length and a margin, or an open
    completion's fixed budget."""
    return len(window.target_ids) + EXTRA_TOKENS if span.target is not None else OPEN_TOKENS


def _window_of(run: Run) -> int:
    """The run's prompt length: its first scenario's."""
    source = run.scenarios_source
    first = next(read_scenarios(source), None)
    if first is None:
        raise LiveError(f"run {run.name} has no scenarios at {source}")
    return first.window


def _resized(packed: torch.Tensor, size: int) -> torch.Tensor:
    """Packed ``[N, T*(T+1)/2]`` patterns of a ``T``-token prompt as packed patterns of a
    ``size``-token one (nearest neighbour on the log-probabilities), for a prompt shorter or
    longer than AP-MAE's images; unchanged when ``T`` is a multiple of ``size``."""
    T = tril_window(packed.shape[-1])
    if T % size == 0:
        return packed
    full = unpack_lower_triangle(packed.float())  # -inf above the diagonal
    index = (torch.arange(size) * T // size).clamp_max(T - 1)
    return lower_triangle(full[:, index][:, :, index])
