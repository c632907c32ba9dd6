"""Capture on a GPU against eager ``output_attentions`` (part of ``bench/gpu_check.sh``).

The CPU tests check capture on tiny random models; here the embedded default model runs on the
device with a real 256-token prompt: every head's recorded pattern must match eager attention's
probabilities, and the logits the plain forward's. Prints one ``PASS``/``FAIL`` line.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from apmae.capture import record_attention
from apmae.store.format import unpack_lower_triangle
from apmae.lm.load import load_target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    t0 = time.perf_counter()
    target = load_target(None, device=args.device)
    model = target.model
    ids = torch.randint(0, model.config.vocab_size, (args.batch, 256), generator=torch.Generator().manual_seed(0))
    ids = ids.to(model.device)
    with torch.no_grad():
        with record_attention(model) as rec:
            logits = model(ids).logits
            got = rec.take()
        plain = model(ids).logits
        impl = model.config._attn_implementation
        model.set_attn_implementation("eager")
        out = model(ids, output_attentions=True)
        model.set_attn_implementation(impl)
    ref = torch.stack(out.attentions, 1).float()  # [b, layers, heads, T, T]
    probs = unpack_lower_triangle(got.float(), ids.shape[1]).exp()
    dp = float((probs - ref).abs().max())
    dlogits = float((logits - out.logits).abs().max())
    dplain = float((logits - plain).abs().max())
    ok = dp < 2e-3 and dlogits < 1e-2 and dplain < 1e-2
    print(f"{'PASS' if ok else 'FAIL'} capture on {model.device}: {got.shape[1]}x{got.shape[2]} heads, "
          f"max |dp| {dp:.2e}, max |dlogits| vs eager {dlogits:.2e}, "
          f"vs plain {dplain:.2e} ({time.perf_counter() - t0:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
