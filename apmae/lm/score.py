"""Greedy completion of FIM prompts, judged two ways.

``correct_first_token`` is the paper's: the argmax after the prompt equals the target's first
token. ``correct_exact`` asks more: the decoded completion, up to end-of-text, equals the
target text. Prompts of one batch have the same length (a fixed window), so no padding.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Sequence

import torch


@dataclass(frozen=True)
class Completion:
    ids: list[int]  # generated ids, end-of-text excluded
    text: str
    first_token: int
    finished: bool  # ended with end-of-text within the budget


def kv_cache(output) -> object:
    """A forward pass's key-value cache: ``cache`` since transformers 5.2x renamed it,
    ``past_key_values`` before (the old name warns now and goes in 5.40)."""
    cache = output.get("cache") if isinstance(output, Mapping) else getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def cache_argument(model) -> str:
    """The name ``model.forward`` takes the cache by, in this transformers version."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.inference_mode()
def greedy_continue(model, past_key_values, last_logits: torch.Tensor, max_new_tokens: int,
                    stop_ids: Sequence[int],
                    viable: Callable[[int, list[int]], bool] | None = None) -> list[list[int]]:
    """Continue greedily from a prefilled cache (:func:`kv_cache` of the prefill's output);
    ``last_logits`` is ``[batch, vocab]``.

    Returns each row's generated ids including its stop token, if reached. ``viable(row,
    ids)`` may end a row early (e.g. once it can no longer match its target): most
    completions of a small model go wrong within a token or two, and each decoding step
    costs a forward pass of the whole batch.
    """
    stop = torch.tensor(list(stop_ids), device=last_logits.device)
    name = cache_argument(model)
    rows = [[t] for t in last_logits.argmax(-1).tolist()]
    live = [i for i, row in enumerate(rows) if not _ends(row, stop_ids, viable, i)]
    while live and len(rows[live[0]]) < max_new_tokens:
        tokens = torch.tensor([row[-1] for row in rows], device=last_logits.device)
        # rows that ended are fed a stop token; their outputs are ignored
        fed = torch.where(torch.tensor([i in live for i in range(len(rows))],
                                       device=tokens.device), tokens, stop[0])
        step = model(input_ids=fed[:, None], use_cache=True, **{name: past_key_values})
        past_key_values = kv_cache(step)
        nxt = step.logits[:, -1].argmax(-1).tolist()
        for i in live:
            rows[i].append(nxt[i])
        live = [i for i in live if not _ends(rows[i], stop_ids, viable, i)]
    return rows


def _ends(row: list[int], stop_ids: Sequence[int],
          viable: Callable[[int, list[int]], bool] | None, i: int) -> bool:
    """A row ends at a stop token or once ``viable`` rules it out."""
    return row[-1] in stop_ids or (viable is not None and not viable(i, row))


def exact_still_possible(tokenizer, targets: Sequence[str]) -> Callable[[int, list[int]], bool]:
    """A ``viable`` predicate: the text so far is a prefix of the row's target (a partly
    decoded multi-byte character keeps the row going)."""
    def viable(i: int, ids: list[int]) -> bool:
        text = tokenizer.decode(ids)
        return "\ufffd" in text or targets[i].startswith(text)
    return viable


def to_completion(tokenizer, row: list[int], stop_ids: Sequence[int]) -> Completion:
    finished = bool(row) and row[-1] in stop_ids
    ids = row[:-1] if finished else row
    return Completion(ids=ids, text=tokenizer.decode(ids), first_token=row[0] if row else -1,
                      finished=finished)


def judge(completion: Completion, target: str, target_ids: Sequence[int],
          fim: bool = True) -> tuple[bool, bool]:
    """``(correct_exact, correct_first_token)`` of one completion.

    A FIM completion is exact when it is the target and then ends; a left-to-right model has no
    end marker for the middle, so there it is exact when it starts with the target.
    """
    if fim:
        exact = completion.finished and completion.text == target
    else:
        exact = completion.text.startswith(target)
    first = bool(target_ids) and completion.first_token == target_ids[0]
    return exact, first
