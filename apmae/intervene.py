"""Head ablation: zero chosen attention heads' contributions for the calls inside a ``with`` block.

The paper's intervention: a forward **pre**-hook on each layer's attention output projection
(``self_attn.o_proj`` in Llama / Starcoder2 / Mistral-style models, ``attn.c_proj`` in GPT-2)
sets the chosen heads' slices of the projection's *input* to 0 at every position. The
projection's input is the heads' outputs concatenated (``num_attention_heads x head_dim``, also
under grouped-query attention), so this is exactly "that head contributes nothing": the same
as zeroing the head's columns of the projection weight (rows for GPT-2's ``Conv1D``), the bias
(if any) untouched.

Usage::

    with ablate_heads(model, [(layer, head), ...]):
        logits = model(input_ids).logits

Isolation. Hooks are state on shared modules, so a hook runs for every call of the model, from
any thread. The heads to ablate therefore do not live in the hooks but in a
:class:`contextvars.ContextVar` mapping projection module -> ablated heads, set by the ``with``
block for its own context only; each hook looks its module up there and does nothing when the
current thread / asyncio task has no ablation for it. A second thread running the same model
meanwhile gets the plain model's answers. One hook per projection is shared by all blocks,
reference-counted, and removed when the last block using it exits (exceptions included).
Nested blocks ablate the **union** of their heads; leaving the inner one restores the outer set.
Contexts copied into worker threads (``asyncio.to_thread``, ``contextvars.copy_context().run``)
inherit the ablation, as they inherit any ContextVar. Not compatible with ``torch.compile``
(dynamo does not trace ``ContextVar.get``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import torch
from torch import nn

from apmae.capture import attention_modules
from apmae.store.format import tril_window

#: Attribute names of an attention module's output projection, tried in order.
PROJECTION_NAMES: tuple[str, ...] = ("o_proj", "out_proj", "c_proj", "dense", "wo")


class _LayerAblation:
    """The heads ablated at one projection in one context, with its zeroing mask per device."""

    __slots__ = ("_mask_cpu", "_masks", "heads")

    def __init__(self, heads: frozenset[int], head_width: int, in_features: int) -> None:
        self.heads = heads
        mask = torch.zeros(in_features, dtype=torch.bool)
        for h in heads:
            mask[h * head_width:(h + 1) * head_width] = True
        self._mask_cpu = mask
        self._masks: dict[torch.device, torch.Tensor] = {}

    def mask(self, device: torch.device) -> torch.Tensor:
        """``True`` on the ablated features; cached per device (no host-to-device copy per call)."""
        m = self._masks.get(device)
        if m is None:
            m = self._masks[device] = self._mask_cpu.to(device)
        return m


#: Ablations active in the current thread / asyncio task: projection module -> its ablation.
_ABLATED: ContextVar[Mapping[nn.Module, _LayerAblation] | None] = ContextVar("apmae_ablated_heads", default=None)

#: Installed hooks, shared by all blocks: projection module -> [hook handle, users].
_HOOKS: dict[nn.Module, list] = {}
_HOOKS_LOCK = threading.Lock()


def _pre_hook(module: nn.Module, args: tuple) -> tuple | None:
    """Zero the ablated heads' input slices, if the current context ablates this projection."""
    active = _ABLATED.get()
    if not active:
        return None  # the common case for calls outside any block: one ContextVar read
    ablation = active.get(module)
    if ablation is None:
        return None
    if not args:
        raise RuntimeError(f"{type(module).__name__} was called without a positional input; cannot ablate heads")
    x = args[0]
    return (x.masked_fill(ablation.mask(x.device), 0),) + tuple(args[1:])


def _acquire(projections: Iterable[nn.Module]) -> None:
    with _HOOKS_LOCK:
        for proj in projections:
            entry = _HOOKS.get(proj)
            if entry is None:
                _HOOKS[proj] = [proj.register_forward_pre_hook(_pre_hook), 1]
            else:
                entry[1] += 1


def _release(projections: Iterable[nn.Module]) -> None:
    with _HOOKS_LOCK:
        for proj in projections:
            entry = _HOOKS[proj]
            entry[1] -= 1
            if entry[1] == 0:
                entry[0].remove()
                del _HOOKS[proj]


# --- finding the projections -------------------------------------------------------------------


def output_projection(attention: nn.Module) -> nn.Module:
    """The output projection of one attention module (the first of :data:`PROJECTION_NAMES` it has)."""
    for name in PROJECTION_NAMES:
        proj = getattr(attention, name, None)
        if isinstance(proj, nn.Module):
            return proj
    raise ValueError(
        f"{type(attention).__name__} has no output projection named any of {', '.join(PROJECTION_NAMES)}"
    )


