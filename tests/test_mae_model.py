"""AP-MAE model and pattern scaling: shapes, only lower-triangular patches, the two reference flaws fixed."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModel

from apmae.store.format import LOG_FLOOR, lower_triangle
from apmae.mae.config import PRESETS, APMAEConfig, config_from_preset
from apmae.mae.model import APMAEModel, APMAEOutput
from apmae.mae.scaling import GAP, SCALINGS, to_images

# 16 px, patch 4 -> 4 x 4 grid, 10 lower-triangular patches of 16 pixels
TINY = dict(
    image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
    decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=32,
)
N, P, B = 10, 16, 3


@pytest.fixture
def model() -> APMAEModel:
    torch.manual_seed(0)
    return APMAEModel(APMAEConfig(**TINY)).eval()


def images(batch: int = B) -> torch.Tensor:
    """Deterministic smooth images in [0, 1], a different one per batch item."""
    pos = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16)
    phase = torch.arange(batch, dtype=torch.float32).view(-1, 1, 1, 1)
    return 0.5 + 0.5 * torch.sin(0.1 * pos + phase)


def fixed_noise(batch: int = B) -> torch.Tensor:
    return ((torch.arange(N) * 7 + torch.arange(batch)[:, None] * 3) % N).float()


def upper_patches() -> torch.Tensor:
    """``[16, 16]`` bool: pixels of the strictly upper patches (block column > block row)."""
    return torch.kron(torch.ones(4, 4).triu(1), torch.ones(4, 4)).bool()


# --- shapes and patches ----------------------------------------------------------------------


def test_shapes(model):
    x = images()
    assert model.patchify(x).shape == (B, N, P) == model.patchify(x[:, 0]).shape
    assert model.unpatchify(model.patchify(x)).shape == (B, 1, 16, 16)
    patches = model.standardised_patches(x)
    latent, mask, ids_restore = model.forward_encoder(patches, fixed_noise())
    assert latent.shape == (B, 1 + 5, 16) and mask.shape == ids_restore.shape == (B, N)
    assert model.forward_decoder(latent, ids_restore, patches).shape == (B, N, P)
    out = model(x, noise=fixed_noise())
    assert isinstance(out, APMAEOutput) and out.loss.ndim == 0 and out.pred.shape == (B, N, P)
    assert len(model(x, noise=fixed_noise(), return_dict=False)) == 5
    assert model.encode(x).shape == model.encode(x, pooling="mean").shape == (B, 16)
    with pytest.raises(ValueError, match="pooling"):
        model.encode(x, pooling="max")
    with pytest.raises(ValueError, match="images"):
        model.patchify(torch.zeros(B, 1, 8, 8))


@pytest.mark.parametrize("bias", [False, True], ids=["no_bias", "position_bias"])
@pytest.mark.parametrize("decoder_layers", [1, 2])
def test_predicting_only_the_masked_patches_is_the_same_loss(decoder_layers, bias):
    """``predict="masked"`` (the decoder's last block and head on the masked rows alone) gives
    the loss, the gradients and the masked patches' predictions of ``"all"``; training's
    ``"loss"`` the same loss and gradients."""
    torch.manual_seed(0)
    model = APMAEModel(APMAEConfig(**{**TINY, "decoder_num_hidden_layers": decoder_layers,
                                      "relative_position_bias": bias}))
    with torch.no_grad():  # a bias that is not zero, so its rows must be the right ones
        for block in (*model.blocks, *model.decoder_blocks):
            if block.rel_bias is not None:
                block.rel_bias.normal_()
    x, noise = images(), fixed_noise()
    full, part, loss = (model(x, noise=noise, predict=p) for p in ("all", "masked", "loss"))
    masked = full.ids_restore.argsort(1)[:, 5:]
    assert part.pred.shape == (B, 5, P) and torch.equal(masked.sort(1).values, full.mask.nonzero()[:, 1].view(B, 5))
    torch.testing.assert_close(part.pred, full.pred.gather(1, masked[..., None].expand(-1, -1, P)))
    assert loss.pred is None
    grads = [torch.autograd.grad(o.loss, model.parameters(), allow_unused=True) for o in (full, part, loss)]
    for other, g_other in zip((part, loss), grads[1:]):
        torch.testing.assert_close(other.loss, full.loss)
        for g_full, g in zip(grads[0], g_other):
            if g_full is not None:
                torch.testing.assert_close(g, g_full, atol=1e-6, rtol=1e-4)
    with pytest.raises(ValueError, match="predict"):
        model(x, noise=noise, predict="visible")


def test_patchify_keeps_exactly_the_lower_patches(model):
    assert model.tril_patches.tolist() == [[r, c] for r in range(4) for c in range(r + 1)]
    x = images()
    patches = model.patchify(x)
    assert patches.shape[1] == 4 * 5 // 2
    assert torch.equal(patches[:, 3], x[:, 0, 8:12, 0:4].flatten(1))  # patch (2, 0), row-major
    back = model.unpatchify(patches)
    assert upper_patches().sum() == 6 * P and (back[:, 0][:, upper_patches()] == 0).all()
    assert torch.equal(back[:, 0][:, ~upper_patches()], x[:, 0][:, ~upper_patches()])


def test_upper_patches_are_never_seen(model):
    clean = images()
    dirty = clean.clone()
    dirty[:, 0][:, upper_patches()] = 1e6
    assert torch.equal(model.patchify(dirty), model.patchify(clean))
    assert torch.equal(model.encode(dirty), model.encode(clean))
    a, b = model(dirty, noise=fixed_noise()), model(clean, noise=fixed_noise())
    assert torch.equal(a.pred, b.pred) and torch.equal(a.loss, b.loss)


def test_masking_keeps_the_smallest_noise(model):
    x = torch.arange(B * N * 2, dtype=torch.float32).view(B, N, 2)
    noise = fixed_noise()
    visible, mask, ids_restore = model.random_masking(x, noise)
    n_keep = round(N * (1 - model.config.mask_ratio))
    assert visible.shape == (B, n_keep, 2) and (mask.sum(1) == N - n_keep).all()
    keep = noise.argsort(1)[:, :n_keep]
    assert torch.equal(visible, x.gather(1, keep[..., None].expand(-1, -1, 2)))
    assert (mask.gather(1, keep) == 0).all()
    assert torch.equal(noise.argsort(1).gather(1, ids_restore), torch.arange(N).expand(B, -1))
    _, mask, _ = model.random_masking(x)  # default random noise, same count
    assert (mask.sum(1) == N - n_keep).all()


def test_fixed_noise_gives_fixed_output(model):
    a, b = model(images(), noise=fixed_noise()), model(images(), noise=fixed_noise())
    assert torch.equal(a.loss, b.loss) and torch.equal(a.pred, b.pred)


def test_loss_is_mse_on_masked_patches_only(model):
    x = images()
    target = model.standardised_patches(x)
    pred = target.clone()
    mask = torch.zeros(B, N)
    mask[:, :2] = 1
    pred[:, 2:] += 100.0  # errors on visible patches do not count
    pred[:, :2] += 0.5
    assert torch.allclose(model.forward_loss(pred, target, mask), torch.tensor(0.25))


# --- the reference's flaws -------------------------------------------------------------------


def test_flaw1_visible_encodings_reach_the_decoder_at_their_own_positions(model):
    latent, mask, ids_restore = model.forward_encoder(model.standardised_patches(images()), fixed_noise())
    tokens = model._decoder_tokens(latent, ids_restore)
    embedded = model.decoder_embed(latent)
    assert tokens.shape == (B, 1 + N, 16) and torch.equal(tokens[:, 0], embedded[:, 0])
    for b in range(B):
        for j in range(N):
            if mask[b, j]:
                assert torch.equal(tokens[b, 1 + j], model.mask_token[0, 0])
            else:  # visible patch j is latent row 1 + (its rank among the kept patches)
                assert torch.equal(tokens[b, 1 + j], embedded[b, 1 + ids_restore[b, j]])


def test_flaw2_encode_sees_exactly_the_lower_patches(model):
    lengths = []
    handle = model.blocks[0].register_forward_pre_hook(lambda m, args: lengths.append(args[0].shape[1]))
    try:
        model.encode(images())
        model.forward_encoder(model.standardised_patches(images()), fixed_noise())
    finally:
        handle.remove()
    assert lengths == [1 + N, 1 + 5]


# --- save / load and golden values ------------------------------------------------------------


def test_save_load_roundtrip(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    x, noise = images(), fixed_noise()
    for loaded in (APMAEModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        loaded.eval()
        assert type(loaded) is APMAEModel and loaded.config.to_diff_dict() == model.config.to_diff_dict()
        assert torch.equal(loaded.tril_patches, model.tril_patches)  # non-persistent: rebuilt, not loaded
        assert torch.equal(loaded.encode(x), model.encode(x))
        a, b = loaded(x, noise=noise), model(x, noise=noise)
        assert torch.equal(a.pred, b.pred) and torch.equal(a.loss, b.loss)


def test_golden_forward(model):
    """Pins the architecture and initialisation (torch.manual_seed(0) in the fixture).

    Tolerances rtol=1e-4, atol=1e-5: float32 reduction order may differ across CPUs/BLAS builds;
    any architectural change moves these numbers far more.
    """
    x, noise = images(2), fixed_noise(2)
    out = model(x, noise=noise)
    assert torch.allclose(out.loss, torch.tensor(GOLDEN_LOSS), rtol=1e-4, atol=1e-5)
    assert torch.allclose(model.encode(x)[:, :4], torch.tensor(GOLDEN_ENCODE), rtol=1e-4, atol=1e-5)


GOLDEN_LOSS = 1.2139103
GOLDEN_ENCODE = [[1.3728527, -0.8339348, -1.9570873, 0.4415235], [1.2355355, -0.9014906, -1.1630833, 0.3238055]]


# --- scaling -----------------------------------------------------------------------------------


def packed_patterns(n: int = 4, T: int = 16) -> torch.Tensor:
    """Causal softmax patterns, stored like apmae.capture does (float16 log-probs, floored)."""
    torch.manual_seed(1)
    scores = (3 * torch.randn(n, T, T)).masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
    return lower_triangle(scores.log_softmax(-1)).clamp_min(LOG_FLOOR).half()


@pytest.mark.parametrize("scaling", SCALINGS)
def test_scaling_shapes_and_range(scaling, model):
    imgs = to_images(packed_patterns(), scaling)
    assert imgs.shape == (4, 1, 16, 16) and imgs.dtype == torch.float32
    assert (imgs >= 0).all() and (imgs <= 1).all()
    assert (imgs[:, 0].triu(1) == 0).all()
    assert model(imgs).pred.shape == (4, N, P)  # the images feed the model as they are


@pytest.mark.parametrize("scaling", SCALINGS)
def test_pooled_images_average_each_block_of_the_full_image(scaling):
    """A smaller image is the full one average-pooled, upper triangle's zeros included."""
    packed = packed_patterns()
    full = to_images(packed, scaling)
    for size in (8, 4, 1):
        pooled = torch.nn.functional.avg_pool2d(full, 16 // size)
        assert torch.allclose(to_images(packed, scaling, size=size), pooled, atol=1e-6)
    with pytest.raises(ValueError, match="divide"):
        to_images(packed, scaling, size=5)


def tri2(x00: float, x10: float, x11: float) -> torch.Tensor:
    """One packed 2-token pattern with these log-probabilities."""
    return lower_triangle(torch.tensor([[[x00, 0.0], [x10, x11]]]))


def test_log_affine_keeps_a_gap_above_the_upper_triangle():
    packed = tri2(0.0, LOG_FLOOR, 0.0)  # row 1: one weight at the storage floor
    img = to_images(packed, "log_affine")[0, 0]
    assert img.tolist() == [[1.0, 0.0], [pytest.approx(GAP), 1.0]]
    lower = torch.ones(16, 16).tril().bool()
    imgs = to_images(packed_patterns(), "log_affine")[:, 0]
    assert (imgs[:, lower] >= GAP - 1e-6).all() and (imgs[:, ~lower] == 0).all()
    # a fixed scale: the same weight maps to the same value in every image
    other = to_images(tri2(-5.0, -5.0, -1.0), "log_affine")[0, 0]
    assert other[0, 0].item() == other[1, 0].item() == pytest.approx(GAP + (1 - GAP) * 0.75)


def test_log_normalize_collides_with_the_upper_triangle():
    """The paper's scaling maps the smallest real weight to 0, like the never-attended upper triangle."""
    img = to_images(tri2(0.0, -10.0, -0.1), "log_normalize")[0, 0]
    assert img[1, 0] == 0 == img[0, 1]
    assert to_images(tri2(0.0, -2.0, -0.1), "log_normalize")[0, 0, 1, 0] == 0  # per image


def test_prob_scaling_is_exp():
    img = to_images(tri2(0.0, -0.5, -1.0).half(), "prob")[0, 0]
    assert torch.allclose(img, torch.tensor([[1.0, 0.0], [math.exp(-0.5), math.exp(-1.0)]]), atol=1e-3)


def test_scaling_rejects_bad_input():
    with pytest.raises(ValueError, match="log_affine"):
        to_images(torch.zeros(1, 3), "sqrt")
    with pytest.raises(ValueError, match="N, T"):
        to_images(torch.zeros(3), "prob")


# --- config and presets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(image_size=18), "multiple"),
        (dict(num_attention_heads=3), "divisible"),
        (dict(decoder_num_attention_heads=5), "divisible"),
        (dict(scaling="sqrt"), "scaling"),
        (dict(mask_ratio=0.0), "mask_ratio"),
        (dict(mask_ratio=1.0), "mask_ratio"),
    ],
)
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        APMAEConfig(**{**TINY, **bad})


