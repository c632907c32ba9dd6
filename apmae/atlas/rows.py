"""Where the decision is: statistics of the predicting position's attention row, per head.

The greedy first token is computed at the prompt's last position (``<fim_middle>``), so what
the model weighs when it decides is that one query row of each head's pattern, not the
pattern as a whole (which mostly describes the context). Each head's row is summarised by
a few numbers that say *where* it looks relative to the masked span: the tokens just left of
the hole (the prefix's end), just right of it (the suffix's start), the ``<fim_suffix>``
marker, the first token (the usual sink) and itself, and how concentrated it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..store.format import packed_positions, tril_window

#: Per-head statistics of the last query row; EDGE tokens count as "beside the hole".
ROW_STATS = ("entropy", "max", "first_token", "self", "distance", "left_of_hole",
             "right_of_hole", "suffix_marker", "suffix_share", "local")
EDGE = 8


def hole_of(input_ids: Sequence[int], suffix_id: int | None) -> int:
    """Index of the ``<fim_suffix>`` marker, where the masked span was cut out; a prompt
    without one (left-to-right completion) has its hole at the end, the last position."""
    if suffix_id is not None:
        for i, t in enumerate(input_ids):
            if t == suffix_id:
                return i
    return len(input_ids) - 1


def _last_row_index(T: int) -> torch.Tensor:
    """Packed offsets of query row ``T - 1``, in key order."""
    rows, cols = packed_positions(T)
    at = torch.nonzero(rows == T - 1).flatten()
    return at[torch.argsort(cols[at])]


@torch.inference_mode()
def last_rows(packed: torch.Tensor) -> torch.Tensor:
    """``[..., T*(T+1)/2]`` packed log-probs -> ``[..., T]`` probabilities of the last query."""
    T = tril_window(packed.shape[-1])
    return packed[..., _last_row_index(T)].float().exp()


@torch.inference_mode()
def row_stats(packed: torch.Tensor, holes: Sequence[int]) -> torch.Tensor:
    """``[B, ..., L]`` packed log-prob patterns of B prompts (``holes[b]``: :func:`hole_of`)
    -> ``[B, ..., len(ROW_STATS)]`` statistics of each head's last query row."""
    p = last_rows(packed)
    T = p.shape[-1]
    keys = torch.arange(T)
    h = torch.as_tensor(list(holes)).view(-1, *([1] * (p.dim() - 1)))  # broadcast over heads
    k = keys.view(*([1] * (p.dim() - 1)), T)

    def share(mask: torch.Tensor) -> torch.Tensor:
        return (p * mask).sum(-1)

    entropy = -(p * p.clamp_min(1e-30).log()).sum(-1)
    distance = (p * (T - 1 - keys).float()).sum(-1)
    stats = [entropy, p.max(-1).values, p[..., 0], p[..., T - 1], distance,
             share((k >= h - EDGE) & (k < h)), share((k > h) & (k <= h + EDGE) & (k < T - 1)),
             share(k == h).where(h[..., 0] < T - 1, torch.zeros(())),  # no marker: the hole is the end
             share((k > h) & (k < T - 1)), share((k >= T - 1 - EDGE) & (k < T - 1))]
    return torch.stack(stats, -1)
