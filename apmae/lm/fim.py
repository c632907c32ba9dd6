"""Fill-in-the-middle prompts over a fixed token window, placed as in the paper.

The prompt is ``<fim_prefix> prefix <fim_suffix> suffix <fim_middle>`` (PSM) and is exactly
``window`` tokens long, so every attention pattern of a run has the same shape. Prefix, middle
and suffix are tokenized separately — as a FIM model sees them — so the target's first token
is the first token of the masked span on its own.

Placement: if the span starts in the first half of the window, the window is the start of the
file; otherwise it is centred on the span (shifted back when the suffix runs out). Files too
short to fill the window are skipped, as in the paper.

A model without FIM tokens falls back to left-to-right completion: the prompt is the last
``window`` tokens before the span, and the suffix is not seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .tokenizer import EOS, FIM_MIDDLE, FIM_PAD, FIM_PREFIX, FIM_SUFFIX

#: Characters of context tokenized on each side before falling back to the whole file;
#: generous against dense text (4 characters per token is typical for Java).
CHARS_PER_TOKEN_BOUND = 12


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the control tokens; ``prefix`` is None for a model without FIM tokens."""

    eos: int
    prefix: int | None = None
    suffix: int | None = None
    middle: int | None = None
    pad: int | None = None

    @property
    def fim(self) -> bool:
        return self.prefix is not None


def special_ids(tokenizer) -> SpecialIds:
    """Look up EOS and the StarCoder FIM tokens in any HF tokenizer."""
    vocab = tokenizer.get_vocab()
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else vocab.get(EOS, 0)
    if all(t in vocab for t in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE)):
        return SpecialIds(eos=eos, prefix=vocab[FIM_PREFIX], suffix=vocab[FIM_SUFFIX],
                          middle=vocab[FIM_MIDDLE], pad=vocab.get(FIM_PAD))
    return SpecialIds(eos=eos)


def encode(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without BOS/EOS; uses the fast backend when there is one.

    Text that spells a control token (a Java string holding ``"<fim_middle>"``) stays text:
    control tokens enter a prompt only by id, so the backend is switched, once and for good,
    to encode special-token text as ordinary text.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.encode_special_tokens = True
        return [e.ids for e in backend.encode_batch(list(texts), add_special_tokens=False)]
    return [tokenizer.encode(t, add_special_tokens=False, split_special_tokens=True) for t in texts]


@dataclass(frozen=True)
class Window:
    """One prompt: ``input_ids`` has exactly the window's length."""

    input_ids: list[int]
    target_ids: list[int]  # the masked span tokenized alone
    prefix_ids: list[int]  # the prefix inside the window
    suffix_ids: list[int]  # the suffix inside the window (empty for left-to-right)


def place(n_prefix: int, n_suffix: int, context: int) -> tuple[int, int] | None:
    """How many prefix and suffix tokens a window of ``context`` tokens keeps, or None."""
    if n_prefix + n_suffix < context:
        return None
    if n_prefix < context // 2:  # span early in the file: the file's first window
        return n_prefix, context - n_prefix
    keep_suffix = min(n_suffix, context - context // 2)
    return context - keep_suffix, keep_suffix


def build_window(tokenizer, text: str, start: int, end: int, window: int,
                 ids: SpecialIds | None = None) -> Window | None:
    """The prompt that masks ``text[start:end]``, or None if the file is too short."""
    ids = ids or special_ids(tokenizer)
    reach = window * CHARS_PER_TOKEN_BOUND
    lo, hi = max(0, start - reach), min(len(text), end + reach)
    prefix, middle, suffix = encode(tokenizer, [text[lo:start], text[start:end], text[end:hi]])
    if not ids.fim:
        if len(prefix) < window and lo > 0:
            prefix = encode(tokenizer, [text[:start]])[0]
        if len(prefix) < window:
            return None
        return Window(prefix[-window:], middle, prefix[-window:], [])
    context = window - 3
    if lo > 0 and len(prefix) < context:  # the cut was not generous enough: use it all
        prefix = encode(tokenizer, [text[:start]])[0]
    if hi < len(text) and len(suffix) < context:
        suffix = encode(tokenizer, [text[end:]])[0]
    kept = place(len(prefix), len(suffix), context)
    if kept is None:
        return None
    n_p, n_s = kept
    # A cut prefix has >= context tokens, so it is never "early": the cut cannot move the window.
    prefix, suffix = prefix[len(prefix) - n_p:], suffix[:n_s]
    return Window([ids.prefix, *prefix, ids.suffix, *suffix, ids.middle], middle, prefix, suffix)


def build_prompt(tokenizer, text: str, start: int, end: int, window: int,
                 ids: SpecialIds | None = None) -> Window:
    """:func:`build_window`, or for a text with fewer tokens than the window the whole text as a
    shorter prompt: a pasted snippet must get an answer, where mining skips short files."""
    ids = ids or special_ids(tokenizer)
    found = build_window(tokenizer, text, start, end, window, ids)
    if found is not None:
        return found
    prefix, middle, suffix = encode(tokenizer, [text[:start], text[start:end], text[end:]])
    if not ids.fim:
        return Window(prefix[-window:], middle, prefix[-window:], [])
    return Window([ids.prefix, *prefix, ids.suffix, *suffix, ids.middle], middle, prefix, suffix)