def test_presets():
    paper = config_from_preset("paper")
    assert (paper.grid, paper.num_patches, paper.hidden_size, paper.num_hidden_layers) == (8, 36, 512, 24)
    assert (paper.decoder_hidden_size, paper.decoder_num_hidden_layers) == (512, 8)
    cpu = config_from_preset("cpu", mask_ratio=0.75)
    assert (cpu.num_patches, cpu.hidden_size, cpu.mask_ratio) == (36, 128, 0.75)
    assert config_from_preset("cpu").to_dict() == APMAEConfig().to_dict()  # "cpu" is the default
    assert set(PRESETS) == {"paper", "cpu"}
    with pytest.raises(ValueError, match="paper"):
        config_from_preset("huge")
    with torch.device("meta"):  # sizes only, no memory, no init cost
        params = sum(p.numel() for p in APMAEModel(paper).parameters())
    # 24 + 8 blocks of ~3.15M: ~102M (the paper quotes 127M; see apmae/mae/model.py PRESETS)
    assert params == pytest.approx(102.2e6, rel=0.01)


def test_position_embeddings_start_as_row_and_column_features(model):
    """Patches in one row band share the row half of their position embedding (sin-cos init)."""
    from apmae.mae.layers import sincos_2d

    table = sincos_2d(model.tril_patches, 16)
    assert torch.equal(table[0], torch.zeros(16))  # CLS
    rows = model.tril_patches[:, 0]
    same_row = (rows[:, None] == rows[None]).nonzero()
    assert all(torch.equal(table[1 + a, :8], table[1 + b, :8]) for a, b in same_row)
    torch.testing.assert_close(model.pos_embed[0], table)


