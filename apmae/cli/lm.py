"""``apmae lm``: the target language model (train the embedded one, ship it, init a shape)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..configs import LMTrainConfig
from ..lm.shapes import SHAPES
from ..paths import apmae_home
from .common import UserError, add_dataclass_flags, add_dtype_flag, dataclass_from_args


def cmd_lm_train(args: argparse.Namespace) -> None:
    from ..corpus import default_source
    from ..lm.train import train_lm

    cfg = dataclass_from_args(LMTrainConfig, args, source=args.source or default_source())
    out = Path(args.out) if args.out else apmae_home() / "lm" / "default"
    final = train_lm(cfg, out, resume=args.resume)
    print(final)


def cmd_lm_ship(args: argparse.Namespace) -> None:
    from ..paths import DEFAULT_MODEL_DIR
    from ..ship import ship_lm

    train_dir = Path(args.from_dir) if args.from_dir else apmae_home() / "lm" / "default"
    final = ship_lm(train_dir, Path(args.dest) if args.dest else DEFAULT_MODEL_DIR,
                    per_task=args.per_task, snapshots=not args.no_curve, step=args.step)
    print(json.dumps(final["overall_non_noise"]))


def cmd_lm_init(args: argparse.Namespace) -> None:
    from ..lm.shapes import Shape, init_model

    sizes = {k: getattr(args, k) for k in ("layers", "heads", "kv_heads", "hidden", "intermediate")}
    given = [k for k, v in sizes.items() if v is not None]
    if args.shape and given:
        raise UserError(f"--shape {args.shape} fixes every size; drop --{given[0].replace('_', '-')}")
    if not args.shape and len(given) < len(sizes):
        raise UserError("give --shape, or all of --layers --heads --kv-heads --hidden --intermediate")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty")
    facts = init_model(Shape.named(args.shape) if args.shape else Shape(**sizes), out,
                       seed=args.seed, dtype=args.dtype)
    print(f"{facts['shape']} ({facts['layers']} layers x {facts['heads']} heads, "
          f"{facts['parameters']:,} parameters, {facts['dtype']}) with RANDOM weights -> {out}; "
          f"for sizing and testing only: pass --model {out}", file=sys.stderr)


def add_commands(sub: argparse._SubParsersAction) -> None:
    lm = sub.add_parser("lm", help="the target language model").add_subparsers(dest="lm_command",
                                                                                  required=True)
    p = lm.add_parser("train", help="train the embedded default model (hours on a CPU)")
    p.add_argument("--source", help="corpus (default: the JDK's src.zip)")
    p.add_argument("--out", help="output folder (default: $APMAE_HOME/lm/default)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    add_dataclass_flags(p, LMTrainConfig, skip=("source",))
    p.set_defaults(func=cmd_lm_train)

    p = lm.add_parser("ship", help="copy the trained model into the package with its model card")
    p.add_argument("--from", dest="from_dir", help="training folder (default: $APMAE_HOME/lm/default)")
    p.add_argument("--dest", help="destination (default: the package's default_model/)")
    p.add_argument("--per-task", type=int, default=100, help="held-out scenarios per task")
    p.add_argument("--no-curve", action="store_true", help="skip evaluating the snapshots")
    p.add_argument("--step", type=int, help="ship the snapshot of this step, not the final weights")
    p.set_defaults(func=cmd_lm_ship)

    p = lm.add_parser("init", help="a Starcoder2 of a named shape with RANDOM weights, for sizing "
                      "and testing (never a model to study)",
                      description="Save a Starcoder2 with seeded random weights and the default "
                      "tokenizer as a local Hugging Face model (safetensors) that every command "
                      "takes with --model DIR. What a run costs depends on the shape, not the "
                      "weights: use it to size and test runs of real models you cannot download "
                      "here. Its patterns mean nothing; its config and card say it is random.")
    p.add_argument("--out", required=True, help="folder to write (new or empty)")
    p.add_argument("--shape", choices=sorted(SHAPES), help="the released checkpoint's sizes")
    for flag in ("layers", "heads", "kv-heads", "hidden", "intermediate"):
        p.add_argument(f"--{flag}", type=int, help="explicit size (all five, without --shape)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    add_dtype_flag(p, "the weights saved")
    p.set_defaults(func=cmd_lm_init)
