"""record_attention: exact against output_attentions, hooks never leak, calls never cross contexts."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from conftest import TINY_VOCAB, tiny_gpt2, tiny_llama, tiny_starcoder2

from apmae.capture import (
    LOG_FLOOR,
    lower_triangle,
    record_attention,
    tril_size,
    unpack_lower_triangle,
)

T = 20


def ids(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, TINY_VOCAB, (batch, T), generator=torch.Generator().manual_seed(seed))


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_lower_triangle_round_trip() -> None:
    x = torch.randn(2, 3, 5, 5)
    v = lower_triangle(x)
    assert v.shape == (2, 3, tril_size(5))
    # row-major (q, k) with k <= q: (0,0), (1,0), (1,1), (2,0), ...
    assert torch.equal(v[0, 0, :4], torch.stack([x[0, 0, 0, 0], x[0, 0, 1, 0], x[0, 0, 1, 1], x[0, 0, 2, 0]]))
    full = unpack_lower_triangle(v, 5)
    assert torch.equal(torch.tril(full), torch.tril(x))
    assert torch.isneginf(full[..., 0, 1]).all()
    assert (unpack_lower_triangle(v, fill=0.0)[..., 0, 4] == 0).all()
    arr = unpack_lower_triangle(v.numpy(), fill=0.0)
    assert isinstance(arr, np.ndarray) and np.array_equal(arr, torch.tril(x).numpy())
    with pytest.raises(ValueError):
        unpack_lower_triangle(v, 6)


@pytest.mark.parametrize("build", [tiny_starcoder2, tiny_llama, tiny_gpt2])
def test_matches_output_attentions(build) -> None:
    model = build()
    x = ids(2)
    with torch.no_grad():
        ref = torch.stack(model(x, output_attentions=True).attentions, dim=1)  # [b, layers, heads, T, T]
        before = hook_count(model)  # transformers keeps its own output-capturing hooks installed
        with record_attention(model) as rec:
            logits = model(x).logits
            got = rec.take()
        assert torch.equal(logits, model(x).logits)  # recording does not change the forward pass
    layers, heads = ref.shape[1], ref.shape[2]
    assert got.shape == (2, layers, heads, tril_size(T)) and got.dtype == torch.float16
    assert torch.equal(torch.triu(ref, diagonal=1), torch.zeros_like(ref))  # nothing lost above the diagonal
    # log space, within float16 rounding (half a ulp is < 0.016 on [-60, 0])
    want = lower_triangle(ref).log().clamp(min=LOG_FLOOR)
    torch.testing.assert_close(got.float(), want, atol=0.02, rtol=1e-3)
    # probability space, rebuilt as squares
    probs = unpack_lower_triangle(got.float(), T).exp()
    torch.testing.assert_close(probs, ref, atol=1e-4, rtol=2e-3)
    assert got.float().min() >= LOG_FLOOR
    assert hook_count(model) == before


def test_several_passes_concatenate_and_take_clears() -> None:
    model = tiny_starcoder2()
    with torch.no_grad(), record_attention(model) as rec:
        model(ids(2, seed=1))
        model(ids(1, seed=2))
        assert len(rec) == 3
        both = rec.take()
        assert len(rec) == 0
        model(ids(1, seed=2))
        again = rec.take()
    assert both.shape[0] == 3
    assert torch.equal(both[2:], again)
    with pytest.raises(RuntimeError, match="no forward pass"):
        rec.take()


def test_hooks_removed_after_exit_and_exception() -> None:
    model = tiny_starcoder2()
    before = hook_count(model)
    with record_attention(model):
        assert hook_count(model) == before + 2
    assert hook_count(model) == before
    with pytest.raises(KeyError):
        with record_attention(model):
            raise KeyError("boom")
    assert hook_count(model) == before
    # after the block, calls record nothing and still run
    with record_attention(model) as rec:
        pass
    with torch.no_grad():
        model(ids(1))
    with pytest.raises(RuntimeError):
        rec.take()


def test_nested_recorders() -> None:
    model = tiny_starcoder2()
    with torch.no_grad(), record_attention(model) as outer:
        model(ids(1, seed=1))
        with record_attention(model) as inner:
            model(ids(2, seed=2))
        model(ids(1, seed=3))
        assert hook_count(model) == 2
    assert hook_count(model) == 0
    assert len(inner) == 2 and len(outer) == 4
    got_outer, got_inner = outer.take(), inner.take()
    assert torch.equal(got_outer[1:3], got_inner)


def test_threads_record_only_their_own_calls() -> None:
    """Hooks are shared module state; a recorder must ignore the other thread's calls."""
    model = tiny_starcoder2()
    a_inside, b_done = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def thread_a() -> None:
        with torch.no_grad(), record_attention(model) as rec:
            a_inside.set()
            assert b_done.wait(30)  # B's calls happen while A's hooks are installed
            model(ids(2, seed=1))
            results["a"] = rec.take()

    def thread_b() -> None:
        assert a_inside.wait(30)
        with torch.no_grad():
            model(ids(3, seed=2))  # outside any recorder
            with record_attention(model) as rec:  # a second recorder, concurrently with A's
                model(ids(1, seed=3))
            results["b"] = rec.take()
        b_done.set()

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results["a"].shape[0] == 2  # not 2 + 3 + 1
    assert results["b"].shape[0] == 1
    with torch.no_grad(), record_attention(model) as rec:
        model(ids(2, seed=1))
    assert torch.equal(rec.take(), results["a"])
    assert hook_count(model) == 0


def test_sdpa_model_is_refused() -> None:
    model = tiny_starcoder2(attn="sdpa")
    with pytest.raises(ValueError, match="eager"):
        with record_attention(model):
            pass
    assert hook_count(model) == 0


def test_decoding_step_is_refused() -> None:
    model = tiny_starcoder2()
    with torch.no_grad():
        past = model(ids(1), use_cache=True).past_key_values
        with pytest.raises(ValueError, match="prefill"):
            with record_attention(model):
                model(ids(1)[:, :1], past_key_values=past, use_cache=True)
    assert hook_count(model) == 0
