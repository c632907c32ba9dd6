"""ablate_heads: equals zeroed projection weights, never leaks hooks, never crosses threads/tasks."""

from __future__ import annotations

import asyncio
import copy
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from conftest import TINY_VOCAB, tiny_gpt2, tiny_llama, tiny_starcoder2

from apmae.capture import record_attention
from apmae.store.format import lower_triangle
from apmae.intervene import ablate_heads, num_attention_heads, output_projections, pattern_change

T = 12


def tiny_starcoder2_biased():
    model = tiny_starcoder2()
    with torch.no_grad():  # a nonzero o_proj bias, so "the bias stays" is actually checked
        for proj in output_projections(model):
            proj.bias.normal_()
    return model


BUILDERS = [tiny_starcoder2_biased, tiny_llama, tiny_gpt2]


def ids(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, TINY_VOCAB, (batch, T), generator=torch.Generator().manual_seed(seed))


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).logits


def zeroed_copy(model: torch.nn.Module, heads: list[tuple[int, int]]) -> torch.nn.Module:
    """The reference: a deep copy whose projection weights ignore the given heads' inputs."""
    ref = copy.deepcopy(model)
    projections = output_projections(ref)
    n = num_attention_heads(ref)
    with torch.no_grad():
        for layer, head in heads:
            proj = projections[layer]
            if isinstance(proj, torch.nn.Linear):  # weight [out, in]: zero the columns
                width = proj.in_features // n
                proj.weight[:, head * width:(head + 1) * width] = 0
            else:  # GPT-2 Conv1D, weight [in, out]: zero the rows
                width = proj.weight.shape[0] // n
                proj.weight[head * width:(head + 1) * width, :] = 0
    return ref


def pre_hook_count(model: torch.nn.Module) -> int:
    return sum(len(p._forward_pre_hooks) for p in output_projections(model))


@pytest.mark.parametrize("build", BUILDERS)
def test_equals_zeroed_projection_weights(build) -> None:
    model = build()
    x = ids()
    plain = logits(model, x)
    layers = len(output_projections(model))
    for heads in ([(0, 1)], [(layers - 1, 3)], [(0, 0), (0, 2), (layers - 1, 1)]):
        with ablate_heads(model, heads) as effective:
            got = logits(model, x)
            assert pre_hook_count(model) == len({layer for layer, _ in heads})
        assert effective == frozenset(heads)
        want = logits(zeroed_copy(model, heads), x)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        assert not torch.allclose(got, plain, atol=1e-3)  # a random model notices a missing head
    assert pre_hook_count(model) == 0
    assert torch.equal(logits(model, x), plain)


def test_starcoder2_bias_survives_whole_layer_ablation() -> None:
    """All heads of a layer ablated: the projection still adds its bias (zeroed input, not output)."""
    model = tiny_starcoder2_biased()
    x = ids()
    heads = [(0, h) for h in range(4)]
    with ablate_heads(model, heads):
        got = logits(model, x)
    torch.testing.assert_close(got, logits(zeroed_copy(model, heads), x), atol=1e-5, rtol=0)
    proj = output_projections(model)[0]
    seen = {}
    handle = proj.register_forward_hook(lambda m, a, out: seen.setdefault("out", out))
    try:
        with ablate_heads(model, heads):
            logits(model, x)
    finally:
        handle.remove()
    assert torch.allclose(seen["out"], proj.bias.detach().expand_as(seen["out"]))


@pytest.mark.parametrize("build", BUILDERS)
def test_ablating_nothing_is_the_plain_model(build) -> None:
    model = build()
    x = ids()
    plain = logits(model, x)
    with ablate_heads(model, []) as effective:
        assert effective == frozenset()
        assert pre_hook_count(model) == 0
        assert torch.equal(logits(model, x), plain)


def test_hooks_removed_after_exit_and_exception() -> None:
    model = tiny_llama()
    x = ids()
    plain = logits(model, x)
    with ablate_heads(model, [(0, 1), (2, 3)]):
        assert pre_hook_count(model) == 2
    assert pre_hook_count(model) == 0
    with pytest.raises(KeyError), ablate_heads(model, [(1, 0)]):
        raise KeyError("boom")
    assert all(len(p._forward_pre_hooks) == 0 for p in output_projections(model))
    assert torch.equal(logits(model, x), plain)  # the context was restored too


@pytest.mark.parametrize(
    ("heads", "match"),
    [
        ([(2, 0)], r"layer 2 out of range.*0\.\.1"),
        ([(-1, 0)], r"layer -1 out of range"),
        ([(0, 4)], r"head 4 \(layer 0\) out of range.*0\.\.3"),
        ([(1, -1)], r"head -1 \(layer 1\) out of range"),
        ([(0, 1), (1, 2), (0, 1)], r"\(0, 1\) is listed more than once"),
        ([(0, h % 4) for h in range(9)], r"9 heads requested but the model has only 8 \(2 layers x 4 heads\)"),
        ([(0, 1, 2)], r"\(layer, head\) pair"),
        ([(0.0, 1)], r"\(layer, head\) pair"),
    ],
)
def test_invalid_heads_are_refused(heads, match) -> None:
    model = tiny_gpt2()
    with pytest.raises(ValueError, match=match), ablate_heads(model, heads):
        pass
    assert pre_hook_count(model) == 0


