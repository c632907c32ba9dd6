"""A plain ViT-MAE over attention-pattern images, written the way the AP-MAE reference writes it.

Only the benchmark (:mod:`bench.mae`) uses it, as the baseline ``apmae.mae.model.APMAEModel`` is
timed against. It takes the same :class:`~apmae.mae.config.APMAEConfig` sizes (widths, depths,
heads, MLP sizes, patch size, mask ratio) and does the same work per step, written
straightforwardly:

* ``einops.rearrange`` patchify / unpatchify over the full ``grid x grid`` patch grid; training
  then picks the ``grid*(grid+1)/2`` lower-triangular patches with an index (the reference's
  train-time path), encoding for analysis may feed all ``grid**2`` (``encode(all_patches=True)``,
  the reference's analysis path);
* learned position embeddings for every grid cell (plus CLS), indexed like the patches;
* pre-LN blocks with separate ``q``/``k``/``v`` Linear layers and attention written out:
  ``softmax(q @ k^T * scale) @ v``; a GELU MLP;
* MAE random masking (argsort of noise), a decoder that un-shuffles visible encodings and mask
  tokens into their positions (as MAE does; the reference's scatter bug would not change the
  cost), MSE on the masked patches only.

No relative position bias and no pixel standardisation (the reference has neither).
:meth:`ReferenceMAE.load_from_apmae` copies an ``APMAEModel``'s weights in, so the benchmark can
check that both compute the same loss before timing them.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from apmae.mae.config import APMAEConfig
from apmae.mae.model import APMAEModel


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)
        k = rearrange(self.to_k(x), "b n (h d) -> b h n d", h=self.heads)
        v = rearrange(self.to_v(x), "b n (h d) -> b h n d", h=self.heads)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        out = attn @ v
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = FeedForward(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ReferenceMAE(nn.Module):
    def __init__(self, config: APMAEConfig) -> None:
        super().__init__()
        c = self.config = config
        g, p = c.grid, c.patch_size
        D, Dd = c.hidden_size, c.decoder_hidden_size
        rows, cols = torch.tril_indices(g, g)
        self.register_buffer("tril_index", rows * g + cols, persistent=False)  # into the g*g grid

        self.patch_embed = nn.Linear(p * p, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + g * g, D))
        self.blocks = nn.ModuleList(Block(D, c.num_attention_heads, c.intermediate_size, c.layer_norm_eps)
                                    for _ in range(c.num_hidden_layers))
        self.norm = nn.LayerNorm(D, eps=c.layer_norm_eps)

        self.decoder_embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 1 + g * g, Dd))
        self.decoder_blocks = nn.ModuleList(
            Block(Dd, c.decoder_num_attention_heads, c.decoder_intermediate_size, c.layer_norm_eps)
            for _ in range(c.decoder_num_hidden_layers))
        self.decoder_norm = nn.LayerNorm(Dd, eps=c.layer_norm_eps)
        self.decoder_pred = nn.Linear(Dd, p * p)

        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for t in (self.cls_token, self.mask_token, self.pos_embed, self.decoder_pos_embed):
            nn.init.normal_(t, std=0.02)

    # --- patches ----------------------------------------------------------------------------

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """``[B, 1, H, W]`` -> ``[B, grid*grid, p*p]``: every patch of the grid."""
        p = self.config.patch_size
        return rearrange(imgs, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, grid*grid, p*p]`` -> ``[B, 1, H, W]``."""
        g, p = self.config.grid, self.config.patch_size
        return rearrange(x, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=g, w=g, p1=p, p2=p, c=1)

    def random_masking(self, x: torch.Tensor, noise: torch.Tensor):
        B, N, D = x.shape
        n_keep = int(N * (1 - self.config.mask_ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :n_keep]
        x_visible = torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, D))
        mask = torch.ones(B, N, device=x.device)
        mask[:, :n_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return x_visible, mask, ids_restore

    # --- model ------------------------------------------------------------------------------

    def forward_encoder(self, imgs: torch.Tensor, noise: torch.Tensor):
        x = self.patchify(imgs)[:, self.tril_index]  # the lower-triangular patches
        x = self.patch_embed(x) + self.pos_embed[:, 1 + self.tril_index]
        x, mask, ids_restore = self.random_masking(x, noise)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(x)
        B, N = ids_restore.shape
        mask_tokens = self.mask_token.repeat(B, N + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:], mask_tokens], dim=1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1], x_], dim=1)
        pos = torch.cat([self.decoder_pos_embed[:, :1], self.decoder_pos_embed[:, 1 + self.tril_index]], 1)
        x = x + pos
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:]

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        target = self.patchify(imgs)[:, self.tril_index]
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def forward(self, imgs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        latent, mask, ids_restore = self.forward_encoder(imgs, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask)

    def encode(self, imgs: torch.Tensor, all_patches: bool = False) -> torch.Tensor:
        """CLS embedding of unmasked images: the lower-triangular patches, or with
        ``all_patches`` every grid patch (the reference's analysis path)."""
        x = self.patchify(imgs)
        if all_patches:
            x = self.patch_embed(x) + self.pos_embed[:, 1:]
        else:
            x = self.patch_embed(x[:, self.tril_index]) + self.pos_embed[:, 1 + self.tril_index]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]

    # --- for the equivalence check ----------------------------------------------------------

    @torch.no_grad()
    def load_from_apmae(self, model: APMAEModel) -> ReferenceMAE:
        """Copy ``model``'s weights in (it must have no relative position bias)."""
        if model.config.relative_position_bias:
            raise ValueError("the reference has no relative position bias")
        for name in ("patch_embed", "norm", "decoder_embed", "decoder_norm", "decoder_pred"):
            getattr(self, name).load_state_dict(getattr(model, name).state_dict())
        self.cls_token.copy_(model.cls_token)
        self.mask_token.copy_(model.mask_token)
        for mine, theirs in ((self.pos_embed, model.pos_embed),
                             (self.decoder_pos_embed, model.decoder_pos_embed)):
            mine[:, 0] = theirs[:, 0]
            mine[:, 1 + self.tril_index] = theirs[:, 1:]
        for mine, theirs in zip([*self.blocks, *self.decoder_blocks], [*model.blocks, *model.decoder_blocks]):
            mine.norm1.load_state_dict(theirs.norm1.state_dict())
            mine.norm2.load_state_dict(theirs.norm2.state_dict())
            qkv = (mine.attn.to_q, mine.attn.to_k, mine.attn.to_v)
            for lin, w, b in zip(qkv, theirs.qkv.weight.chunk(3), theirs.qkv.bias.chunk(3)):
                lin.weight.copy_(w)
                lin.bias.copy_(b)
            mine.attn.to_out.load_state_dict(theirs.proj.state_dict())
            mine.mlp.fc1.load_state_dict(theirs.fc1.state_dict())
            mine.mlp.fc2.load_state_dict(theirs.fc2.state_dict())
        return self
