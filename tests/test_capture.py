"""record_attention: exact against output_attentions, hooks never leak, calls never cross contexts."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from conftest import TINY_VOCAB, eager_attentions, tiny_gpt2, tiny_llama, tiny_starcoder2

from apmae import capture
from apmae.capture import CAPTURE_ATTENTION, record_attention
from apmae.lm.score import cache_argument, kv_cache
from apmae.store.format import LOG_FLOOR, code_log_probs, lower_triangle, packed_positions, tril_size, unpack_lower_triangle

T = 20


def ids(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, TINY_VOCAB, (batch, T), generator=torch.Generator().manual_seed(seed))


def test_lower_triangle_layout() -> None:
    """The documented rectangular layout, for an even and an odd window (x[q, k] = 10q + k)."""
    def grid(n: int) -> torch.Tensor:
        return torch.arange(n).view(n, 1) * 10 + torch.arange(n)
    assert lower_triangle(grid(4)).tolist() == [22, 32, 0, 33, 10, 11, 20, 21, 30, 31]
    assert lower_triangle(grid(5)).tolist() == [0, 33, 43, 10, 11, 44, 20, 21, 22, 30, 31, 32, 40, 41, 42]


@pytest.mark.parametrize("n", [1, 2, 5, 6, 17])
def test_lower_triangle_round_trip(n: int) -> None:
    x = torch.randn(2, 3, n, n)
    v = lower_triangle(x)
    assert v.shape == (2, 3, tril_size(n))
    q, k = packed_positions(n)
    assert torch.equal(v, x[..., q, k]) and (k <= q).all()
    assert len(set(zip(q.tolist(), k.tolist()))) == tril_size(n)  # every lower entry once
    full = unpack_lower_triangle(v, n)
    assert torch.equal(torch.tril(full), torch.tril(x))
    assert torch.isneginf(full[..., torch.ones(n, n, dtype=torch.bool).triu(1)]).all()
    assert torch.equal(unpack_lower_triangle(v, fill=0.0), torch.tril(x))
    arr = unpack_lower_triangle(v.numpy(), fill=0.0)
    assert isinstance(arr, np.ndarray) and np.array_equal(arr, torch.tril(x).numpy())
    with pytest.raises(ValueError):
        unpack_lower_triangle(v, n + 1)


def assert_same_logits(got: torch.Tensor, want: torch.Tensor, layers: int) -> None:
    """Logits of two float32 forwards that differ only in how attention sums over keys.

    Eager attention sums ``p @ v`` over the T keys in one matmul; SDPA's flash kernel (and the
    capture path) in blocks with an online softmax. Reordering a sum of T float32 terms moves it
    by up to ~T ulps of its scale, and each of the layers adds such an error on top of what it
    passes on, so the logits agree to about ``T * layers * eps * max|logits|``, not to a fixed
    absolute figure (the random tiny models' logits reach ~10, where 1e-5 is only ~10 ulps).
    """
    tol = T * layers * torch.finfo(torch.float32).eps * float(want.abs().max())
    torch.testing.assert_close(got, want, atol=tol, rtol=0)


def check_against_eager(got: torch.Tensor, ref: torch.Tensor) -> None:
    layers, heads = ref.shape[1], ref.shape[2]
    assert got.shape == (ref.shape[0], layers, heads, tril_size(T)) and got.dtype == torch.float16
    assert torch.equal(torch.triu(ref, diagonal=1), torch.zeros_like(ref))  # nothing lost above the diagonal
    # log space, within float16 rounding (half a ulp is < 0.016 on [-60, 0])
    want = lower_triangle(ref).log().clamp(min=LOG_FLOOR)
    torch.testing.assert_close(got.float(), want, atol=0.02, rtol=1e-3)
    # probability space, rebuilt as squares
    probs = unpack_lower_triangle(got.float(), T).exp()
    torch.testing.assert_close(probs, ref, atol=1e-4, rtol=2e-3)
    assert got.float().min() >= LOG_FLOOR


@pytest.mark.parametrize("generic", [False, True], ids=["flash_lse", "log_softmax"])
@pytest.mark.parametrize("build", [tiny_starcoder2, tiny_llama, tiny_gpt2])
def test_matches_output_attentions(build, generic, monkeypatch) -> None:
    """Both ways of computing log p (CPU flash kernel's log-sum-exp, or log_softmax as on GPUs)
    give eager attention's probabilities and its forward pass; outside a recorder it is SDPA."""
    if generic:
        monkeypatch.setattr(capture, "_flash_with_lse", lambda *a: False)
    model = build()
    x = ids(2)
    with torch.no_grad():
        ref, ref_logits = eager_attentions(model, x)
        with record_attention(model) as rec:
            logits = model(x).logits
            got = rec.take()
        plain = model(x).logits
    check_against_eager(got, ref)
    assert_same_logits(logits, ref_logits, layers=ref.shape[1])
    assert_same_logits(logits, plain, layers=ref.shape[1])
    assert model.config._attn_implementation == CAPTURE_ATTENTION


def test_padded_batch_matches_output_attentions() -> None:
    """With a padding mask (right padding: every query keeps a key) the masked keys get p = 0."""
    model = tiny_starcoder2()
    x = ids(2)
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, -5:] = 0
    with torch.no_grad():
        ref, ref_logits = eager_attentions(model, x, attention_mask=mask)
        with record_attention(model) as rec:
            logits = model(x, attention_mask=mask).logits
        got = rec.take()
    check_against_eager(got, ref)
    assert_same_logits(logits, ref_logits, layers=ref.shape[1])
    assert (unpack_lower_triangle(got.float(), T)[1, :, :, -1, -5:] == LOG_FLOOR).all()


def test_coded_capture_is_the_stores_code_of_the_float32_log_probs() -> None:
    """``log_range`` codes as the layer runs: the uint8 codes the store makes of the float32
    log-probs (none of float16's rounding in between), 0 where p underflows to 0."""
    model = tiny_starcoder2()
    x = ids(2)
    with torch.no_grad():
        ref, _ = eager_attentions(model, x)
        with record_attention(model, log_range=20.0) as rec:
            model(x)
        got = rec.take()
    assert got.dtype == torch.uint8 and got.shape == ref.shape[:3] + (tril_size(T),)
    logp = lower_triangle(ref).log()
    want = ((logp + 20.0) * 255.0 / 20.0).clamp(0.0, 255.0)
    assert (got.float() - want).abs().max() <= 0.5 + 1e-3  # the nearest code, up to float32 rounding
    assert torch.equal(code_log_probs(torch.tensor([float("-inf"), -25.0, 0.0]), 20.0),
                       torch.tensor([0, 0, 255], dtype=torch.uint8))


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


def test_nothing_recorded_after_exit_and_exception() -> None:
    model = tiny_starcoder2()
    with record_attention(model):
        assert len(capture._ACTIVE.get()) == 1
    assert not capture._ACTIVE.get()
    with pytest.raises(KeyError):
        with record_attention(model):
            raise KeyError("boom")
    assert not capture._ACTIVE.get()
    # after the block, calls record nothing and still run
    with record_attention(model) as rec:
        pass
    with torch.no_grad():
        model(ids(1))
    with pytest.raises(RuntimeError, match="no forward pass"):
        rec.take()


def test_a_recorder_records_only_its_own_model() -> None:
    """Two models share the attention function; each recorder watches its own model's layers."""
    a, b = tiny_starcoder2(), tiny_llama()
    with torch.no_grad(), record_attention(a) as rec:
        b(ids(2))
        a(ids(1))
    assert rec.take().shape[:3] == (1, 2, 4)


def test_nested_recorders() -> None:
    model = tiny_starcoder2()
    with torch.no_grad(), record_attention(model) as outer:
        model(ids(1, seed=1))
        with record_attention(model) as inner:
            model(ids(2, seed=2))
        model(ids(1, seed=3))
    assert len(inner) == 2 and len(outer) == 4
    got_outer, got_inner = outer.take(), inner.take()
    assert torch.equal(got_outer[1:3], got_inner)


def test_nested_recorders_with_different_codings_each_get_their_own() -> None:
    """A float16 recorder inside an 8-bit one: each gets what it would have got alone."""
    model = tiny_starcoder2()
    x = ids(2)
    with torch.no_grad():
        alone = {}
        for log_range in (0.0, 20.0):
            with record_attention(model, log_range=log_range) as rec:
                model(x)
            alone[log_range] = rec.take()
        with record_attention(model, log_range=20.0) as coded, record_attention(model) as plain:
            model(x)
    assert torch.equal(plain.take(), alone[0.0])
    # the same codes, but for float32 rounding of a differently grouped affine (one code at most)
    assert (coded.take().int() - alone[20.0].int()).abs().max() <= 1


def test_threads_record_only_their_own_calls() -> None:
    """The attention function is shared by every call; a recorder must ignore the other thread's calls."""
    model = tiny_starcoder2()
    a_inside, b_done = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def thread_a() -> None:
        with torch.no_grad(), record_attention(model) as rec:
            a_inside.set()
            assert b_done.wait(30)  # B's calls happen while A's recorder is active
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


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_other_attention_implementations_are_refused(attn) -> None:
    model = tiny_starcoder2(attn=attn)
    with pytest.raises(ValueError, match="capturing attention"):
        with record_attention(model):
            pass
    assert not capture._ACTIVE.get()


def test_decoding_step_is_refused() -> None:
    model = tiny_starcoder2()
    with torch.no_grad():
        # the cache under this transformers version's name
        cache = {cache_argument(model): kv_cache(model(ids(1), use_cache=True))}
        with pytest.raises(ValueError, match="prefill"):
            with record_attention(model):
                model(ids(1)[:, :1], use_cache=True, **cache)
        model(ids(1)[:, :1], use_cache=True, **cache)  # outside a recorder: SDPA
