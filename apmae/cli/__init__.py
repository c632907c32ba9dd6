"""The ``apmae`` command: thin over the library; every flag maps onto a config field."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from . import atlas, data, db, lm, mae, serve
from .common import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apmae", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (lm, mae, atlas, db, data, serve):  # the order --help lists them in
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (UserError, ValueError, OSError) as e:  # CorpusError, ModelLoadError are ValueErrors
        if os.environ.get("APMAE_DEBUG"):
            raise
        print(f"apmae: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("apmae: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
