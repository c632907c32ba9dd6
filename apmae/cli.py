"""The ``apmae`` command: thin over the library; every flag maps onto a config field."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

from .paths import apmae_home


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per dataclass field, typed and defaulted from the field."""
    for f in dataclasses.fields(cls):
        if f.name in skip or f.default is dataclasses.MISSING:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(f.type), type(f.default))
            parser.add_argument(flag, type=kind, default=f.default)


def _dataclass_from_args(cls, args: argparse.Namespace, **extra):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names and k not in extra}, **extra)


def cmd_lm_train(args: argparse.Namespace) -> None:
    from .corpus import default_source
    from .lm.train import LMTrainConfig, train_lm

    cfg = _dataclass_from_args(LMTrainConfig, args, source=args.source or default_source())
    out = Path(args.out) if args.out else apmae_home() / "lm" / "default"
    final = train_lm(cfg, out, resume=args.resume)
    print(final)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apmae", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    lm = sub.add_parser("lm", help="the target language model").add_subparsers(dest="lm_command",
                                                                                  required=True)
    from .lm.train import LMTrainConfig

    p = lm.add_parser("train", help="train the embedded default model (hours on a CPU)")
    p.add_argument("--source", help="corpus (default: the JDK's src.zip)")
    p.add_argument("--out", help="output folder (default: $APMAE_HOME/lm/default)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    _add_dataclass_flags(p, LMTrainConfig, skip=("source",))
    p.set_defaults(func=cmd_lm_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"apmae: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
