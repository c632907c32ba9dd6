"""Capture every layer x head attention pattern of a causal LM in one prefill forward pass.

The reference asks the model for ``output_attentions=True`` and concatenates all layers'
``[batch, heads, T, T]`` probabilities in float32: every layer's full square stays alive until
the forward pass ends. Here a forward hook on each attention module takes the probabilities
the moment that layer has computed them and keeps only the compact form:

* the **lower triangle** (diagonal included, row-major over ``(q, k)`` with ``k <= q``, length
  ``T*(T+1)/2``): a causal model's upper triangle is zero by construction, so it is not stored;
* the **natural log** of the probabilities, in **float16**: probabilities of a 256-token
  window span dozens of orders of magnitude and most of them sit below float16's smallest
  subnormal (6e-8), so storing ``p`` in float16 would flush them to zero; ``log p`` lies in a
  small range float16 holds with ~3 significant digits;
* clamped at :data:`LOG_FLOOR` (-60): ``log 0`` is ``-inf`` (exact zeros do occur: padded or
  out-of-window keys, float16/bfloat16 underflow) and a single ``-inf`` turns every mean,
  normalisation or loss downstream into NaN. ``e^-60 ~ 1e-26`` is far below anything a softmax
  row (whose largest entry is at least ``1/T``) can resolve in float32 (eps ~ ``e^-16``), so the
  clamp loses no information a reader could use, and -60 is exact in float16.

The float32 square of each layer is dropped as soon as the layer returns, so peak extra memory
is one layer's square, not all of them.

Usage::

    with record_attention(model) as rec:
        with torch.no_grad():
            model(input_ids)          # one or more prefill passes
        patterns = rec.take()          # [batch, layers, heads, T*(T+1)/2] float16 log-probs

Requirements and limits:

* The model must run **eager** attention (``attn_implementation="eager"``): sdpa/flash kernels
  never materialise the probabilities. Another implementation raises ``ValueError`` on entry,
  and a module that returns no weights raises ``RuntimeError`` rather than recording nothing.
* **Prefill only**: a cached decoding step (``q != k``) raises ``ValueError``; a recorder is
  meant for a single full-window pass, not ``generate()``.
* The recorded weights are what the model used: in ``train()`` mode with attention dropout they
  are the dropped-out weights, so call ``model.eval()``.
* **Threads**: hooks live on the shared modules, so while a recorder is active its hooks run
  for *every* call of the model, from any thread. Each hook therefore first checks a
  :class:`contextvars.ContextVar` holding the recorders active in the *current* context and
  returns at once otherwise: a recorder records only calls made inside its own ``with`` block
  (in its own thread or asyncio task). Nested recorders on one model both record the inner
  calls. Not compatible with ``torch.compile`` (dynamo does not trace ``ContextVar.get``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

import numpy as np
import torch
from torch import nn

#: Floor of the stored log-probabilities (see the module docstring for why -60).
LOG_FLOOR = -60.0

#: Recorders active in the current thread / asyncio task; hooks record only for these.
_ACTIVE: ContextVar[frozenset[AttentionRecording]] = ContextVar("apmae_active_recorders", default=frozenset())


# --- lower triangle packing -------------------------------------------------------------------


def tril_size(T: int) -> int:
    """Length of the packed lower triangle (diagonal included) of a ``T x T`` matrix."""
    return T * (T + 1) // 2


def tril_window(L: int) -> int:
    """The window ``T`` whose packed lower triangle has length ``L`` (inverse of :func:`tril_size`)."""
    T = (math.isqrt(8 * L + 1) - 1) // 2
    if tril_size(T) != L:
        raise ValueError(f"{L} is not a triangular number T*(T+1)/2")
    return T


@lru_cache(maxsize=32)
def _tril_flat_index_np(T: int) -> np.ndarray:
    """Flat indices ``q*T + k`` of the lower triangle, row-major; cached because T rarely changes."""
    rows, cols = np.tril_indices(T)  # row-major order, diagonal included
    return rows.astype(np.int64) * T + cols


@lru_cache(maxsize=32)
def _tril_flat_index(T: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(_tril_flat_index_np(T)).to(device)


def lower_triangle(x: torch.Tensor) -> torch.Tensor:
    """Pack ``[..., T, T]`` into ``[..., T*(T+1)/2]``: rows ``q`` in order, keys ``k <= q``."""
    T = x.shape[-1]
    if x.shape[-2] != T:
        raise ValueError(f"lower_triangle needs square matrices, got {tuple(x.shape[-2:])}")
    return x.flatten(-2)[..., _tril_flat_index(T, x.device)]


def unpack_lower_triangle(
    v: torch.Tensor | np.ndarray, T: int | None = None, fill: float = float("-inf")
) -> torch.Tensor | np.ndarray:
    """Rebuild ``[..., T, T]`` from a packed ``[..., T*(T+1)/2]`` (tensor or array, same type out).

    ``fill`` goes above the diagonal: ``-inf`` (default) for log-probabilities, so that ``exp``
    gives exact zeros there; ``0.0`` for probabilities.
    """
    L = v.shape[-1]
    T = tril_window(L) if T is None else T
    if tril_size(T) != L:
        raise ValueError(f"packed length {L} does not match window T={T} (expected {tril_size(T)})")
    lead = tuple(v.shape[:-1])
    if isinstance(v, np.ndarray):
        out = np.full(lead + (T * T,), fill, dtype=v.dtype)
        out[..., _tril_flat_index_np(T)] = v
        return out.reshape(lead + (T, T))
    out = torch.full(lead + (T * T,), fill, dtype=v.dtype, device=v.device)
    out[..., _tril_flat_index(T, v.device)] = v
    return out.view(lead + (T, T))


def compact_log_probs(weights: torch.Tensor, floor: float = LOG_FLOOR) -> torch.Tensor:
    """``[..., T, T]`` probabilities -> ``[..., T*(T+1)/2]`` float16 ``max(log p, floor)``.

    Packs first (half the elements to convert), takes the log in float32 (a bfloat16 log would
    be coarser than the float16 we store), then casts.
    """
    packed = lower_triangle(weights).float()
    return packed.log_().clamp_(min=floor).to(torch.float16)


# --- finding the attention modules -----------------------------------------------------------


def attention_modules(model: nn.Module) -> list[tuple[nn.Module, int]]:
    """The model's self-attention modules in layer order, each with the index of its weights output.

    Uses the model's own ``_can_record_outputs["attentions"]`` declaration (what transformers
    hooks for ``output_attentions``), so Starcoder2, Llama, GPT-2 (whose cross-attention is
    declared separately and skipped) and other decoder models are handled alike.
    """
    spec = (getattr(model, "_can_record_outputs", None) or {}).get("attentions")
    if spec is None:
        raise ValueError(f"{type(model).__name__} declares no attention outputs (_can_record_outputs)")
    specs = spec if isinstance(spec, list) else [spec]
    found: list[tuple[nn.Module, int]] = []
    for name, module in model.named_modules():
        for s in specs:
            target = s if isinstance(s, type) else getattr(s, "target_class", None)
            class_name = s if isinstance(s, str) else getattr(s, "class_name", None)
            matches = (target is not None and isinstance(module, target)) or (
                class_name is not None and name.endswith(class_name)
            )
            layer_name = getattr(s, "layer_name", None)
            if matches and layer_name is not None:
                matches = f".{layer_name.strip('.')}." in f".{name}."
            if matches:
                found.append((module, getattr(s, "index", 1)))
                break
    if not found:
        raise ValueError(f"no attention modules found in {type(model).__name__}")
    return found


# --- the recorder ------------------------------------------------------------------------------


class AttentionRecording:
    """What one :func:`record_attention` block captured: per layer, one chunk per forward pass."""

    def __init__(self, num_layers: int, floor: float) -> None:
        self.num_layers = num_layers
        self.floor = floor
        self._chunks: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]

    def _add(self, layer: int, weights: torch.Tensor) -> None:
        q, k = weights.shape[-2:]
        if q != k:
            raise ValueError(
                f"record_attention captures full prefill passes only; layer {layer} attended "
                f"{q} queries over {k} keys (a cached decoding step?)"
            )
        self._chunks[layer].append(compact_log_probs(weights, self.floor))

    def __len__(self) -> int:
        """Number of sequences recorded and not yet taken."""
        return sum(c.shape[0] for c in self._chunks[0])

    def take(self) -> torch.Tensor:
        """Everything recorded so far as ``[batch, layers, heads, T*(T+1)/2]`` float16, then forget it.

        Several forward passes inside one block are concatenated along ``batch``, in call order.
        """
        counts = {len(c) for c in self._chunks}
        if counts == {0}:
            raise RuntimeError("no forward pass was recorded inside this record_attention block")
        if len(counts) != 1:
            raise RuntimeError(f"layers recorded unequal numbers of passes: {[len(c) for c in self._chunks]}")
        per_layer = [torch.cat(c) if len(c) > 1 else c[0] for c in self._chunks]
        self._chunks = [[] for _ in range(self.num_layers)]
        return torch.stack(per_layer, dim=1)


def _check_eager(model: nn.Module) -> None:
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if impl != "eager":
        raise ValueError(
            f"record_attention needs eager attention, but {type(model).__name__} runs {impl!r}, which "
            "never materialises the probabilities; load it with attn_implementation=\"eager\" or call "
            "model.set_attn_implementation(\"eager\")"
        )


@contextmanager
def record_attention(model: nn.Module, floor: float = LOG_FLOOR) -> Iterator[AttentionRecording]:
    """Record every attention module's probabilities while the block runs (see module docstring).

    Hooks are installed on entry and always removed on exit, exceptions included; only forward
    passes made in this block's own context (thread / task) are recorded.
    """
    _check_eager(model)
    modules = attention_modules(model)
    recording = AttentionRecording(len(modules), floor)

    def make_hook(layer: int, index: int):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            if recording not in _ACTIVE.get():
                return  # a call from another thread/task, or outside this block
            weights = output[index] if isinstance(output, tuple) and len(output) > index else None
            if weights is None:
                raise RuntimeError(
                    f"attention layer {layer} ({type(module).__name__}) returned no weights; "
                    "is the model really running eager attention?"
                )
            recording._add(layer, weights)

        return hook

    handles = []
    token = None
    try:
        for layer, (module, index) in enumerate(modules):
            handles.append(module.register_forward_hook(make_hook(layer, index)))
        token = _ACTIVE.set(_ACTIVE.get() | {recording})
        yield recording
    finally:
        if token is not None:
            _ACTIVE.reset(token)
        for handle in handles:
            handle.remove()
