"""``apmae mae``: AP-MAE, the masked autoencoder over attention patterns (train, eval, ship,
import the paper's checkpoints)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..configs import MAEEvalConfig, MAETrainConfig
from ..paths import apmae_home
from .common import add_dataclass_flags, add_run_flag, dataclass_from_args, existing_run


def cmd_mae_train(args: argparse.Namespace) -> None:
    from ..mae.train import train_mae

    cfg = dataclass_from_args(MAETrainConfig, args)
    print(train_mae(existing_run(args.run), cfg, resume=args.resume))


def cmd_mae_eval(args: argparse.Namespace) -> None:
    from ..mae.evaluate import evaluate

    run = existing_run(args.run)
    other = existing_run(args.other_run) if args.other_run else None
    result = evaluate(run, dataclass_from_args(MAEEvalConfig, args), other=other,
                      model_dir=Path(args.model) if args.model else None)
    print(json.dumps(result, indent=2))


def cmd_mae_ship(args: argparse.Namespace) -> None:
    from ..paths import DEFAULT_MAE_DIR
    from ..ship import ship_mae

    card = ship_mae(existing_run(args.run), Path(args.dest) if args.dest else DEFAULT_MAE_DIR)
    print(json.dumps(card["eval"]["reconstruction"]["ratio_to_best_baseline"]))


def cmd_mae_import(args: argparse.Namespace) -> None:
    from ..mae.convert import import_reference

    source = Path(args.path)
    folder = (source if source.is_dir() else source.parent).resolve()
    out = Path(args.out) if args.out else apmae_home() / "mae" / folder.name
    print(import_reference(source, out))


def add_commands(sub: argparse._SubParsersAction) -> None:
    mae = sub.add_parser("mae", help="AP-MAE, the masked autoencoder over attention patterns") \
        .add_subparsers(dest="mae_command", required=True)

    p = mae.add_parser("train", help="train AP-MAE on the run's train-split patterns (torchrun: DDP)")
    add_run_flag(p)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    add_dataclass_flags(p, MAETrainConfig)
    p.set_defaults(func=cmd_mae_train)

    p = mae.add_parser("eval", help="masked MSE on held-out patterns against baselines")
    add_run_flag(p)
    p.add_argument("--other-run", help="a run of another model: AP-MAE's MSE on patterns it never saw")
    p.add_argument("--model", help="AP-MAE folder (default: the run's mae/model)")
    add_dataclass_flags(p, MAEEvalConfig)
    p.set_defaults(func=cmd_mae_eval)

    p = mae.add_parser("ship", help="make the run's AP-MAE (of the default model) the shipped one")
    add_run_flag(p)
    p.add_argument("--dest", help="destination (default: the package's default_mae/)")
    p.set_defaults(func=cmd_mae_ship)

    p = mae.add_parser("import", help="convert a checkpoint of the paper's reference AP-MAE "
                       "(e.g. AP-MAE-SC2-3B) into a model for `apmae encode --model`")
    p.add_argument("path", help="the checkpoint: its folder (model.safetensors, config.json) or .safetensors file")
    p.add_argument("--out", help="new folder for the converted model "
                   "(default: $APMAE_HOME/mae/<checkpoint's folder name>)")
    p.set_defaults(func=cmd_mae_import)
