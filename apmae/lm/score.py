"""Greedy completion of FIM prompts, judged two ways.

``correct_first_token`` is the paper's: the argmax after the prompt equals the target's first
token. ``correct_exact`` asks more: the decoded completion, up to end-of-text, equals the
target text. Prompts of one batch have the same length (a fixed window), so no padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class Completion:
    ids: list[int]  # generated ids, end-of-text excluded
    text: str
    first_token: int
    finished: bool  # ended with end-of-text within the budget


@torch.inference_mode()
def greedy_continue(model, past_key_values, last_logits: torch.Tensor, max_new_tokens: int,
                    stop_ids: Sequence[int]) -> list[list[int]]:
    """Continue greedily from a prefilled cache; ``last_logits`` is ``[batch, vocab]``.

    Returns each row's generated ids including its stop token, if reached.
    """
    batch = last_logits.size(0)
    stop = torch.tensor(list(stop_ids), device=last_logits.device)
    tokens = last_logits.argmax(-1)  # [batch]
    out = [tokens]
    done = torch.isin(tokens, stop)
    for _ in range(max_new_tokens - 1):
        if bool(done.all()):
            break
        step = model(input_ids=tokens[:, None], past_key_values=past_key_values, use_cache=True)
        past_key_values = step.past_key_values
        tokens = torch.where(done, stop[0], step.logits[:, -1].argmax(-1))
        out.append(tokens)
        done |= torch.isin(tokens, stop)
    generated = torch.stack(out, 1).tolist()  # [batch, new]
    rows = []
    for row in generated[:batch]:
        cut = next((i + 1 for i, t in enumerate(row) if t in stop_ids), len(row))
        rows.append(row[:cut])
    return rows


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
