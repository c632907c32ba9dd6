"""ArrayStore: round trip, crash-resume, shape validation, memory-mapped reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from apmae.store import ArrayStore, StoreMeta

META = StoreMeta(layers=2, heads=3, window=6, model="tiny-test")  # L = 21


def batch(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *META.entry_shape)).astype(np.float16)


def test_round_trip(tmp_path: Path) -> None:
    store = ArrayStore(tmp_path / "p", META)
    a, b = batch(2, 1), batch(3, 2)
    store.append(["s0", "s1"], a)
    store.append(["s2", "s3", "s4"], torch.from_numpy(b))  # tensors are accepted too
    assert len(store) == 5 and store.ids() == ["s0", "s1", "s2", "s3", "s4"]
    assert store.has("s3") and "s3" in store and not store.has("nope")
    np.testing.assert_array_equal(store.get("s1"), a[1])

    again = ArrayStore(tmp_path / "p")  # reopen without knowing the shape
    assert again.meta == META and again.ids() == store.ids()
    np.testing.assert_array_equal(again.get("s4"), b[2])
    assert again.get("s4").dtype == np.float16
    assert again.nbytes() == store.nbytes() >= 5 * 2 * 3 * 21 * 2
    with pytest.raises(KeyError):
        again.get("nope")


def test_uint8_codes_log_probs_in_equal_steps(tmp_path: Path) -> None:
    """Code k is k/255 of the way from -log_range to 0: values come back within half a step,
    below the range at -log_range; a head read back equals its slice of the whole entry."""
    meta = StoreMeta(layers=2, heads=3, window=6, model="tiny-test", dtype="uint8", log_range=20.0)
    store = ArrayStore(tmp_path / "q", meta)
    logp = -np.random.default_rng(0).exponential(4.0, (4, *meta.entry_shape)).astype(np.float32)
    logp[0, 0, 0, :3] = [0.0, -20.0, -55.0]
    store.append(["a", "b", "c", "d"], logp)
    got = ArrayStore(tmp_path / "q").get("a")
    assert got.dtype == np.float32 and got[0, 0, :3].tolist() == [0.0, -20.0, -20.0]
    for i, sid in enumerate("abcd"):
        assert np.abs(store.get(sid) - np.maximum(logp[i], -20.0)).max() <= 10 / 255 + 1e-5
    np.testing.assert_array_equal(store.get("c", 1, 2), store.get("c")[1, 2])
    raw = store.get("c", 1, raw=True)
    assert raw.dtype == np.uint8 and np.array_equal(store.decode_values(raw), store.get("c", 1))
    np.testing.assert_array_equal(store.quantize(logp[1]), store.get("b"))
    logp_copy = logp.copy()
    store.append(["e"], store.encode_values(logp[:1]))  # codes (a coded capture) are kept as they are
    np.testing.assert_array_equal(store.get("e"), store.get("a"))
    np.testing.assert_array_equal(logp, logp_copy)  # coding never touches the caller's array
    assert (tmp_path / "q" / "shards" / "000000.npy").stat().st_size < 4 * 2 * 3 * 21 + 200
    with pytest.raises(ValueError, match="log_range"):
        ArrayStore(tmp_path / "r", StoreMeta(layers=1, heads=1, window=2, model="m", dtype="uint8"))


def test_append_validates(tmp_path: Path) -> None:
    store = ArrayStore(tmp_path, META)
    store.append(["s0"], batch(1, 1))
    with pytest.raises(ValueError, match="already stored"):
        store.append(["s0"], batch(1, 1))
    with pytest.raises(ValueError, match="duplicate"):
        store.append(["x", "x"], batch(2, 1))
    with pytest.raises(ValueError, match="shape"):
        store.append(["s1"], batch(2, 1))
    store.append([], batch(0, 1))
    assert len(store) == 1
    with pytest.raises(ValueError, match="uint8 codes"):
        store.append(["s2"], batch(1, 1).astype(np.uint8))


def test_resume_after_crash_ignores_partial_writes(tmp_path: Path) -> None:
    store = ArrayStore(tmp_path, META)
    store.append(["s0", "s1"], batch(2, 1))
    shards = tmp_path / "shards"
    # kill -9 during a write leaves a temp file behind...
    (shards / ".000001.npy.abcd1234.tmp").write_bytes(b"\x93NUMPY half")
    # ...or between the shard and its commit record: a complete shard without ids
    np.save(shards / "000001.npy", batch(2, 9))

    resumed = ArrayStore(tmp_path, META)
    assert resumed.ids() == ["s0", "s1"]
    committed = resumed.nbytes()
    todo = [s for s in ["s0", "s1", "s2", "s3"] if not resumed.has(s)]
    assert todo == ["s2", "s3"]
    fresh = batch(2, 2)
    resumed.append(todo, fresh)  # takes a new shard number, never the orphan's
    assert (shards / "000002.ids.json").exists()
    assert json.loads((shards / "000002.ids.json").read_text()) == ["s2", "s3"]
    assert resumed.nbytes() > committed

    final = ArrayStore(tmp_path)
    assert final.ids() == ["s0", "s1", "s2", "s3"]
    np.testing.assert_array_equal(final.get("s3"), fresh[1])
    assert [p.name for p in shards.glob(".*.tmp")] == [".000001.npy.abcd1234.tmp"]  # only the planted one


def test_crash_before_commit_record_loses_only_that_batch(tmp_path: Path, monkeypatch) -> None:
    store = ArrayStore(tmp_path, META)
    store.append(["s0"], batch(1, 1))

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the ids file")

    monkeypatch.setattr("apmae.store.arrays.json.dump", die)
    with pytest.raises(KeyboardInterrupt):
        store.append(["s1", "s2"], batch(2, 2))
    monkeypatch.undo()
    assert (tmp_path / "shards" / "000001.npy").exists()  # the shard made it, its commit did not
    assert not store.has("s1")
    assert ArrayStore(tmp_path).ids() == ["s0"]
    assert not list((tmp_path / "shards").glob(".*.tmp"))  # atomic_path cleaned up its temp file


def test_reopen_with_other_shape_raises(tmp_path: Path) -> None:
    ArrayStore(tmp_path, META).append(["s0"], batch(1, 1))
    with pytest.raises(ValueError, match="heads stored 3 != requested 4"):
        ArrayStore(tmp_path, StoreMeta(layers=2, heads=4, window=6, model="tiny-test"))
    with pytest.raises(ValueError, match="window"):
        ArrayStore(tmp_path, StoreMeta(layers=2, heads=3, window=8, model="tiny-test"))
    with pytest.raises(ValueError, match="model"):
        ArrayStore(tmp_path, layers=2, heads=3, window=6, model="other")  # fields as keywords
    assert ArrayStore(tmp_path, layers=2, heads=3, window=6, model="tiny-test").ids() == ["s0"]
    with pytest.raises(FileNotFoundError):
        ArrayStore(tmp_path / "absent")


def test_stores_of_the_row_by_row_layout_are_refused_with_a_way_out(tmp_path: Path) -> None:
    """Format 1 packed patterns row by row; read as today's layout they would be scrambled.
    Its other stores (embeddings: no packing) still open."""
    for name, width in (("patterns", 0), ("embeddings", 8)):
        store = ArrayStore(tmp_path / name, StoreMeta(layers=2, heads=3, window=0 if width else 6,
                                                        model="m", width=width))
        store.append(["s0"], np.zeros((1, 2, 3, store.meta.length), np.float16))
        meta = tmp_path / name / "meta.json"
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": 1}))
    with pytest.raises(ValueError, match="row by row.*apmae extract"):
        ArrayStore(tmp_path / "patterns")
    assert ArrayStore(tmp_path / "embeddings").ids() == ["s0"]
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": 9}))
    with pytest.raises(ValueError, match="unknown pattern store format 9"):
        ArrayStore(tmp_path / "embeddings")


def test_memmap_read_of_one_head(tmp_path: Path) -> None:
    store = ArrayStore(tmp_path, META)
    data = batch(4, 3)
    store.append([f"s{i}" for i in range(4)], data)
    reader = ArrayStore(tmp_path)
    one = reader.get("s2", layer=1, head=2)
    assert isinstance(one, np.memmap) and one.shape == (21,)
    np.testing.assert_array_equal(one, data[2, 1, 2])
    np.testing.assert_array_equal(reader.get("s2", layer=1), data[2, 1])
    np.testing.assert_array_equal(reader.get("s2", head=0), data[2, :, 0])
    with pytest.raises(ValueError):
        one[0] = 0  # read-only view of the file


def test_link_adds_another_stores_shard_without_a_copy(tmp_path: Path) -> None:
    """A shard holding exactly the ids, in order, is hard-linked; anything else is refused
    (False, nothing stored) so the caller appends a copy."""
    src = ArrayStore(tmp_path / "src", META)
    src.append(["s0", "s1"], batch(2, 1))
    src.append(["s2"], batch(1, 2))
    dst = ArrayStore(tmp_path / "dst", META)
    assert not dst.link(["s0"], src) and not dst.link(["s1", "s0"], src) and len(dst) == 0
    other = ArrayStore(tmp_path / "other", StoreMeta(layers=2, heads=3, window=6, model="x"))
    assert not other.link(["s2"], src)
    assert dst.link(["s0", "s1"], src) and dst.link(["s2"], src)
    for shard in ("000000", "000001"):
        a, b = (tmp_path / d / "shards" / f"{shard}.npy" for d in ("src", "dst"))
        assert a.stat().st_ino == b.stat().st_ino
    with pytest.raises(ValueError, match="already stored"):
        dst.link(["s2"], src)
    again = ArrayStore(tmp_path / "dst")
    assert again.ids() == ["s0", "s1", "s2"]
    np.testing.assert_array_equal(again.get("s1"), src.get("s1"))