def test_images_can_be_pooled_to_a_smaller_size():
    packed = torch.log(torch.full((2, 8 * 9 // 2), 0.5))
    img = to_images(packed, "log_affine", size=4)
    assert img.shape == (2, 1, 4, 4)
    with pytest.raises(ValueError, match="does not divide"):
        to_images(packed, "log_affine", size=3)


def test_standardisation_changes_the_loss_scale_not_the_prediction_units():
    """``pred`` is in image units whatever ``pixel_mean``/``pixel_std``; the loss is the MSE
    in standardised units (so it is divided by ``pixel_std ** 2``)."""
    torch.manual_seed(0)
    plain = APMAEModel(APMAEConfig(**TINY)).eval()
    torch.manual_seed(0)
    scaled = APMAEModel(APMAEConfig(**TINY, pixel_mean=0.5, pixel_std=0.25)).eval()
    x, noise = images(), fixed_noise()
    a, b = plain(x, noise=noise), scaled(x, noise=noise)
    target = scaled.patchify(x)
    per_patch = ((b.pred - target) ** 2).mean(-1)
    mse = (per_patch * b.mask).sum() / b.mask.sum()
    torch.testing.assert_close(b.loss, mse / 0.25 ** 2)
    assert not torch.allclose(a.pred, b.pred)  # the input was standardised differently


def test_relative_position_bias_indexes_row_and_column_offsets(model):
    g = model.config.grid
    idx = model.relative_index(torch.arange(model.config.num_patches)[None])[0]
    cells = model.tril_patches
    assert idx[0].eq((2 * g - 1) ** 2).all() and idx[:, 0].eq((2 * g - 1) ** 2).all()  # CLS
    for i, j in ((1, 2), (3, 0), (9, 9)):
        dr, dc = (cells[i] - cells[j]).tolist()
        assert idx[1 + i, 1 + j] == (dr + g - 1) * (2 * g - 1) + (dc + g - 1)
    plain = APMAEModel(APMAEConfig(**TINY, relative_position_bias=False))
    assert all(b.rel_bias is None for b in plain.blocks)
    biased = APMAEModel(APMAEConfig(**TINY, relative_position_bias=True))
    assert all(b.rel_bias is not None for b in (*biased.blocks, *biased.decoder_blocks))


def test_decoder_profiles_see_visible_pixels_only():
    """With decoder_profiles, each patch's row/column profiles average the visible patches of
    its bands; changing a masked patch's pixels changes nothing the decoder predicts."""
    torch.manual_seed(0)
    model = APMAEModel(APMAEConfig(**TINY, decoder_profiles=True)).eval()
    x, noise = images(), fixed_noise()
    with torch.no_grad():
        patches = model.standardised_patches(x)
        latent, mask, ids_restore = model.forward_encoder(patches, noise)
        pred = model.forward_decoder(latent, ids_restore, patches)
        masked = mask[0].bool()
        scribbled = patches.clone()
        scribbled[0, masked] += 5.0  # scribble over the masked patches of the first image
        pred2 = model.forward_decoder(*model.forward_encoder(scribbled, noise)[::2], scribbled)
        profiles = model.visible_profiles(patches, 1 - mask)
    torch.testing.assert_close(pred, pred2)
    # patch (3, 0)'s column profile: the mean over rows of the visible patches in block column 0
    col0 = [i for i, (r, c) in enumerate(model.tril_patches.tolist()) if c == 0 and not masked[i]]
    std = (model.patchify(x) - model.config.pixel_mean) / model.config.pixel_std
    want = std[0, col0].view(len(col0), 4, 4).mean(dim=1).mean(dim=0)
    torch.testing.assert_close(profiles[0, 6, :4], want)
    with pytest.raises(ValueError, match="input patches"):
        model.forward_decoder(latent, ids_restore)
