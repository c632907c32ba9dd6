"""Capture every layer x head attention pattern of a causal LM in one prefill forward pass.

The reference asks the model for ``output_attentions=True`` (eager attention) and concatenates
all layers' ``[batch, heads, T, T]`` probabilities in float32: every layer's full square stays
alive until the forward pass ends. Here the model runs apmae's own attention implementation,
:data:`CAPTURE_ATTENTION`, registered with transformers' ``AttentionInterface``:

* **when nothing records** (decoding steps, the sweep, interventions) it *is* SDPA
  (transformers' ``sdpa_attention_forward``): no probabilities are materialised at all;
* **inside** :func:`record_attention` it computes each layer's log-probabilities the moment the
  layer runs and keeps only the compact form. On CPU with a plain causal mask the output
  comes from PyTorch's flash kernel, which also returns each query's log-sum-exp ``lse``, so
  ``log p = q k^T * scale - lse`` needs one matmul and no softmax or exp over the square
  (eager attention's dominant cost); otherwise (masks, GPUs) a float32 ``log_softmax`` gives
  ``log p`` and ``exp(log p) @ v`` the output, as eager attention computes it.

The compact form is the pattern store's (:mod:`apmae.store.format`): the packed lower triangle of
natural-log probabilities, float16 floored or 8-bit coded.

The float32 square of each layer is dropped as soon as the layer returns, so peak extra memory
is one layer's square, not all of them.

Usage::

    model.set_attn_implementation(CAPTURE_ATTENTION)   # apmae.lm.load does this
    with record_attention(model) as rec:
        with torch.no_grad():
            model(input_ids)          # one or more prefill passes
        patterns = rec.take()          # [batch, layers, heads, T*(T+1)/2] float16 log-probs

Requirements and limits:

* The model must run :data:`CAPTURE_ATTENTION`; another implementation raises ``ValueError``
  on entry. Its attention modules must dispatch through transformers' attention interface
  (Starcoder2, Llama, GPT-2 and most current models do); a model whose layers do not records
  nothing, and :meth:`AttentionRecording.take` says so.
* **Prefill only**: a cached decoding step (``q != k``) inside a recorder raises ``ValueError``.
* Recorded weights are what the model used; in ``train()`` mode with attention dropout they
  are the dropped-out ones, so call ``model.eval()``.
* **Threads**: the attention function is shared by every call of the model, from any thread.
  It records only for the recorders in a :class:`contextvars.ContextVar` of the *current*
  context: a recorder records only calls made inside its own ``with`` block (its own thread or
  asyncio task). Nested recorders on one model both record the inner calls. Not compatible
  with ``torch.compile`` (dynamo does not trace ``ContextVar.get``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from .store.format import LOG_FLOOR, code_affine, fold_in, halves, lower_triangle, to_stored

if TYPE_CHECKING:
    from .lm.load import TargetModel
    from .scenarios import Scenario

#: The attention implementation that captures (see the module docstring); load a model with
#: ``attn_implementation=CAPTURE_ATTENTION`` or switch it with ``set_attn_implementation``.
CAPTURE_ATTENTION = "apmae_capture"

#: Recorders active in the current thread / asyncio task; the attention function records only for these.
_ACTIVE: ContextVar[frozenset[AttentionRecording]] = ContextVar("apmae_active_recorders", default=frozenset())


# --- finding the attention modules -----------------------------------------------------------


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The model's self-attention modules in layer order.

    Uses the model's own ``_can_record_outputs["attentions"]`` declaration (what transformers
    hooks for ``output_attentions``), so Starcoder2, Llama, GPT-2 (whose cross-attention is
    declared separately and skipped) and other decoder models are handled alike.
    """
    spec = (getattr(model, "_can_record_outputs", None) or {}).get("attentions")
    if spec is None:
        raise ValueError(f"{type(model).__name__} declares no attention outputs (_can_record_outputs)")
    specs = spec if isinstance(spec, list) else [spec]
    found: list[nn.Module] = []
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
                found.append(module)
                break
    if not found:
        raise ValueError(f"no attention modules found in {type(model).__name__}")
    return found


