"""What every command group shares: the user's errors, flags made from a settings dataclass
(:mod:`apmae.configs`), the ``--run`` and ``--dtype`` flags and the existing run they name.

Light to import, like every module of the command's parser: the heavy libraries (torch,
transformers, scikit-learn) load inside the commands, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from typing import TYPE_CHECKING, Any

from ..configs import DTYPES

if TYPE_CHECKING:
    from ..run import Run


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def field_comments(cls: type) -> dict[str, str]:
    """Each field of dataclass ``cls`` with the comment that documents it in its source: the
    comment on its line, else the full-line comments just above it. The comments stay the one
    place a setting is explained; ``--help`` reads them."""
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        code, _, comment = line.strip().partition("#")
        name = code.split(":", 1)[0].strip() if ":" in code else None
        if name in names:
            out[name] = comment.strip() or " ".join(above)
            above = []
        elif not code.strip() and comment.strip():
            above.append(comment.strip())
        else:
            above = []
    return out


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type,
                        skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per dataclass field, typed and defaulted from the field, its help the
    field's comment (:func:`field_comments`)."""
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.default is dataclasses.MISSING:
            continue
        flag = "--" + f.name.replace("_", "-")
        text = comments.get(f.name, "").replace("%", "%%")
        if f.type in (bool, "bool", "bool | None"):  # None: not set, someone else decides
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=text or None)
        elif isinstance(f.default, tuple):  # a comma-separated list of ints, e.g. 1,3
            parser.add_argument(flag, type=lambda v: tuple(int(x) for x in v.split(",")),
                                default=f.default,
                                help=f"{text}{'; ' if text else ''}comma-separated (default {f.default})")
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(f.type), type(f.default))
            parser.add_argument(flag, type=kind, default=f.default,
                                help=f"{text}{' ' if text else ''}(default: %(default)s)")


def dataclass_from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """``cls`` filled from the parsed flags that name its fields, ``extra`` overriding them."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names and k not in extra}, **extra)


def add_run_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default="default", help="run name under $APMAE_HOME/runs")


def add_dtype_flag(p: argparse.ArgumentParser, what: str = "the model's weights",
                   default: str = "auto") -> None:
    p.add_argument("--dtype", choices=["auto", *DTYPES], help=f"{what} (default: {default}); auto "
                   "is float32 below a billion parameters (the embedded model), bfloat16 above")


def existing_run(name: str) -> Run:
    """The run called ``name``; a missing one is the user's error, not a new empty run."""
    from ..run import Run

    run = Run(name)
    if not run.path.exists():
        raise UserError(f"no run named {name!r} under {run.path.parent}")
    return run
