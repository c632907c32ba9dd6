"""What the two training loops (the default LM's, AP-MAE's) share: the learning-rate schedule
and the optimizer's decay groups."""

from __future__ import annotations

import math
from typing import Callable

import torch


def lr_at(step: int, lr: float, min_lr: float, warmup: int, steps: int) -> float:
    """Linear warm-up over ``warmup`` steps, then one cosine cycle down to ``min_lr`` at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def adamw(model: torch.nn.Module, lr: float, weight_decay: float, exempt: Callable[[str], bool],
          fused: bool = False) -> torch.optim.AdamW:
    """AdamW (0.9, 0.95) with weight decay on matrices only, not on biases and norms (vectors)
    nor on the matrices whose name ``exempt`` picks (embeddings: decay would pull rare tokens'
    or positions' rows to zero); ``fused``: one kernel per parameter for the whole update."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and not exempt(name) else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95),
                             fused=fused)
