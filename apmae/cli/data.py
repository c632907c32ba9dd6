"""A run's data: ``apmae mine`` (completion scenarios from Java source) and ``apmae extract``
(the model's completions and every head's attention)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..configs import KEEP_HELP, PRECISIONS, ExtractConfig
from ..scenarios import TASKS
from .common import UserError, add_dtype_flag, add_run_flag


def _load_tokenizer(model: str | None):
    from transformers import AutoTokenizer

    from ..lm.load import resolve_model_name

    path = resolve_model_name(model)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot load a tokenizer ({str(e).splitlines()[0]})") from e


def _check_context(model: str | None, window: int) -> None:
    """Refuse a window the model cannot attend over, before mining for it."""
    from transformers import AutoConfig

    from ..lm.load import resolve_model_name

    try:
        config = AutoConfig.from_pretrained(resolve_model_name(model))
    except (OSError, ValueError):
        return  # a bare tokenizer folder: the model's context is checked at extraction
    context = getattr(config.get_text_config(), "max_position_embeddings", None)
    if context is not None and window >= context:
        raise UserError(f"--window {window} does not fit the model's context of {context} tokens")


def cmd_mine(args: argparse.Namespace) -> None:
    from ..scenarios import MiningStats, check_tasks, mine, write_scenarios

    tasks = check_tasks(args.tasks.split(",")) if args.tasks else None
    if args.per_task < 1 or args.window < 8:
        raise UserError("--per-task must be >= 1 and --window >= 8")
    tokenizer = _load_tokenizer(args.model)
    _check_context(args.model, args.window)
    stats = MiningStats()
    kwargs = {"tasks": tasks} if tasks else {}
    n = write_scenarios(mine(args.source, tokenizer, per_task=args.per_task, seed=args.seed,
                             window=args.window, split=args.split, stats=stats, **kwargs),
                        Path(args.out))
    print(f"{n} scenarios -> {args.out}; by task {stats.by_task}; "
          f"files seen {stats.files_seen}, skipped {stats.files_skipped}", file=sys.stderr)


def cmd_extract(args: argparse.Namespace) -> None:
    from ..extract import extract
    from ..lm.load import load_target
    from ..run import Run

    if not Path(args.scenarios).is_file():
        raise UserError(f"{args.scenarios}: no such scenarios file")
    cfg = ExtractConfig(batch_size=args.batch_size, keep=args.keep, precision=args.precision)
    cfg.keep_limit()  # validates --keep before the model loads
    if args.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    target = load_target(args.model, device=args.device, dtype=args.dtype, device_map=args.device_map)
    if target.random_weights:
        print(f"apmae: note: {target.name} has random weights (apmae lm init): its figures size "
              "and test the pipeline, they say nothing about attention", file=sys.stderr)
    n = extract(Run(args.run), Path(args.scenarios), target, cfg)
    print(f"extracted {n} scenarios into run {args.run}", file=sys.stderr)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mine", help="mine completion scenarios from Java source")
    p.add_argument("source", help="directory, .zip (a JDK's lib/src.zip), .jsonl/.parquet with a "
                                  "'content' column, or a Hugging Face dataset id")
    p.add_argument("--out", required=True, help="scenarios file to write (JSONL)")
    p.add_argument("--tasks", help=f"comma-separated tasks (default: all of {','.join(TASKS)})")
    p.add_argument("--per-task", type=int, default=100, help="scenarios per task (default 100)")
    p.add_argument("--seed", type=int, default=0, help="which files and spans are drawn (default: 0)")
    p.add_argument("--window", type=int, default=256, help="prompt tokens (default 256)")
    p.add_argument("--split", choices=["train", "test"], help="only files of this split")
    p.add_argument("--model", help="model whose tokenizer builds the prompts (default: embedded)")
    p.set_defaults(func=cmd_mine)

    p = sub.add_parser("extract", help="complete scenarios and capture every head's attention")
    p.add_argument("--scenarios", required=True, help="scenarios file from `apmae mine`")
    p.add_argument("--model", help="HF causal LM name or path (default: the embedded model)")
    add_run_flag(p)
    p.add_argument("--batch-size", type=int, default=8, help="scenarios per forward pass (default: 8)")
    p.add_argument("--keep", default="all", help=KEEP_HELP)
    p.add_argument("--precision", choices=sorted(PRECISIONS), default="uint8",
                   help="kept patterns on disk: uint8 (log p in [-20, 0], 255 steps) or float16")
    p.add_argument("--device", default="cpu", help="cpu | cuda (under torchrun: the rank's own GPU)")
    p.add_argument("--device-map", help="auto: split a model too big for one GPU over all visible "
                                        "ones (needs `pip install accelerate`; one process)")
    add_dtype_flag(p)
    p.set_defaults(func=cmd_extract)