# --- the recorder ------------------------------------------------------------------------------


class AttentionRecording:
    """What one :func:`record_attention` block captured: per layer, one chunk per forward pass."""

    def __init__(self, layers: dict[nn.Module, int], floor: float, log_range: float) -> None:
        self.layers = layers  # attention module -> its layer
        self.num_layers = len(layers)
        self.floor = floor
        self.log_range = log_range
        self.affine = code_affine(log_range)
        self._chunks: list[list[torch.Tensor]] = [[] for _ in range(self.num_layers)]

    def _add(self, layer: int, values: torch.Tensor) -> None:
        """Keep one layer's packed ``gain * log p + bias`` (float32, consumed) in the stored form."""
        self._chunks[layer].append(to_stored(values, self.floor, self.log_range))

    def __len__(self) -> int:
        """Number of sequences recorded and not yet taken."""
        return sum(c.shape[0] for c in self._chunks[0])

    def take(self) -> torch.Tensor:
        """Everything recorded so far as ``[batch, layers, heads, T*(T+1)/2]`` float16 (uint8
        codes with ``log_range``), then forget it.

        Several forward passes inside one block are concatenated along ``batch``, in call order.
        """
        counts = {len(c) for c in self._chunks}
        if counts == {0}:
            raise RuntimeError("no forward pass was recorded inside this record_attention block "
                               "(do the model's attention layers use transformers' attention interface?)")
        if len(counts) != 1:
            raise RuntimeError(f"layers recorded unequal numbers of passes: {[len(c) for c in self._chunks]}")
        per_layer = [torch.cat(c) if len(c) > 1 else c[0] for c in self._chunks]
        self._chunks = [[] for _ in range(self.num_layers)]
        return torch.stack(per_layer, dim=1)


def _flash_with_lse(query: torch.Tensor, attention_mask: torch.Tensor | None, causal: bool,
                    dropout: bool) -> bool:
    """Whether PyTorch's CPU flash kernel (which returns the log-sum-exp) computes this call:
    CPU, a plain causal mask, no dropout."""
    return query.device.type == "cpu" and attention_mask is None and causal and not dropout


