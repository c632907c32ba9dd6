"""Write the golden set that `apmae mae import` is tested against (tests/test_mae_convert.py).

The paper's AP-MAE checkpoints cannot be downloaded here, so this script rebuilds the reference
model (github.com/AISE-TUDelft/AP-MAE, ``Model/ap_mae``) from a reading of its code, written
afresh: the same module tree, so that its state dict has exactly the reference's parameter names
and layouts, and the same encoder forward pass:

* the image is cut into ``grid x grid`` patches in row-major grid order, each flattened row-major;
* a patch is embedded by ``LayerNorm(p*p) -> Linear -> LayerNorm(dim)`` (``patches_to_embedding``),
  plus its cell's learned position embedding (``pos_embedding``: CLS, then all ``grid**2`` cells);
* CLS (``cls_token`` plus position 0) is prepended, then pre-norm blocks: attention
  (``norm``, a bias-free fused ``to_qkv`` laid out ``(q|k|v, head, head_dim)``, softmax of
  ``q k^T / sqrt(head_dim)``, ``to_out``) and an exact-GELU MLP (``net``), each with a residual;
  a final ``LayerNorm`` (``transformer.norm``).

Two encodings are stored for each input: ``cls_tril``, the reference's training path with nothing
masked (the lower-triangular patches only, in a shuffled order as its masking leaves them), and
``cls_full``, its ``encode`` (all ``grid**2`` patches, the zero upper ones included). The decoder's
parameters are created with the reference's names and shapes (the converter maps them too); its
forward pass is not needed. Every parameter is drawn at random, layer norms included, so that a
wrong mapping of any of them changes the outputs.

Run from the repository root: ``python tests/data/make_reference_golden.py``. Deterministic
(fixed seed, CPU); rerunning rewrites the same files.

``--check MODEL_DIR`` (the reference repository's ``Model`` folder, which holds its ``ap_mae``
package; needs ``einops``) checks this reading against the reference's own code instead: the
golden state dict loads into it strictly and gives the stored outputs, and a paper-size
reference model at its own initialisation, converted by :func:`apmae.mae.convert.convert`,
encodes as the reference's training path does.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

OUT = Path(__file__).parent / "reference_golden"
SEED = 20260407

#: The reference's APMAEConfig fields, at a tiny size: 64-token images, 8 x 8 grid of 8-pixel
#: patches (the paper's grid), attention wider than the stream (as the paper's 16 x 64 on 512),
#: and a decoder narrower than the encoder (so that ``enc_to_dec`` exists).
CONFIG = dict(
    max_length=64, patch_size=8, mask_ratio=0.5,
    encoder_dim=32, encoder_layers=2, encoder_heads=2, encoder_dim_head=24, encoder_mlp_dim=64,
    decoder_dim=24, decoder_layers=1, decoder_heads=2, decoder_dim_head=12, decoder_mlp_dim=48,
    encoder_dropout=0.0, encoder_emb_dropout=0.0, encoder_pool="cls",
    hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=False,
    model_type="ap_mae", architectures=["APMAE"],
)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, eps: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.to_qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * head_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q, k, v = (t.reshape(B, N, self.heads, self.head_dim).transpose(1, 2)
                   for t in self.to_qkv(self.norm(x)).chunk(3, dim=-1))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)
        return self.to_out((weights @ v).transpose(1, 2).reshape(B, N, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, eps: float) -> None:
        super().__init__()
        # indices 0, 1, 4 hold parameters, as in the reference (2: activation, 3: dropout)
        self.net = nn.Sequential(nn.LayerNorm(dim, eps=eps), nn.Linear(dim, hidden), nn.GELU(),
                                 nn.Identity(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Transformer(nn.Module):
    def __init__(self, dim: int, layers: int, heads: int, head_dim: int, mlp: int, eps: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(dim, heads, head_dim, eps), FeedForward(dim, mlp, eps)])
            for _ in range(layers))
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, feed_forward in self.layers:
            x = x + attention(x)
            x = x + feed_forward(x)
        return self.norm(x)


class Encoder(nn.Module):
    def __init__(self, c: dict) -> None:
        super().__init__()
        self.patch, self.grid = c["patch_size"], c["max_length"] // c["patch_size"]
        P, D, eps = self.patch**2, c["encoder_dim"], c["layer_norm_eps"]
        self.patches_to_embedding = nn.Sequential(nn.LayerNorm(P, eps=eps), nn.Linear(P, D), nn.LayerNorm(D, eps=eps))
        self.pos_embedding = nn.Parameter(torch.randn(1, self.grid**2 + 1, D))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.transformer = Transformer(D, c["encoder_layers"], c["encoder_heads"], c["encoder_dim_head"],
                                       c["encoder_mlp_dim"], eps)

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T, T]`` -> ``[B, grid**2, p*p]``: grid cells row-major, pixels row-major."""
        g, p = self.grid, self.patch
        return images.reshape(-1, g, p, g, p).permute(0, 1, 3, 2, 4).reshape(-1, g * g, p * p)

    def cls(self, images: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """CLS output with only the grid cells ``cells`` (row-major ids) as tokens."""
        tokens = self.patches_to_embedding(self.patches(images)) + self.pos_embedding[:, 1:]
        start = (self.cls_token + self.pos_embedding[:, :1]).expand(len(images), -1, -1)
        return self.transformer(torch.cat([start, tokens[:, cells]], dim=1))[:, 0]


class Decoder(nn.Module):
    def __init__(self, c: dict) -> None:
        super().__init__()
        grid, D, Dd, eps = c["max_length"] // c["patch_size"], c["encoder_dim"], c["decoder_dim"], c["layer_norm_eps"]
        self.enc_to_dec = nn.Linear(D, Dd) if D != Dd else nn.Identity()
        self.mask_token = nn.Parameter(torch.randn(Dd))
        self.pos_embedding = nn.Parameter(torch.randn(1, grid**2 + 1, Dd))
        self.to_pixels = nn.Linear(Dd, c["patch_size"] ** 2)
        self.transformer = Transformer(Dd, c["decoder_layers"], c["decoder_heads"], c["decoder_dim_head"],
                                       c["decoder_mlp_dim"], eps)


class ReferenceAPMAE(nn.Module):
    def __init__(self, c: dict) -> None:
        super().__init__()
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)