def output_projections(model: nn.Module) -> list[nn.Module]:
    """Each layer's attention output projection, in layer order (the layers :func:`attention_modules` finds)."""
    return [output_projection(module) for module in attention_modules(model)]


def num_attention_heads(model: nn.Module) -> int:
    """Query heads per layer, from the model config (``num_attention_heads``, or GPT-2's ``n_head``)."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    n = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"cannot tell the number of attention heads of {type(model).__name__} from its config")
    return n


def _in_features(proj: nn.Module) -> int:
    """Input width of a projection: ``nn.Linear.in_features`` or GPT-2 ``Conv1D.nx``."""
    for attr in ("in_features", "nx"):
        n = getattr(proj, attr, None)
        if isinstance(n, int):
            return n
    raise ValueError(f"cannot tell the input width of {type(proj).__name__} (no in_features / nx)")


def _head_width(proj: nn.Module, num_heads: int, layer: int) -> int:
    width, rest = divmod(_in_features(proj), num_heads)
    if rest or width == 0:
        raise ValueError(
            f"layer {layer}: output projection input width {_in_features(proj)} is not a multiple of "
            f"{num_heads} heads"
        )
    return width


def _validate(heads: Iterable[tuple[int, int]], num_layers: int, num_heads: int) -> dict[int, set[int]]:
    """The chosen heads grouped by layer; a clear ``ValueError`` for anything that cannot be meant."""
    chosen = [tuple(h) for h in heads]
    total = num_layers * num_heads
    if len(chosen) > total:
        raise ValueError(
            f"{len(chosen)} heads requested but the model has only {total} "
            f"({num_layers} layers x {num_heads} heads)"
        )
    by_layer: dict[int, set[int]] = {}
    for entry in chosen:
        if len(entry) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in entry):
            raise ValueError(f"each head must be a (layer, head) pair of ints, got {entry!r}")
        layer, head = entry
        if not 0 <= layer < num_layers:
            raise ValueError(f"layer {layer} out of range: the model has layers 0..{num_layers - 1}")
        if not 0 <= head < num_heads:
            raise ValueError(f"head {head} (layer {layer}) out of range: each layer has heads 0..{num_heads - 1}")
        if head in by_layer.setdefault(layer, set()):
            raise ValueError(f"head ({layer}, {head}) is listed more than once")
        by_layer[layer].add(head)
    return by_layer


# --- the context manager -----------------------------------------------------------------------


@contextmanager
def ablate_heads(model: nn.Module, heads: Iterable[tuple[int, int]]) -> Iterator[frozenset[tuple[int, int]]]:
    """Zero the given ``(layer, head)`` contributions for the forward passes run inside the block.

    Only calls from this block's own thread / asyncio task are affected (see the module
    docstring). Nested blocks add their heads to the enclosing ones. Yields the effective set
    of ablated ``(layer, head)`` pairs of this model (the union with enclosing blocks). An empty
    ``heads`` is a no-op. Works with any attention implementation (eager, sdpa, flash).
    """
    projections = output_projections(model)
    num_heads = num_attention_heads(model)
    by_layer = _validate(heads, len(projections), num_heads)

    outer = _ABLATED.get() or {}
    active = dict(outer)
    for layer, new_heads in by_layer.items():
        proj = projections[layer]
        previous = outer.get(proj)
        union = frozenset(new_heads) | (previous.heads if previous is not None else frozenset())
        active[proj] = _LayerAblation(union, _head_width(proj, num_heads, layer), _in_features(proj))
    effective = frozenset(
        (layer, h) for layer, proj in enumerate(projections) if proj in active for h in active[proj].heads
    )

    hooked = [projections[layer] for layer in by_layer]
    _acquire(hooked)
    try:
        token = _ABLATED.set(active)
        try:
            yield effective
        finally:
            _ABLATED.reset(token)
    finally:
        _release(hooked)


def pattern_change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """How far an ablation moved each head's attention: ``[layers, heads]``, the mean over query
    rows of the total variation distance between the two runs' rows (0: unchanged, 1: disjoint),
    from packed log-probabilities ``[layers, heads, T*(T+1)/2]``. Heads up to the first
    ablated layer stay at 0: switching a head off changes only what later layers see."""
    T = tril_window(before.shape[-1])
    moved = np.abs(np.exp(after.astype(np.float32)) - np.exp(before.astype(np.float32)))
    return moved.sum(-1) / (2 * T)