def _log_probs_and_output(module: nn.Module, query: torch.Tensor, key: torch.Tensor,
                          value: torch.Tensor, attention_mask: torch.Tensor | None, dropout: float,
                          scaling: float, gain: float, bias: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed ``[B, H, T*(T+1)/2]`` float32 ``gain * log p + bias`` and the attention output
    ``[B, T, H, d]`` of one prefill call (see the module docstring)."""
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    T = query.shape[2]
    causal = getattr(module, "is_causal", True)
    if _flash_with_lse(query, attention_mask, causal, dropout and module.training):
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, 0.0, True, scale=scaling)
        return _packed_from_lse(query, key, lse, scaling, gain, bias), out.transpose(1, 2).contiguous()
    scores = torch.matmul(query.float(), key.float().transpose(2, 3)).mul_(scaling)
    if attention_mask is not None:
        mask = attention_mask[:, :, :, : key.shape[-2]]
        scores = scores.masked_fill_(~mask, float("-inf")) if mask.dtype == torch.bool else scores.add_(mask)
    elif causal:  # a prefill: T queries over T keys
        scores.masked_fill_(torch.ones(T, T, dtype=torch.bool, device=scores.device).triu(1), float("-inf"))
    logp = scores.log_softmax(-1)
    probs = nn.functional.dropout(logp.exp().to(value.dtype), p=dropout, training=module.training)
    return lower_triangle(logp).mul_(gain).add_(bias), torch.matmul(probs, value).transpose(1, 2).contiguous()


def _packed_from_lse(query: torch.Tensor, key: torch.Tensor, lse: torch.Tensor, scaling: float,
                     gain: float, bias: float) -> torch.Tensor:
    """``gain * log p + bias`` with ``log p = scale * q k^T - lse``, computed straight into the
    packed layout: one GEMM of all queries over the first ``c`` keys writes the left block in
    place, one of the last ``f`` keys over the last ``f`` queries gives the bottom-right block
    already transposed. A quarter fewer multiply-adds than the square, no gather, and the
    store's coding rides in the GEMMs' ``alpha`` and added term (RESULTS.md, capture through
    apmae's own attention)."""
    B, H, T, d = query.shape
    c, _, e = halves(T)
    q = query.float().reshape(B * H, T, d)
    k = key.float().reshape(B * H, T, d)
    added = lse.reshape(B * H, T).mul(-gain).add_(bias)
    rect = q.new_empty(B * H, T + e, c)
    torch.baddbmm(added.unsqueeze(-1), q, k[:, :c].transpose(1, 2), alpha=gain * scaling, out=rect[:, e:])
    folded = torch.baddbmm(added[:, c:].unsqueeze(1), k[:, c:], q[:, c:].transpose(1, 2), alpha=gain * scaling)
    fold_in(rect, folded)
    return rect.view(B, H, -1)


def capture_attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor,
                              value: torch.Tensor, attention_mask: torch.Tensor | None,
                              dropout: float = 0.0, scaling: float | None = None,
                              **kwargs) -> tuple[torch.Tensor, None]:
    """:data:`CAPTURE_ATTENTION`: SDPA, plus log-probabilities for the recorders of the current
    context that watch ``module``."""
    recordings = [r for r in _ACTIVE.get() if module in r.layers]
    if not recordings:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    q, k = query.shape[2], key.shape[2]
    if q != k:
        raise ValueError(
            f"record_attention captures full prefill passes only; layer {recordings[0].layers[module]} "
            f"attended {q} queries over {k} keys (a cached decoding step?)"
        )
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    affines = {r.affine for r in recordings}
    gain, bias = affines.pop() if len(affines) == 1 else (1.0, 0.0)  # recorders that differ: log p
    values, out = _log_probs_and_output(module, query, key, value, attention_mask, dropout, scaling,
                                        gain, bias)
    for i, recording in enumerate(recordings):  # each its own copy: finishing works in place
        mine = values if i == len(recordings) - 1 else values.clone()
        if recording.affine != (gain, bias):
            mine.mul_(recording.affine[0]).add_(recording.affine[1])
        recording._add(recording.layers[module], mine)
    return out, None


AttentionInterface.register(CAPTURE_ATTENTION, capture_attention_forward)
AttentionMaskInterface.register(CAPTURE_ATTENTION, sdpa_mask)  # the masks SDPA gets


def _check_implementation(model: nn.Module) -> None:
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if impl != CAPTURE_ATTENTION:
        raise ValueError(
            f"record_attention needs the model to run apmae's capturing attention, but "
            f"{type(model).__name__} runs {impl!r}; load it with attn_implementation="
            f"\"{CAPTURE_ATTENTION}\" (apmae.lm.load does) or call "
            f"model.set_attn_implementation(\"{CAPTURE_ATTENTION}\")"
        )


@contextmanager
def record_attention(model: nn.Module, floor: float = LOG_FLOOR,
                     log_range: float = 0.0) -> Iterator[AttentionRecording]:
    """Record every attention layer's log-probabilities while the block runs (see the module
    docstring); with ``log_range``, as the pattern store's uint8 codes (:func:`code_log_probs`).
    Only forward passes made in this block's own context (thread / task) are recorded."""
    _check_implementation(model)
    layers = {module: layer for layer, module in enumerate(attention_modules(model))}
    recording = AttentionRecording(layers, floor, log_range)
    token = _ACTIVE.set(_ACTIVE.get() | {recording})
    try:
        yield recording
    finally:
        _ACTIVE.reset(token)


@torch.inference_mode()
def recompute_patterns(target: TargetModel, batch: list[Scenario], log_range: float = 0.0) -> torch.Tensor:
    """``[batch, layers, heads, tri]`` patterns of scenarios whose patterns were not kept: the
    same prefill pass that extraction captured them from (``log_range``: as uint8 codes)."""
    input_ids = torch.tensor([s.input_ids for s in batch], device=target.model.device)
    with record_attention(target.model, log_range=log_range) as rec:
        target.model(input_ids=input_ids, use_cache=False, logits_to_keep=1)
    return rec.take()
