"""Which stored attention patterns AP-MAE sees, and in what order.

An *item* is one (scenario, layer, head) pattern. Training draws, per scenario and layer, a
random subset of the heads (the paper: 25%) afresh every epoch, so that over epochs every head
is seen while one epoch does not over-represent any scenario. The order of epoch ``e`` is a pure
function of ``(seed, e)``: a resumed run recomputes where it stood from its step count, and the
ranks of a distributed run take disjoint slices of the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..run import Run
from ..scenarios import TASKS
from ..store.arrays import ArrayStore

COMPLETIONS = ("any", "correct", "incorrect")


@dataclass(frozen=True)
class PatternFilter:
    """Stored patterns to use: their files' split, tasks and completions (first-token
    correctness, the paper's criterion). The paper trains on correct ``random`` ones; the
    embedded run has too few of those, so the default is every task but the ``noise`` control.
    Noise scenarios come from no file; they count as test split (a control is for evaluating)."""

    split: str = "train"
    tasks: str = "all"  # comma-separated task names, or "all" (every task but noise)
    completions: str = "any"  # any | correct | incorrect

    def task_set(self) -> set[str]:
        if self.tasks == "all":
            return set(TASKS) - {"noise"}
        tasks = {t.strip() for t in self.tasks.split(",") if t.strip()}
        unknown = tasks - set(TASKS)
        if unknown or not tasks:
            raise ValueError(f"unknown tasks {sorted(unknown)}; choose from {', '.join(TASKS)}")
        return tasks

    def check(self) -> None:
        self.task_set()
        if self.completions not in COMPLETIONS:
            raise ValueError(f"completions {self.completions!r}: choose from {', '.join(COMPLETIONS)}")
        if self.split not in ("train", "test"):
            raise ValueError(f"split {self.split!r}: choose train or test")


def select(run: Run, flt: PatternFilter) -> list[str]:
    """Ids of the run's stored scenarios that pass ``flt``, in the store's order."""
    flt.check()
    store = run.pattern_store()
    if store is None:
        raise ValueError(f"run {run.name} has no stored patterns (run `apmae extract` with --keep)")
    tasks = flt.task_set()
    wanted = {"any": None, "correct": True, "incorrect": False}[flt.completions]
    ok = {r["id"] for r in run.results()
          if r["task"] in tasks and (r["split"] or "test") == flt.split
          and (wanted is None or bool(r["correct_first_token"]) == wanted)}
    return [i for i in store.ids() if i in ok]


@lru_cache(maxsize=2)  # every step of an epoch slices the same order: draw it once
def epoch_items(n_scenarios: int, layers: int, heads: int, head_fraction: float,
                seed: int, epoch: int) -> np.ndarray:
    """``[M, 3]`` rows (scenario index, layer, head) of one epoch, shuffled: per scenario and
    layer, ``max(1, round(head_fraction * heads))`` distinct heads."""
    rng = np.random.default_rng([seed, epoch])
    k = max(1, min(heads, round(head_fraction * heads)))
    picks = np.argsort(rng.random((n_scenarios, layers, heads)), axis=-1)[..., :k]
    s, l, _ = np.meshgrid(np.arange(n_scenarios), np.arange(layers), np.arange(k), indexing="ij")
    items = np.stack([s.ravel(), l.ravel(), picks.ravel()], axis=1)
    items = items[rng.permutation(len(items))]
    items.flags.writeable = False  # shared by every caller through the cache
    return items


def all_items(n_scenarios: int, layers: int, heads: int) -> np.ndarray:
    """Every (scenario index, layer, head), in order."""
    s, l, h = np.meshgrid(np.arange(n_scenarios), np.arange(layers), np.arange(heads), indexing="ij")
    return np.stack([s.ravel(), l.ravel(), h.ravel()], axis=1)


def load_packed(store: ArrayStore, ids: list[str], items: np.ndarray) -> torch.Tensor:
    """``[B, L]`` packed log-probability patterns of ``items`` (see :mod:`apmae.capture`),
    decoded as one batch: per row, decoding cost 20x the read (a training step's 64)."""
    rows = [store.get(ids[s], int(l), int(h), raw=True) for s, l, h in items]
    return torch.from_numpy(store.decode_values(np.stack(rows)))
