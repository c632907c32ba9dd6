"""AP-MAE: a ViT masked autoencoder trained to reconstruct attention-pattern images.

Each (layer, head) attention pattern of a causal LM is a 1-channel ``T x T`` image whose upper
triangle is zero by construction. It is cut into ``patch_size`` patches; only the patches of the
lower triangle (diagonal included: ``grid*(grid+1)/2`` of them) exist for the model. Training masks
a random ``mask_ratio`` of them, encodes the visible ones (with a CLS token and learned position
embeddings), and the decoder reconstructs the masked ones (MSE on masked patches only). The
encoder's CLS vector of an unmasked pattern is the embedding later clustered per head.

Two flaws of the reference implementation are fixed here:

1. Its decoder scattered the mask tokens over the *visible* patches' positions, so the visible
   encodings never reached the decoder where they belong. Here the full decoder sequence is
   un-shuffled with ``ids_restore``: each visible encoding sits at its own position and mask
   tokens fill the masked ones (:meth:`APMAEModel._decoder_tokens`).
2. It trained on lower-triangular patches but encoded all ``grid**2`` patches (zero upper ones,
   never seen in training) for analysis. Here upper patches never enter the model at all:
   :meth:`APMAEModel.encode` sees exactly the ``num_patches`` patches of training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from apmae.mae.config import APMAEConfig
from apmae.mae.layers import Block, tril_patch_cells, sincos_2d, take_rows
from apmae.mae.scaling import to_images

try:  # transformers >= 5: init functions that skip weights already loaded by from_pretrained
    from transformers import initialization as init
except ImportError:  # transformers 4.x initialises only missing weights itself
    from torch.nn import init


@dataclass
class APMAEOutput(ModelOutput):
    """``loss``: MSE on masked patches; ``pred``: ``[B, N, p*p]`` every patch's reconstruction
    (``predict="masked"``: ``[B, N_masked, p*p]``, the masked patches in ``ids_restore.argsort``
    order; ``predict="loss"``: None); ``mask``: ``[B, N]`` 1 = masked; ``ids_restore``:
    ``[B, N]``; ``latent``: encoder output incl. CLS."""

    loss: torch.Tensor | None = None
    pred: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    ids_restore: torch.Tensor | None = None
    latent: torch.Tensor | None = None


class APMAEModel(PreTrainedModel):
    """The AP-MAE encoder + decoder over the lower-triangular patches of a pattern image."""

    config_class = APMAEConfig
    base_model_prefix = "apmae"
    main_input_name = "pixel_values"

    def __init__(self, config: APMAEConfig) -> None:
        super().__init__(config)
        c = config
        D, Dd, P, N = c.hidden_size, c.decoder_hidden_size, c.patch_size**2, c.num_patches
        grid = c.grid if c.relative_position_bias else None
        self.register_buffer("tril_patches", tril_patch_cells(c.grid), persistent=False)

        self.patch_embed = nn.Linear(P, D)
        # the reference normalises each patch's pixels before and its embedding after the linear
        self.patch_norm_in = nn.LayerNorm(P, eps=c.layer_norm_eps) if c.patch_embed_norm else None
        self.patch_norm_out = nn.LayerNorm(D, eps=c.layer_norm_eps) if c.patch_embed_norm else None
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, N + 1, D))
        self.blocks = nn.ModuleList(
            Block(D, c.num_attention_heads, c.intermediate_size, c.layer_norm_eps, grid, c.head_dim)
            for _ in range(c.num_hidden_layers)
        )
        self.norm = nn.LayerNorm(D, eps=c.layer_norm_eps)

        self.decoder_embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, N + 1, Dd))
        self.decoder_blocks = nn.ModuleList(
            Block(Dd, c.decoder_num_attention_heads, c.decoder_intermediate_size, c.layer_norm_eps, grid,
                  c.decoder_head_dim)
            for _ in range(c.decoder_num_hidden_layers)
        )
        self.decoder_norm = nn.LayerNorm(Dd, eps=c.layer_norm_eps)
        self.decoder_pred = nn.Linear(Dd, P)
        self.decoder_profile = nn.Linear(2 * c.patch_size, Dd) if c.decoder_profiles else None
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, Block) and module.rel_bias is not None:
            init.zeros_(module.rel_bias)
        elif isinstance(module, APMAEModel):
            for p in (module.cls_token, module.mask_token):
                init.normal_(p, mean=0.0, std=std)
            # non-persistent, so never loaded: from_pretrained leaves it uninitialised otherwise
            module.tril_patches = tril_patch_cells(self.config.grid).to(module.pos_embed.device)
            for p in (module.pos_embed, module.decoder_pos_embed):
                init.copy_(p, sincos_2d(module.tril_patches, p.shape[-1]).unsqueeze(0))

    # The paper's steps, in order: patchify -> mask -> encode -> decode -> loss. Every step
    # after patchify works in standardised units (see :meth:`standardised_patches`); only
    # :meth:`forward` turns predictions back into image units.

    # --- 1. patchify ---------------------------------------------------------------------------

    def images_from_patterns(self, packed: torch.Tensor) -> torch.Tensor:
        """Stored ``[N, T*(T+1)/2]`` log-prob patterns -> this model's input images (its
        scaling, floor and size), so every caller prepares patterns the way training did."""
        c = self.config
        return to_images(packed, c.scaling, c.log_floor, c.image_size)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 1, H, W]`` or ``[B, H, W]`` -> ``[B, num_patches, p*p]``, lower-triangular patches only."""
        c = self.config
        if images.ndim == 4 and images.shape[1] == 1:
            images = images[:, 0]
        if images.ndim != 3 or images.shape[1:] != (c.image_size, c.image_size):
            raise ValueError(f"expected [B, 1, {c.image_size}, {c.image_size}] images, got {tuple(images.shape)}")
        g, p = c.grid, c.patch_size
        x = images.to(self.patch_embed.weight.dtype).reshape(-1, g, p, g, p)  # [B, row, y, col, x]
        # grid row r holds patches (r, 0..r): one strided slice each, copied once by the cat,
        # rather than a gather of every (row, col) pair
        return torch.cat([x[:, r, :, : r + 1].transpose(1, 2) for r in range(g)], dim=1).flatten(2)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """``[B, num_patches, p*p]`` -> ``[B, 1, H, W]`` with the upper patches 0 (for display)."""
        g, p = self.config.grid, self.config.patch_size
        full = patches.new_zeros(patches.shape[0], g, g, p * p)
        rows, cols = self.tril_patches.unbind(1)
        full[:, rows, cols] = patches
        return full.view(-1, g, g, p, p).transpose(2, 3).reshape(-1, 1, g * p, g * p)

    def standardised_patches(self, images: torch.Tensor) -> torch.Tensor:
        """The model's input: :meth:`patchify` less ``pixel_mean``, over ``pixel_std`` (the
        training patterns' statistics).

        What differs between two patterns of one head is small next to the pixel range: trained
        on raw units, Adam's step-size noise on the output weights swamped it and the model never
        got past the average pattern; standardised (as MAE standardises its pixels) the same
        model reconstructs the visible details."""
        c = self.config
        return self.patchify(images).sub_(c.pixel_mean).div_(c.pixel_std)  # patchify's own copy

    # --- 2. mask -------------------------------------------------------------------------------

    def random_masking(
        self, x: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keep the ``N_keep`` patches with the smallest ``noise`` (MAE convention).

        Returns ``x_visible [B, N_keep, D]``, ``mask [B, N]`` (1 = masked) and ``ids_restore [B, N]``
        (each patch's rank in the shuffled order, to put things back).
        """
        B, N, _ = x.shape
        n_keep = min(max(round(N * (1 - self.config.mask_ratio)), 1), N - 1)
        if noise is None:
            noise = torch.rand(B, N, device=x.device)
        ids_shuffle = noise.argsort(dim=1)
        ids_restore = ids_shuffle.argsort(dim=1)
        x_visible = take_rows(x, ids_shuffle[:, :n_keep])
        mask = (ids_restore >= n_keep).to(x.dtype)
        return x_visible, mask, ids_restore

    # --- 3. encode -----------------------------------------------------------------------------

    def relative_index(self, patches: torch.Tensor) -> torch.Tensor:
        """``[B, 1+n, 1+n]`` bias-table entries of a CLS + ``patches`` sequence (``patches [B, n]``:
        indices into ``tril_patches``): the pair's (Δrow, Δcolumn), or the CLS entry."""
        g = self.config.grid
        cells = self.tril_patches[patches]  # [B, n, 2]
        d = cells[:, :, None] - cells[:, None] + (g - 1)
        B, n = patches.shape
        out = patches.new_full((B, n + 1, n + 1), (2 * g - 1) ** 2)
        out[:, 1:, 1:] = d[..., 0] * (2 * g - 1) + d[..., 1]
        return out

    def _all_patches(self, batch: int) -> torch.Tensor:
        return torch.arange(self.config.num_patches, device=self.tril_patches.device).expand(batch, -1)

    def _encoder(self, patches: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``[B, 1+n, hidden]``: ``patches [B, n, p*p]`` embedded, each plus the position
        embedding of its own index (``index [B, n]``), after a CLS token, through the encoder
        blocks and the final norm."""
        if self.patch_norm_in is not None:
            x = self.patch_norm_out(self.patch_embed(self.patch_norm_in(patches)))
        else:
            x = self.patch_embed(patches)
        x = x + self.pos_embed[0, 1:][index]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        rel = self.relative_index(index) if self.config.relative_position_bias else None
        for block in self.blocks:
            x = block(x, rel)
        return self.norm(x)

    def forward_encoder(self, patches: torch.Tensor, noise: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask and encode standardised ``patches``: ``latent [B, 1+N_keep, hidden]`` (CLS
        first), ``mask``, ``ids_restore``."""
        visible, mask, ids_restore = self.random_masking(patches, noise)
        index = ids_restore.argsort(dim=1)[:, :visible.shape[1]]  # ids_shuffle's kept part
        return self._encoder(visible, index), mask, ids_restore

    def encode(self, images: torch.Tensor, pooling: str = "cls") -> torch.Tensor:
        """``[B, hidden]`` embedding of unmasked patterns: all ``num_patches`` lower-triangular patches.

        ``pooling``: ``"cls"`` (the paper's) or ``"mean"`` of the patch tokens.
        """
        if pooling not in ("cls", "mean"):
            raise ValueError(f"unknown pooling {pooling!r}; valid: cls, mean")
        h = self._encoder(self.standardised_patches(images), self._all_patches(images.shape[0]))
        return h[:, 0] if pooling == "cls" else h[:, 1:].mean(dim=1)

    # --- 4. decode -----------------------------------------------------------------------------

    def _decoder_tokens(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """``[B, 1+N, decoder_hidden]``: CLS, then every patch in its own position (before position
        embeddings): a visible patch's embedded encoding, or the mask token for a masked one."""
        x = self.decoder_embed(latent)
        B, n_visible = x.shape[0], x.shape[1] - 1
        masked = self.mask_token.expand(B, ids_restore.shape[1] - n_visible, -1)
        shuffled = torch.cat([x[:, 1:], masked], dim=1)  # visible first, in ids_shuffle order
        unshuffled = take_rows(shuffled, ids_restore)
        return torch.cat([x[:, :1], unshuffled], dim=1)

    def visible_profiles(self, patches: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """``[B, N, 2p]``: for each patch, the mean column profile of the *visible* ``patches``
        (standardised) in its column band and the mean row profile of those in its row band
        (0 where none is visible). ``visible [B, N]`` is 1 for a visible patch.

        A pattern is close to additive in log space along both axes: a key a head attends to
        lifts its whole column (``f(key)``), and each query row carries its softmax normaliser
        (``-log Z(query)``). A masked patch's column band and row band are usually visible
        elsewhere, so these profiles hand the decoder exactly the evidence those terms need,
        computed from visible pixels only."""
        c = self.config
        B, p = patches.shape[0], c.patch_size
        patches = patches.view(B, c.num_patches, p, p)
        rows, cols = self.tril_patches.unbind(1)
        profiles = []
        for band, profile in ((cols, patches.mean(dim=2)), (rows, patches.mean(dim=3))):
            same = (band[:, None] == band[None, :]).to(visible.dtype)  # [N, N] same band
            weights = same[None] * visible[:, None, :]  # [B, N, N]: visible members of my band
            total = (weights @ profile) / weights.sum(-1, keepdim=True).clamp(min=1.0)
            profiles.append(total)
        return torch.cat(profiles, dim=-1)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor,
                        patches: torch.Tensor | None = None,
                        targets: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruct every patch: ``[B, N, p*p]``, in standardised units; with ``targets [B, n]``
        (patch indices) only those: ``[B, n, p*p]``, their rows alone through the last block and
        the head (what training needs: the masked ones). ``patches`` (the standardised input the
        encoder saw) are needed with ``decoder_profiles``: see :meth:`visible_profiles`."""
        x = self._decoder_tokens(latent, ids_restore) + self.decoder_pos_embed
        if self.decoder_profile is not None:
            if patches is None:
                raise ValueError("decoder_profiles: forward_decoder needs the input patches")
            visible = (ids_restore < latent.shape[1] - 1).to(x.dtype)
            profiles = self.visible_profiles(patches, visible).to(x.dtype)
            x = torch.cat([x[:, :1], x[:, 1:] + self.decoder_profile(profiles)], dim=1)
        rel = (self.relative_index(self._all_patches(x.shape[0])) if self.config.relative_position_bias
               else None)
        *blocks, last = self.decoder_blocks
        for block in blocks:
            x = block(x, rel)
        rows = (targets if targets is not None else self._all_patches(x.shape[0])) + 1  # after CLS
        return self.decoder_pred(self.decoder_norm(last(x, rel, rows)))

    # --- 5. loss -------------------------------------------------------------------------------

    @staticmethod
    def forward_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over masked patches (``mask [B, N]``, 1 = masked) of each patch's pixel MSE,
        ``pred`` and ``target`` in the same units (the model's: standardised)."""
        per_patch = (pred - target).pow(2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()

    def forward(
        self, pixel_values: torch.Tensor, noise: torch.Tensor | None = None, return_dict: bool = True,
        predict: str = "all",
    ) -> APMAEOutput | tuple:
        """``predict``: ``"all"`` patches (for evaluation and display), only the ``"masked"`` ones
        (the same loss, the decoder's last block and head on half the tokens), or ``"loss"``
        alone (training: as ``"masked"``, in one fused MSE kernel each way and without turning
        the predictions back into image units; ``pred`` is None)."""
        if predict not in ("all", "masked", "loss"):
            raise ValueError(f"predict={predict!r}: expected 'all', 'masked' or 'loss'")
        c = self.config
        patches = self.standardised_patches(pixel_values)  # once: encoder input, profiles and target
        latent, mask, ids_restore = self.forward_encoder(patches, noise)
        if predict == "all":
            pred = self.forward_decoder(latent, ids_restore, patches)
            loss = self.forward_loss(pred, patches, mask)
        else:
            masked = ids_restore.argsort(dim=1)[:, latent.shape[1] - 1:]
            pred = self.forward_decoder(latent, ids_restore, patches, targets=masked)
            loss = F.mse_loss(pred.float(), take_rows(patches, masked))
        pred = None if predict == "loss" else pred * c.pixel_std + c.pixel_mean  # image units
        out = APMAEOutput(loss=loss, pred=pred, mask=mask, ids_restore=ids_restore, latent=latent)
        return out if return_dict else out.to_tuple()


AutoConfig.register("apmae", APMAEConfig, exist_ok=True)
AutoModel.register(APMAEConfig, APMAEModel, exist_ok=True)
