"""The storage format of an attention pattern, in one place: which entries are kept, in what
order, and how each value is written.

* the **lower triangle** (diagonal included, ``T*(T+1)/2`` entries): a causal model's upper
  triangle is zero by construction, so it is not stored. The entries are laid out as LAPACK's
  *rectangular full packed* format lays out a triangle, so that packing and unpacking are
  slices, not a gather (the gather was 31 of the 70 ms capture added to a batch of 8): with
  ``c = ceil(T/2)`` and ``f = floor(T/2)``, a ``[T+e, c]`` rectangle (``e = 1`` for even ``T``,
  else 0) holds the first ``c`` key columns of every query row in its last ``T`` rows, and the
  slots above that block's diagonal (plus the ``e`` leading row) hold the bottom-right ``f x f``
  triangle (queries and keys ``c..T-1``) transposed; flattened row-major. For ``T = 4`` (``x[q, k]``)::

      x22 x32 | x00 x33 | x10 x11 | x20 x21 | x30 x31

  :func:`packed_positions` gives the ``(q, k)`` of every entry;
* the **natural log** of the probabilities: probabilities of a 256-token window span dozens of
  orders of magnitude and most sit below float16's smallest subnormal (6e-8); ``log p`` lies in
  a small range. Either in **float16** clamped at :data:`LOG_FLOOR` (-60: ``log 0`` is ``-inf``
  and a single ``-inf`` turns every mean or loss downstream into NaN; ``e^-60 ~ 1e-26`` is far
  below anything a float32 softmax row resolves, and -60 is exact in float16), or, with
  ``log_range``, as the pattern store's **uint8 codes** (:func:`code_log_probs`) made straight
  from the float32 values.

Capture writes this format as it records (:mod:`apmae.capture`), the store keeps it
(:mod:`apmae.store.arrays`), and everything that reads a pattern (heatmaps, AP-MAE's images, the
row statistics, the live explorer) unpacks and decodes it here.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

#: Floor of the stored float16 log-probabilities (see the module docstring for why -60).
LOG_FLOOR = -60.0


def tril_size(T: int) -> int:
    """Length of the packed lower triangle (diagonal included) of a ``T x T`` matrix."""
    return T * (T + 1) // 2


def tril_window(L: int) -> int:
    """The window ``T`` whose packed lower triangle has length ``L`` (inverse of :func:`tril_size`)."""
    T = (math.isqrt(8 * L + 1) - 1) // 2
    if tril_size(T) != L:
        raise ValueError(f"{L} is not a triangular number T*(T+1)/2")
    return T


def halves(T: int) -> tuple[int, int, int]:
    """``(c, f, e)`` of the packed layout: ``c = ceil(T/2)`` columns, the ``f = floor(T/2)``
    square folded into them, ``e`` (1 for even ``T``) leading rows that make room for it."""
    return T - T // 2, T // 2, 1 - T % 2


@lru_cache(maxsize=32)
def _upper(n: int, device: torch.device) -> torch.Tensor:
    """``[n, n]`` True on and above the diagonal: the slots the folded block fills."""
    return torch.ones(n, n, dtype=torch.bool, device=device).triu()


def fold_in(rect: torch.Tensor, folded: torch.Tensor) -> None:
    """Write ``folded`` (``[..., f, f]``, the bottom-right block transposed) into the slots of
    ``rect`` (``[..., T+e, c]``) above its left block's diagonal, in place."""
    f = folded.shape[-1]
    e = rect.shape[-2] - rect.shape[-1] - f  # rows T + e, columns c = T - f
    slots = rect[..., :f, 1 - e:]
    torch.where(_upper(f, rect.device), folded, slots, out=slots)


def lower_triangle(x: torch.Tensor) -> torch.Tensor:
    """Pack ``[..., T, T]`` into ``[..., T*(T+1)/2]`` (the layout is in the module docstring)."""
    T = x.shape[-1]
    if x.shape[-2] != T:
        raise ValueError(f"lower_triangle needs square matrices, got {tuple(x.shape[-2:])}")
    c, _, e = halves(T)
    rect = x.new_empty(x.shape[:-2] + (T + e, c))
    rect[..., e:, :] = x[..., :, :c]
    fold_in(rect, x[..., c:, c:].transpose(-1, -2))
    return rect.flatten(-2)


@lru_cache(maxsize=32)
def packed_positions(T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and key index of each packed entry (``[T*(T+1)/2]`` each): what sits where."""
    grid = torch.arange(T).expand(T, T)
    return lower_triangle(grid.T.contiguous()), lower_triangle(grid.contiguous())


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
    c, f, e = halves(T)
    lead = tuple(v.shape[:-1])
    rect = v.reshape(lead + (T + e, c))
    folded = rect[..., :f, 1 - e:].swapaxes(-1, -2)  # the bottom-right block, upper slots stale
    if isinstance(v, np.ndarray):
        out = np.full(lead + (T, T), fill, dtype=v.dtype)
        out[..., :c] = np.where(np.tri(T, c, dtype=bool), rect[..., e:, :], fill)
        out[..., c:, c:] = np.where(np.tri(f, dtype=bool), folded, fill)
        return out
    # copies into an empty square, then fills above the diagonal: no full-size temporaries
    # (7.9 -> 5.7 ms for 64 patterns of 256 tokens)
    out = torch.empty(lead + (T, T), dtype=v.dtype, device=v.device)
    above = ~_upper(T, v.device).T
    left, right = out[..., :c], out[..., c:, c:]
    left.copy_(rect[..., e:, :]).masked_fill_(above[:, :c], fill)
    right.copy_(folded).masked_fill_(above[:f, :f], fill)
    out[..., :c, c:] = fill
    return out


def code_affine(log_range: float) -> tuple[float, float]:
    """``(gain, bias)``: the stored form is ``gain * log p + bias``, clamped and cast
    (:func:`to_stored`). For codes the ``+ 0.5`` makes the cast's truncation round to the nearest."""
    return (255.0 / log_range, 255.5) if log_range else (1.0, 0.0)


def to_stored(x: torch.Tensor, floor: float, log_range: float) -> torch.Tensor:
    """``gain * log p + bias`` (float32, changed in place) -> the stored form: uint8 codes with
    ``log_range``, else float16 ``max(log p, floor)``."""
    if log_range:
        return x.clamp_(0.0, 255.0).to(torch.uint8)
    return x.clamp_(min=floor).to(torch.float16)


def code_log_probs(logp: torch.Tensor, log_range: float) -> torch.Tensor:
    """float32 ``log p`` -> uint8 codes ``round((log p + r) * 255 / r)`` clamped to ``[0, 255]``
    (``r = log_range``; ``log 0 = -inf`` gives 0): the pattern store's 8-bit format (see
    :mod:`apmae.store.arrays`). Works in place on ``logp``, which the caller must own."""
    gain, bias = code_affine(log_range)
    return to_stored(logp.mul_(gain).add_(bias), 0.0, log_range)


def decode_codes(stored: np.ndarray, dtype: str, log_range: float) -> np.ndarray:
    """Stored entries as log-probabilities: uint8 codes (``dtype`` "uint8") back to float32
    ``k * log_range / 255 - log_range``; float16 entries stay themselves."""
    if dtype != "uint8":
        return stored
    out = stored.astype(np.float32)
    out *= np.float32(log_range / 255.0)
    out -= np.float32(log_range)
    return out
