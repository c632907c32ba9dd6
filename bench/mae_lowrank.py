"""How much of a masked attention pattern its visible half determines: AP-MAE against a
closed-form low-rank completion, side by side on the same held-out patterns and masks.

    python -m bench.mae_lowrank [--run demo8] [--n 256] [--rank 33] [--ridge 0.3] [--json]

Why: before the causal mask, a head's attention logits are ``q_i . k_j / sqrt(d)`` (RoPE only
rotates ``q`` and ``k``), so ``log p = QK^T/sqrt(d) - log Z`` has rank at most ``d + 1``, and the
``log_affine`` image, an affine map of ``log p``, one more. Masked-patch reconstruction is then
close to low-rank matrix completion, and the yardstick is not only the head's mean image.

1. **Rank.** The fraction of the variance (centred) of each pattern's fully causal block
   (queries ``T/2..T``, keys ``0..T/2``) left beyond its top ``k`` singular values.
2. **Completion.** On ``--n`` held-out (test-split) patterns, the same random masks for all:
   the masked-patch MSE of the head-mean baseline, of the run's AP-MAE, and of a rank-``r``
   alternating-least-squares fit to the visible lower-triangle pixels of the residual from
   the head mean (ridge ``--ridge``: a pixel no visible entry constrains stays at the head
   mean), each over the head mean's; and the same by how many visible patches share the
   masked patch's row band or column band (its evidence).

Prints tables, then (``--json``) one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from apmae.configs import MAEEvalConfig
from apmae.mae.data import load_packed
from apmae.mae.evaluate import eval_items, head_mean_patches
from apmae.mae.model import APMAEModel
from apmae.run import Run

RANKS = (8, 16, 33, 64)
BATCH = 32
MAX_EVIDENCE = 5  # evidence counts above this are pooled


def energy_beyond(images: torch.Tensor, ranks: tuple[int, ...] = RANKS) -> np.ndarray:
    """``[n, len(ranks)]``: per image, the centred variance of its bottom-left (fully causal)
    quarter left beyond each rank."""
    half = images.shape[-1] // 2
    block = images[:, 0, half:, :half].double()
    s = torch.linalg.svdvals(block - block.mean((1, 2), keepdim=True)) ** 2
    left = 1 - s.cumsum(1) / s.sum(1, keepdim=True)
    return left[:, [r - 1 for r in ranks]].numpy()


def low_rank_completion(values: torch.Tensor, observed: torch.Tensor, rank: int, ridge: float,
                        sweeps: int = 20, seed: int = 0) -> torch.Tensor:
    """``[B, T, T]`` rank-``rank`` fit ``U V^T`` of ``values`` where ``observed`` (0/1, same
    shape) is 1: alternating ridge least squares, every row's and column's factors solved
    exactly in turn. Rows or columns with few observations shrink towards 0."""
    B, T, _ = values.shape
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(B, T, rank, generator=gen) * 0.1
    eye = torch.eye(rank) * ridge
    w, wm = observed.float(), (observed * values).float()

    def solve(weights: torch.Tensor, targets: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        gram = torch.bmm(weights, (f[..., :, None] * f[..., None, :]).reshape(B, T, -1))
        return torch.linalg.solve(gram.view(B, T, rank, rank) + eye, torch.bmm(targets, f))

    for _ in range(sweeps):
        u = solve(w, wm, v)
        v = solve(w.transpose(1, 2), wm.transpose(1, 2), u)
    return u @ v.transpose(1, 2)


def evidence(model: APMAEModel, mask: torch.Tensor) -> torch.Tensor:
    """``[B, N]``: visible patches in each patch's row band plus those in its column band."""
    rows, cols = model.tril_patches.unbind(1)
    bands = (rows[:, None] == rows[None]).float() + (cols[:, None] == cols[None]).float()
    return (1 - mask) @ bands.T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="demo8", help="a run with a trained AP-MAE and test-split patterns")
    ap.add_argument("--n", type=int, default=256, help="held-out patterns")
    ap.add_argument("--rank", type=int, default=33, help="completion rank (the default model: d_head 32, + 1)")
    ap.add_argument("--ridge", type=float, default=0.3)
    ap.add_argument("--sweeps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    run = Run(args.run)
    model = APMAEModel.from_pretrained(run.mae_model_path).eval()
    cfg = MAEEvalConfig()
    ids, items = eval_items(run, cfg)
    means = head_mean_patches(model, run, cfg)
    items = items[np.sort(np.random.default_rng(1).choice(len(items), min(args.n, len(items)), replace=False))]
    store = run.pattern_store()
    size = model.config.image_size
    lower = torch.ones(size, size).tril().bool()
    gen = torch.Generator().manual_seed(0)
    names = ("head_mean", "apmae", "low_rank")
    per_patch = {k: [] for k in names}  # masked patches' MSE
    counts, energy = [], []
    for start in range(0, len(items), BATCH):
        batch = items[start:start + BATCH]
        images = model.images_from_patterns(load_packed(store, ids, batch))
        energy.append(energy_beyond(images))
        noise = torch.rand(len(batch), model.config.num_patches, generator=gen)
        with torch.no_grad():
            out = model(pixel_values=images, noise=noise)
        target = model.patchify(images)
        head_mean = means[batch[:, 1], batch[:, 2]]
        prior = model.unpatchify(head_mean)[:, 0]
        hidden = model.unpatchify(out.mask[..., None].expand_as(target))[:, 0]
        fit = prior + low_rank_completion(images[:, 0] - prior, (1 - hidden) * lower, args.rank,
                                          args.ridge, args.sweeps)
        fit = torch.where(lower, fit.clamp(0, 1), torch.zeros(()))
        masked = out.mask.bool()
        for name, pred in zip(names, (head_mean, out.pred, model.patchify(fit[:, None]))):
            per_patch[name].append(((pred - target) ** 2).mean(-1)[masked])
        counts.append(evidence(model, out.mask)[masked].clamp(max=MAX_EVIDENCE).long())
        print(f"[{time.perf_counter() - t0:5.0f} s] {start + len(batch)}/{len(items)} patterns", flush=True)

    err = {k: torch.cat(v).double() for k, v in per_patch.items()}
    count = torch.cat(counts)
    base = err["head_mean"].mean().item()
    energy = np.concatenate(energy)
    summary: dict = {"run": args.run, "patterns": len(items), "masked_patches": len(count),
                     "rank": args.rank, "ridge": args.ridge,
                     "energy_beyond_rank": {str(r): float(np.median(energy[:, i])) for i, r in enumerate(RANKS)},
                     "head_mean_mse": base}
    print(f"\nvariance of the causal quarter left beyond rank k (median over {len(energy)} patterns):")
    for r, v in summary["energy_beyond_rank"].items():
        print(f"  k = {r:>2s}: {v:.5f}")
    print(f"\nmasked-patch MSE over the head mean's ({base:.5f}), by visible patches in the row + column band:")
    print(f"{'evidence':>9s} {'patches':>8s} " + " ".join(f"{n:>10s}" for n in names))
    by_evidence = {}
    for e in range(MAX_EVIDENCE + 1):
        sel = count == e
        if sel.any():
            by_evidence[str(e)] = {"patches": int(sel.sum()),
                                   **{n: err[n][sel].mean().item() / base for n in names}}
            label = f"{e}+" if e == MAX_EVIDENCE else str(e)
            print(f"{label:>9s} {int(sel.sum()):8d} " + " ".join(f"{by_evidence[str(e)][n]:10.3f}" for n in names))
    for n in names:
        summary[f"{n}_vs_head_mean"] = round(err[n].mean().item() / base, 3)
    print(f"{'all':>9s} {len(count):8d} " + " ".join(f"{summary[f'{n}_vs_head_mean']:10.3f}" for n in names))
    summary["by_evidence"] = by_evidence
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"({summary['seconds']:.0f} s)")
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
