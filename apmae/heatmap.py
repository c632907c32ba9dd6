"""One head's pattern as something to look at: a log10 matrix for an interactive heatmap, or a
small PNG thumbnail. Pure functions over packed lower-triangle log-probabilities.

Both use log10 of the attention weight, clipped at ``FLOOR`` (10⁻⁶): on a linear scale almost
every pattern is a bright first column and a bright diagonal over black, and the structure the
clusters separate (bands, stripes, offsets) sits in the small weights. The upper triangle, never
attended, is blank (``None`` / transparent), so it is never mistaken for a small weight.
"""

from __future__ import annotations

import io
import math

import numpy as np

from .store.format import unpack_lower_triangle

#: Lowest log10 weight shown; smaller weights take the darkest colour.
FLOOR = -6.0

#: Viridis (plotly's, which the explorer's heatmaps use too), dark to bright.
VIRIDIS = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779",
           "#6ece58", "#b5de2b", "#fde725")


def log10_matrix(packed: np.ndarray, decimals: int = 2) -> list[list[float | None]]:
    """``[T*(T+1)/2]`` log-probs -> ``T x T`` rows of rounded log10 weights, ``None`` above the
    diagonal: the JSON a plotly heatmap takes (about 5 characters per weight)."""
    full = _log10(packed)
    out = []
    for q, row in enumerate(np.round(full, decimals).tolist()):
        out.append(row[:q + 1] + [None] * (len(row) - q - 1))
    return out


def thumbnail_png(packed: np.ndarray, size: int = 64) -> bytes:
    """A ``size x size`` PNG (average of log10 weights per block, Viridis, upper triangle
    transparent); ``size`` need not divide the window."""
    from PIL import Image

    full = _log10(packed)
    T = full.shape[0]
    edges = np.linspace(0, T, size + 1).round().astype(int)
    lower = np.tril(np.ones((T, T), bool))
    values = np.where(lower, full, 0.0)
    # block sums via cumulative sums: sizes that do not divide T still get whole blocks
    cum = np.pad(values.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    cnt = np.pad(lower.cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def blocks(c: np.ndarray) -> np.ndarray:
        return c[edges[1:]][:, edges[1:]] - c[edges[:-1]][:, edges[1:]] \
            - c[edges[1:]][:, edges[:-1]] + c[edges[:-1]][:, edges[:-1]]

    n = blocks(cnt)
    mean = blocks(cum) / np.maximum(n, 1)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = _colour((mean - FLOOR) / -FLOOR)
    rgba[..., 3] = np.where(n > 0, 255, 0)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _log10(packed: np.ndarray) -> np.ndarray:
    """``T x T`` float64 log10 weights clipped to ``[FLOOR, 0]``, ``FLOOR`` above the diagonal."""
    logp = unpack_lower_triangle(np.asarray(packed, np.float32), fill=-math.inf)
    return np.clip(logp / math.log(10), FLOOR, 0.0).astype(np.float64)


def _colour(t: np.ndarray) -> np.ndarray:
    """Viridis RGB of values in ``[0, 1]`` (linear between the stops)."""
    stops = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in VIRIDIS], np.float64)
    x = np.clip(t, 0, 1) * (len(stops) - 1)
    lo = np.floor(x).astype(int).clip(0, len(stops) - 2)
    frac = (x - lo)[..., None]
    return (stops[lo] * (1 - frac) + stops[lo + 1] * frac).round().astype(np.uint8)


def difference_matrix(a: np.ndarray, b: np.ndarray, decimals: int = 3) -> list[list[float | None]]:
    """Packed attention *weights* ``a - b`` (``[T*(T+1)/2]`` each) -> ``T x T`` rows, ``None``
    above the diagonal: where one pattern attends more (positive) or less than another."""
    full = unpack_lower_triangle(np.asarray(a, np.float64) - np.asarray(b, np.float64), fill=0.0)
    return [row[:q + 1] + [None] * (len(row) - q - 1)
            for q, row in enumerate(np.round(full, decimals).tolist())]
