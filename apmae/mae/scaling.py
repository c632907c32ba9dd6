"""Turn packed log-probability attention patterns into the 1-channel images AP-MAE sees.

Input: ``[N, T*(T+1)/2]`` lower triangles of ``log p`` (as stored by :mod:`apmae.capture`, float16
or float32, floored at :data:`apmae.store.format.LOG_FLOOR`). Output: ``[N, 1, T, T]`` float32, the
never-attended upper triangle 0.

* ``"log_affine"`` (default): a fixed, global affine map of ``log p``. Clamp to ``[floor, 0]``
  (``floor=-20``: weights below ``e^-20 ~ 2e-9`` are negligible), then
  ``GAP + (1 - GAP) * (1 + log p / |floor|)``, so real weights land in ``[GAP, 1]``. The scale is
  the same for every image, so how sharp or diffuse a head is stays comparable across images
  (per-image normalisation erases it), and the gap keeps the upper triangle (0) distinct from
  the smallest real weights.
* ``"log_normalize"``: the paper's. Per image, ``(log p - min) / (max - min)`` over the lower
  triangle. The smallest real weight maps to 0 as well and collides with the upper triangle
  (the reference's flaw); kept for comparison only.
* ``"prob"``: plain probabilities ``exp(log p)``, for comparison.
"""

from __future__ import annotations

import functools

import torch

from apmae.store.format import packed_positions, tril_window, unpack_lower_triangle

SCALINGS = ("log_affine", "log_normalize", "prob")

#: Value of the smallest real weight under ``log_affine``; the upper triangle is 0, below it.
GAP = 0.1


def to_images(packed: torch.Tensor, scaling: str, floor: float = -20.0,
              size: int | None = None) -> torch.Tensor:
    """``[N, L]`` packed log-probs -> ``[N, 1, T, T]`` float32 images (see the module docstring).

    ``floor`` (< 0) only affects ``log_affine``. ``size`` (a divisor of ``T``) average-pools the
    image down to ``size x size``: coarser, but with the token-level texture averaged out.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; valid: {', '.join(SCALINGS)}")
    if packed.ndim != 2:
        raise ValueError(f"to_images needs [N, T*(T+1)/2], got shape {tuple(packed.shape)}")
    logp = packed.float()
    if scaling == "log_affine":
        if floor >= 0:
            raise ValueError(f"floor must be negative, got {floor}")
        # = GAP + (1 - GAP) * (1 + log p / |floor|), in place on the clamped copy
        values = logp.clamp(floor, 0.0).mul_((1.0 - GAP) / -floor).add_(1.0)
    elif scaling == "log_normalize":
        lo = logp.amin(dim=1, keepdim=True)
        hi = logp.amax(dim=1, keepdim=True)
        values = (logp - lo) / (hi - lo).clamp_min(torch.finfo(torch.float32).tiny)
    else:
        values = logp.exp()
    T = tril_window(packed.shape[1])
    if size is None or size == T:
        return unpack_lower_triangle(values, fill=0.0).unsqueeze(1)
    if T % size:
        raise ValueError(f"image size {size} does not divide the {T}-token window")
    # the average of each (T/size)² block, the upper triangle's zeros included, summed straight
    # from the packed values: no T x T image is built
    pooled = torch.zeros(len(values), size * size).index_add_(1, _pooled_cell(T, size), values)
    return pooled.div_((T // size) ** 2).reshape(-1, 1, size, size)


@functools.lru_cache(maxsize=8)
def _pooled_cell(T: int, size: int) -> torch.Tensor:
    """For each packed position, the flat index of the ``size x size`` image cell it falls in."""
    rows, cols = packed_positions(T)
    k = T // size
    return (rows // k) * size + cols // k
