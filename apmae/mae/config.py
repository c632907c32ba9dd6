"""AP-MAE's configuration and its named sizes (presets): what a saved AP-MAE's ``config.json`` holds."""

from __future__ import annotations

from transformers import PretrainedConfig

from apmae.mae.scaling import SCALINGS


class APMAEConfig(PretrainedConfig):
    """Sizes of the AP-MAE encoder/decoder and the image scaling it was trained with.

    ``head_dim`` / ``decoder_head_dim`` (default ``hidden / heads``) and ``patch_embed_norm``
    (layer norms before and after the patch embedding) exist for the reference's released
    checkpoints, which have both (:mod:`apmae.mae.convert`)."""

    model_type = "apmae"

    def __init__(
        self,
        image_size: int = 64,
        patch_size: int = 8,
        hidden_size: int = 128,
        num_hidden_layers: int = 4,
        num_attention_heads: int = 4,
        intermediate_size: int = 512,
        decoder_hidden_size: int = 128,
        decoder_num_hidden_layers: int = 2,
        decoder_num_attention_heads: int = 4,
        decoder_intermediate_size: int = 512,
        mask_ratio: float = 0.5,
        scaling: str = "log_affine",
        log_floor: float = -20.0,
        relative_position_bias: bool = False,
        decoder_profiles: bool = True,
        head_dim: int | None = None,
        decoder_head_dim: int | None = None,
        patch_embed_norm: bool = False,
        pixel_mean: float = 0.0,
        pixel_std: float = 1.0,
        layer_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        **kwargs,
    ) -> None:
        if patch_size <= 0 or image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        for name, dim, heads, head in (
            ("hidden_size", hidden_size, num_attention_heads, head_dim),
            ("decoder_hidden_size", decoder_hidden_size, decoder_num_attention_heads, decoder_head_dim),
        ):
            if heads <= 0 or (head is None and dim % heads):
                raise ValueError(f"{name} {dim} is not divisible by its {heads} attention heads")
            if head is not None and head <= 0:
                raise ValueError(f"{name}: head dimension must be positive, got {head}")
        if scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {scaling!r}; valid: {', '.join(SCALINGS)}")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_hidden_layers = decoder_num_hidden_layers
        self.decoder_num_attention_heads = decoder_num_attention_heads
        self.decoder_intermediate_size = decoder_intermediate_size
        self.mask_ratio = mask_ratio
        self.scaling = scaling
        self.log_floor = log_floor
        self.relative_position_bias = relative_position_bias
        self.decoder_profiles = decoder_profiles
        self.head_dim = head_dim
        self.decoder_head_dim = decoder_head_dim
        self.patch_embed_norm = patch_embed_norm
        self.pixel_mean = pixel_mean
        self.pixel_std = pixel_std
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @property
    def grid(self) -> int:
        """Patches per image side."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Lower-triangular patches, diagonal included: the only ones the model sees."""
        return self.grid * (self.grid + 1) // 2


#: Named sizes. "paper": the published AP-MAE as the paper describes it; it counts
#: ~102M parameters, not the 127M the paper quotes: the reference's encoder heads are 64 wide (a
#: 1,024-wide attention on the 512-wide stream), these 32 (``head_dim`` unset); ``mae import``
#: builds the reference's width.
#: "cpu": small enough to train on a laptop CPU (the APMAEConfig sizes), with the decoder
#: handed the visible row/column profiles and no relative position bias: the profiles cut the
#: masked error most, and the bias added too little for its cost in throughput. Its images are
#: 64 px (patch 8, the paper's 8 x 8 grid), the 256-token patterns average-pooled 4 x 4: a lower
#: error than at 256 px in less time. What pooling averages away is token-level texture, set by
#: which tokens a query meets, that no pattern-level model predicts (bench/mae_lowrank.py); the
#: shapes stay: clusters per head and the cluster-label predictor are as at 256 px (RESULTS.md
#: `mae-cpu-preset`).
PRESETS: dict[str, dict] = {
    "paper": dict(
        image_size=256, patch_size=32,
        hidden_size=512, num_hidden_layers=24, num_attention_heads=16, intermediate_size=2048,
        decoder_hidden_size=512, decoder_num_hidden_layers=8, decoder_num_attention_heads=8,
        decoder_intermediate_size=2048, relative_position_bias=False,
    ),
    "cpu": dict(
        image_size=64, patch_size=8,
        hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
        decoder_hidden_size=128, decoder_num_hidden_layers=2, decoder_num_attention_heads=4,
        decoder_intermediate_size=512, decoder_profiles=True, relative_position_bias=False,
    ),
}


def config_from_preset(name: str, **overrides) -> APMAEConfig:
    """The config of preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return APMAEConfig(**{**PRESETS[name], **overrides})
