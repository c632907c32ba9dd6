"""The on-disk store of a run's per-head arrays: append-only shards, resumable, memory-mapped.

It holds the attention patterns, and with ``StoreMeta.width`` other per-head entries of a fixed
length (AP-MAE embeddings, pattern and row statistics). For patterns, one entry per scenario id:
``[layers, heads, L]`` (``L = T*(T+1)/2``, the packed lower triangle of :mod:`apmae.store.format`)
in float16, or in 8 bits (``dtype="uint8"``): code ``k`` stands for
``log p = k * log_range / 255 - log_range``, i.e. ``max(log p, -log_range)`` in 255 equal steps
(0.078 nats, 8% of ``p``, for a range of 20). Half the disk of float16; the AP-MAE's default
scaling ignores weights below ``e^-20`` anyway, and its input images are 8-bit deep like any
photograph a ViT-MAE is trained on. Readers always get float32 log-probabilities back. A
256-token window on a 30-layer, 24-head model is ~47 MB per scenario in float16, so neither a
file per value nor a SQL row per value is an option; entries are written a batch at a time.

Layout under ``root``::

    meta.json              shape and provenance, validated on every reopen
    shards/000000.npy      [rows, layers, heads, L] float16 or uint8, one per appended batch
    shards/000000.ids.json the scenario id of each row of 000000.npy

Crash safety: every file is written to a temporary name and renamed into place
(:func:`apmae.paths.atomic_path`), so no half-written file is ever visible. A shard's ids file is
its commit record and is written only after the shard itself: a ``kill -9`` between the two
leaves a shard without ids, which is ignored (its scenarios count as not done and are recomputed
on resume). Stray ``*.tmp`` files are ignored too. At most the batch in flight is lost.

:meth:`ArrayStore.link` adds another store's shard as a hard link (a merge without a copy).

One writer at a time; any number of readers. A reader sees the shards committed when it opened
the store (open it again to see later ones).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..paths import atomic_path
from .format import code_log_probs, decode_codes

_SHARD = re.compile(r"^(\d{6})\.(npy|ids\.json)$")
#: 2: patterns packed in :mod:`apmae.capture`'s rectangular layout; 1 packed them row by row
#: (its stores of other entries, e.g. embeddings, read as they are)
FORMAT = 2


@dataclass(frozen=True)
class StoreMeta:
    """What every entry of a store shares; a reopen with different values is refused."""

    layers: int
    heads: int
    window: int  # T, the prompt length in tokens
    model: str  # name or path of the model the patterns come from
    dtype: str = "float16"
    width: int = 0  # entry length when not a packed pattern (e.g. AP-MAE embeddings); 0: L
    log_range: float = 0.0  # dtype uint8: codes 0..255 span log p in [-log_range, 0]

    @property
    def length(self) -> int:
        """Entry length: ``width``, else L, the packed lower triangle of a ``window x window`` pattern."""
        return self.width or self.window * (self.window + 1) // 2

    @property
    def entry_shape(self) -> tuple[int, int, int]:
        return (self.layers, self.heads, self.length)


class ArrayStore:
    """Append-only store of ``[layers, heads, length]`` arrays keyed by scenario id (see the module
    docstring for the layout)."""

    def __init__(self, root: str | os.PathLike[str], meta: StoreMeta | None = None, **fields: Any) -> None:
        """Open the store at ``root``.

        With ``meta`` (or its fields as keywords: ``layers=, heads=, window=, model=``): create the
        store if absent, else check it matches (``ValueError`` if not). Without: open an existing
        store, shape read from its ``meta.json``.
        """
        if fields:
            if meta is not None:
                raise TypeError("pass either meta or its fields, not both")
            meta = StoreMeta(**fields)
        self.root = Path(root)
        self.shard_dir = self.root / "shards"
        meta_path = self.root / "meta.json"
        if meta_path.exists():
            stored = self._read_meta(meta_path)
            if meta is not None and meta != stored:
                diff = {k: (v, getattr(meta, k)) for k, v in asdict(stored).items() if getattr(meta, k) != v}
                raise ValueError(
                    f"pattern store {self.root} holds different patterns: "
                    + ", ".join(f"{k} stored {a!r} != requested {b!r}" for k, (a, b) in diff.items())
                )
            self.meta = stored
        elif meta is None:
            raise FileNotFoundError(f"no pattern store at {self.root} (missing meta.json)")
        else:
            self.meta = meta
            np.dtype(meta.dtype)  # fail early on a bad dtype name
            if (meta.dtype == "uint8") != (meta.log_range > 0):
                raise ValueError("a uint8 store needs a log_range > 0, and only a uint8 store has one")
            with atomic_path(meta_path) as tmp:
                tmp.write_text(json.dumps({"format": FORMAT, **asdict(meta)}, indent=2) + "\n")
        self.shard_dir.mkdir(parents=True, exist_ok=True)

        self._where: dict[str, tuple[int, int]] = {}  # scenario id -> (shard, row)
        self._shard_bytes: dict[int, int] = {}
        self._maps: dict[int, np.ndarray] = {}
        self._next_shard = 0
        self._load_index()

    @staticmethod
    def _read_meta(path: Path) -> StoreMeta:
        raw: dict[str, Any] = json.loads(path.read_text())
        fmt = raw.pop("format", None)
        if fmt == 1 and not raw.get("width"):
            raise ValueError(f"{path.parent}: patterns packed row by row by an earlier apmae (store "
                             f"format 1); rebuild them with `apmae extract` into a new run")
        if fmt not in (1, FORMAT):
            raise ValueError(f"{path}: unknown pattern store format {fmt!r}")
        return StoreMeta(**raw)

    def _load_index(self) -> None:
        """Collect committed shards: those whose ids file exists. Orphan shards and temp files are skipped."""
        numbers: set[int] = set()
        committed: list[int] = []
        for entry in self.shard_dir.iterdir():
            m = _SHARD.match(entry.name)
            if not m:
                continue  # e.g. a ".000003.npy.x1y2.tmp" left by a kill -9
            numbers.add(int(m.group(1)))
            if m.group(2) == "ids.json":
                committed.append(int(m.group(1)))
        self._next_shard = max(numbers, default=-1) + 1  # never reuse a number, orphans included
        for shard in sorted(committed):
            ids = self._shard_ids(shard)
            for row, sid in enumerate(ids):
                self._where.setdefault(sid, (shard, row))
            self._shard_bytes[shard] = self._npy_path(shard).stat().st_size + self._ids_path(shard).stat().st_size

    def _npy_path(self, shard: int) -> Path:
        return self.shard_dir / f"{shard:06d}.npy"

    def _ids_path(self, shard: int) -> Path:
        return self.shard_dir / f"{shard:06d}.ids.json"

    # --- writing -------------------------------------------------------------------------------

    def append(self, ids: Sequence[str], patterns: Any) -> None:
        """Store one batch as a new shard: ``patterns[i]`` (``[layers, heads, L]``) under ``ids[i]``.

        ``patterns`` is a numpy array or a torch tensor, cast to the store's dtype. Ids must be new:
        the caller skips finished ones with :meth:`has` (that is how a rerun resumes).
        """
        ids = [str(i) for i in ids]
        data = np.ascontiguousarray(self.encode_values(patterns))
        if data.shape != (len(ids), *self.meta.entry_shape):
            raise ValueError(
                f"expected patterns of shape {(len(ids), *self.meta.entry_shape)} for {len(ids)} ids, got {data.shape}"
            )
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate scenario ids within one batch")
        done = [i for i in ids if i in self._where]
        if done:
            raise ValueError(f"{len(done)} scenario ids already stored, e.g. {done[0]!r}")
        if not ids:
            return

        shard = self._next_shard
        self._next_shard += 1
        with atomic_path(self._npy_path(shard)) as tmp:
            with open(tmp, "wb") as f:  # np.save(path) would append ".npy" to the temp name
                np.save(f, data)
                f.flush()
                os.fsync(f.fileno())  # shard on disk before its commit record
        self._commit(shard, ids)

    def link(self, ids: Sequence[str], source: ArrayStore) -> bool:
        """Store ``ids`` as a hard link to the shard of ``source`` that holds exactly them, in
        this order: merging a store into another (sharded extraction) then neither copies
        the patterns nor needs twice their disk. False, and nothing stored, when ``source`` has
        no such shard or the file system cannot link; :meth:`append` a copy then."""
        ids = [str(i) for i in ids]
        where = source._where.get(ids[0]) if ids else None
        if where is None or source.meta != self.meta or source._shard_ids(where[0]) != ids:
            return False
        if any(i in self._where for i in ids):
            raise ValueError("scenario ids already stored")
        shard = self._next_shard
        try:
            os.link(source._npy_path(where[0]), self._npy_path(shard))
        except OSError:
            return False
        self._next_shard += 1
        self._commit(shard, ids)
        return True

    def encode_values(self, patterns: Any) -> np.ndarray:
        """Log-probabilities (a numpy array or a torch tensor) in the store's dtype (uint8: the
        nearest code, :func:`apmae.store.format.code_log_probs`). uint8 input is taken as codes
        already: ``record_attention(log_range=...)`` codes them while it records."""
        t = torch.as_tensor(patterns).detach().cpu()
        if self.meta.dtype != "uint8":
            if t.dtype == torch.uint8:
                raise ValueError("uint8 codes given to a float16 pattern store")
            return t.numpy().astype(self.meta.dtype, copy=False)
        if t.dtype == torch.uint8:
            return t.numpy()
        return code_log_probs(t.to(torch.float32, copy=True), self.meta.log_range).numpy()

    def decode_values(self, stored: np.ndarray) -> np.ndarray:
        """Stored entries as log-probabilities (uint8: float32; float16 stays itself, a view)."""
        return decode_codes(stored, self.meta.dtype, self.meta.log_range)

    def quantize(self, patterns: Any) -> np.ndarray:
        """``patterns`` as they would read back from this store: so patterns recomputed by a
        forward pass and patterns kept on disk reach the AP-MAE alike."""
        return self.decode_values(self.encode_values(patterns))

    def _shard_ids(self, shard: int) -> list[str]:
        return json.loads(self._ids_path(shard).read_text())

    def _commit(self, shard: int, ids: list[str]) -> None:
        """Write the ids file of a shard already on disk: its commit record."""
        with atomic_path(self._ids_path(shard)) as tmp:
            with open(tmp, "w") as f:
                json.dump(ids, f)
                f.flush()
                os.fsync(f.fileno())
        for row, sid in enumerate(ids):
            self._where[sid] = (shard, row)
        self._shard_bytes[shard] = self._npy_path(shard).stat().st_size + self._ids_path(shard).stat().st_size

    # --- reading -------------------------------------------------------------------------------

    def has(self, scenario_id: str) -> bool:
        return scenario_id in self._where

    __contains__ = has

    def ids(self) -> list[str]:
        """Stored scenario ids in the order they were appended."""
        return list(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def _shard(self, shard: int) -> np.ndarray:
        mm = self._maps.get(shard)
        if mm is None:
            mm = np.load(self._npy_path(shard), mmap_mode="r")
            if mm.shape[1:] != self.meta.entry_shape or mm.dtype != np.dtype(self.meta.dtype):
                raise ValueError(f"shard {self._npy_path(shard)} has shape {mm.shape} {mm.dtype}, not the store's")
            self._maps[shard] = mm
        return mm

    def get(self, scenario_id: str, layer: int | None = None, head: int | None = None,
            raw: bool = False) -> np.ndarray:
        """One scenario's patterns: ``[layers, heads, L]``, ``[heads, L]`` for a layer, ``[L]`` for a head.

        float16: a read-only view into the memory-mapped shard (only the requested bytes are read
        from disk; ``np.array(...)`` it to keep a copy independent of the file). uint8: the
        decoded float32 log-probabilities, a fresh array. ``raw``: the stored values as they are
        (a view; :meth:`decode_values` many at once, a batch costs what one call costs).
        """
        try:
            shard, row = self._where[scenario_id]
        except KeyError:
            raise KeyError(f"scenario {scenario_id!r} is not in the pattern store {self.root}") from None
        if head is not None and layer is None:
            stored = self._shard(shard)[row, :, head]
        else:
            stored = self._shard(shard)[(row,) + tuple(i for i in (layer, head) if i is not None)]
        return stored if raw else self.decode_values(stored)

    def nbytes(self) -> int:
        """Bytes on disk of the committed data (shards, their ids, meta.json); orphans not counted."""
        meta = self.root / "meta.json"
        return sum(self._shard_bytes.values()) + meta.stat().st_size