def test_nested_blocks_union_and_restore() -> None:
    model = tiny_llama()
    x = ids()
    outer_heads, inner_heads = [(0, 1)], [(0, 1), (0, 2), (2, 0)]  # repeating an outer head is fine
    want_outer = logits(zeroed_copy(model, outer_heads), x)
    want_inner = logits(zeroed_copy(model, [(0, 1), (0, 2), (2, 0)]), x)
    plain = logits(model, x)
    with ablate_heads(model, outer_heads) as outer:
        assert outer == {(0, 1)}
        torch.testing.assert_close(logits(model, x), want_outer, atol=1e-5, rtol=0)
        with ablate_heads(model, inner_heads) as inner:
            assert inner == {(0, 1), (0, 2), (2, 0)}
            assert pre_hook_count(model) == 2  # one shared hook on layer 0's projection, one on layer 2's
            torch.testing.assert_close(logits(model, x), want_inner, atol=1e-5, rtol=0)
        assert pre_hook_count(model) == 1
        torch.testing.assert_close(logits(model, x), want_outer, atol=1e-5, rtol=0)
    assert pre_hook_count(model) == 0
    assert torch.equal(logits(model, x), plain)


def test_two_models_do_not_share_ablations() -> None:
    a, b = tiny_gpt2(), tiny_gpt2()
    x = ids()
    plain_b = logits(b, x)
    with ablate_heads(a, [(0, 1)]):
        assert torch.equal(logits(b, x), plain_b)


def test_threads_see_only_their_own_ablation() -> None:
    """Thread A runs ablated passes, thread B plain ones, on one model at the same time."""
    model = tiny_starcoder2_biased()
    heads = [(0, 1), (1, 3)]
    inputs = [ids(1, seed=s) for s in range(4)]
    plain = [logits(model, x) for x in inputs]
    with ablate_heads(model, heads):
        ablated = [logits(model, x) for x in inputs]
    assert all(not torch.equal(p, a) for p, a in zip(plain, ablated))
    rounds = 40
    barrier = threading.Barrier(2, timeout=30)

    def run(ablate: bool) -> list[bool]:
        ok = []
        for i in range(rounds):
            x = inputs[i % len(inputs)]
            if ablate:
                with ablate_heads(model, heads):
                    barrier.wait()  # B's pass runs while A's hooks are installed and A is inside
                    got = logits(model, x)
                ok.append(torch.equal(got, ablated[i % len(inputs)]))
            else:
                barrier.wait()
                got = logits(model, x)
                ok.append(torch.equal(got, plain[i % len(inputs)]))
        return ok

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(run, True), pool.submit(run, False)]
        results = [f.result(timeout=120) for f in futures]
    assert results == [[True] * rounds, [True] * rounds]
    assert pre_hook_count(model) == 0


def test_asyncio_tasks_see_only_their_own_ablation() -> None:
    model = tiny_gpt2()
    x = ids()
    plain = logits(model, x)
    want = logits(zeroed_copy(model, [(1, 2)]), x)

    async def main() -> tuple[torch.Tensor, torch.Tensor]:
        inside = asyncio.Event()
        other_done = asyncio.Event()

        async def ablated_task() -> torch.Tensor:
            with ablate_heads(model, [(1, 2)]):
                inside.set()
                await other_done.wait()
                return logits(model, x)

        async def plain_task() -> torch.Tensor:
            await inside.wait()  # the other task is inside its block
            out = logits(model, x)
            other_done.set()
            return out

        return await asyncio.gather(ablated_task(), plain_task())

    got_ablated, got_plain = asyncio.run(main())
    assert torch.equal(got_plain, plain)
    torch.testing.assert_close(got_ablated, want, atol=1e-5, rtol=0)
    assert pre_hook_count(model) == 0


@pytest.mark.parametrize(("build", "layer"), [(tiny_starcoder2_biased, 0), (tiny_llama, 1)])
def test_composes_with_record_attention(build, layer) -> None:
    """Patterns recorded inside an ablation are the ablated model's: later layers change, the rest not."""
    model = build()
    x = ids()
    with torch.no_grad():
        with record_attention(model) as rec:
            model(x)
            plain = rec.take()
        with ablate_heads(model, [(layer, 2)]), record_attention(model) as rec:
            model(x)
            ablated = rec.take()
    assert torch.equal(ablated[:, : layer + 1], plain[:, : layer + 1])  # the ablated layer and earlier
    for later in range(layer + 1, plain.shape[1]):
        assert not torch.equal(ablated[:, later], plain[:, later])
    assert pre_hook_count(model) == 0


def test_pattern_change_is_the_mean_total_variation_per_row():
    first = torch.zeros(4, 4)  # every row on key 0
    first[:, 0] = 1
    diagonal = torch.eye(4)  # every row on itself: rows 1..3 move entirely, row 0 stays
    packed = [lower_triangle(w.clamp_min(1e-12).log())[None, None].numpy() for w in (first, diagonal)]
    moved = pattern_change(packed[0], packed[1])
    assert moved.shape == (1, 1) and moved[0, 0] == pytest.approx(3 / 4, abs=1e-5)
    assert pattern_change(packed[0], packed[0])[0, 0] == 0