def patterns(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``[count, 1, size, size]`` causal attention patterns scaled as the reference scales them
    (``log_normalize``: log weights mapped to [0, 1] per image, upper triangle 0), each with a
    different structure: diffuse, a sink column, a diagonal band, and random."""
    q = torch.arange(size)[:, None]
    k = torch.arange(size)[None]
    logits = torch.randn(count, size, size, generator=generator)
    logits[0] *= 0.1
    logits[1, :, 0] += 6.0
    logits[2] -= 0.5 * (q - k).abs()
    logits = logits.masked_fill(k > q, float("-inf"))
    logp = torch.log_softmax(logits, dim=-1)
    lower = torch.ones(size, size, dtype=torch.bool).tril()
    lo = logp.masked_fill(~lower, float("inf")).amin(dim=(1, 2), keepdim=True)
    hi = logp.masked_fill(~lower, float("-inf")).amax(dim=(1, 2), keepdim=True)
    return ((logp - lo) / (hi - lo)).masked_fill(~lower, 0.0).unsqueeze(1)


def main() -> None:
    torch.manual_seed(SEED)
    model = ReferenceAPMAE(CONFIG).eval()
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.3 if name.endswith(("norm.weight", "norm.bias")) or ".net.0." in name \
                or "patches_to_embedding.0" in name or "patches_to_embedding.2" in name else 0.5
            p.copy_(torch.randn(p.shape, generator=generator) * scale / max(1.0, p.shape[-1] ** 0.25)
                    + (1.0 if name.endswith("weight") and p.ndim == 1 else 0.0))
    enc = model.encoder
    images = patterns(4, CONFIG["max_length"], generator)
    tril = torch.tril_indices(enc.grid, enc.grid)
    tril_cells = tril[0] * enc.grid + tril[1]
    shuffled = tril_cells[torch.randperm(len(tril_cells), generator=generator)]
    with torch.no_grad():
        golden = {
            "images": images.contiguous(),
            "cls_tril": enc.cls(images, shuffled).contiguous(),
            "cls_full": enc.cls(images, torch.arange(enc.grid**2)).contiguous(),
        }
    OUT.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, OUT / "model.safetensors",
              metadata={"format": "pt"})
    save_file(golden, OUT / "golden.safetensors")
    (OUT / "config.json").write_text(json.dumps(CONFIG, indent=2, sort_keys=True) + "\n")


def check(reference_model_dir: Path) -> None:
    """Print the largest differences between the reference's code and the golden set, and
    between a converted paper-size reference model and the reference."""
    sys.path[:0] = [str(reference_model_dir), str(Path(__file__).parents[2])]
    from ap_mae import APMAE
    from ap_mae import APMAEConfig as ReferenceConfig

    from apmae.mae.convert import convert

    def reference_cls(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(training path with nothing masked, analysis-time encode) CLS vectors."""
        with torch.no_grad():
            full = model.encoder.encode(images.clone())[:, 0]
            model.encoder.num_masked = 0
            return model.encoder(images.clone())[0][:, 0], full

    sizes = {k: v for k, v in CONFIG.items() if k not in ("model_type", "architectures")}
    reference = APMAE(ReferenceConfig(**sizes)).eval()
    reference.load_state_dict(load_file(OUT / "model.safetensors"), strict=True)
    golden = load_file(OUT / "golden.safetensors")
    tril, full = reference_cls(reference, golden["images"])
    print(f"golden vs reference code: cls_tril {(tril - golden['cls_tril']).abs().max():.2e}, "
          f"cls_full {(full - golden['cls_full']).abs().max():.2e}")

    torch.manual_seed(SEED)
    reference = APMAE(ReferenceConfig()).eval()
    converted = convert(reference.state_dict(), reference.config.to_dict())
    images = torch.rand(2, 1, 256, 256, generator=torch.Generator().manual_seed(SEED)).tril()
    tril, _ = reference_cls(reference, images)
    with torch.no_grad():
        ours = converted.encode(images)
    print(f"paper size: reference {sum(p.numel() for p in reference.parameters()):,} parameters, "
          f"converted {sum(p.numel() for p in converted.parameters()):,}; CLS max difference "
          f"{(ours - tril).abs().max():.2e} (largest |CLS| {tril.abs().max():.2f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", type=Path, metavar="MODEL_DIR",
                        help="the reference repository's Model folder: check against its code")
    args = parser.parse_args()
    if args.check:
        check(args.check)
    else:
        main()
