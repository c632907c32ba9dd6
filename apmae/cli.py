"""The ``apmae`` command: thin over the library; every flag maps onto a config field."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from .paths import apmae_home


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


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
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


def cmd_lm_ship(args: argparse.Namespace) -> None:
    from .lm.card import ship
    from .paths import DEFAULT_MODEL_DIR

    train_dir = Path(args.from_dir) if args.from_dir else apmae_home() / "lm" / "default"
    final = ship(train_dir, Path(args.dest) if args.dest else DEFAULT_MODEL_DIR,
                 per_task=args.per_task, snapshots=not args.no_curve, step=args.step)
    print(json.dumps(final["overall_non_noise"]))


def cmd_lm_init(args: argparse.Namespace) -> None:
    from .lm.shapes import Shape, init_model

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


def _warn_if_random(target) -> None:
    if target.random_weights:
        print(f"apmae: note: {target.name} has random weights (apmae lm init): its figures size "
              "and test the pipeline, they say nothing about attention", file=sys.stderr)


def _load_tokenizer(model: str | None):
    from transformers import AutoTokenizer

    from .lm.load import resolve_model_name

    path = resolve_model_name(model)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot load a tokenizer ({str(e).splitlines()[0]})") from e


def _check_context(model: str | None, window: int) -> None:
    """Refuse a window the model cannot attend over, before mining for it."""
    from transformers import AutoConfig

    from .lm.load import resolve_model_name

    try:
        config = AutoConfig.from_pretrained(resolve_model_name(model))
    except (OSError, ValueError):
        return  # a bare tokenizer folder: the model's context is checked at extraction
    context = getattr(config.get_text_config(), "max_position_embeddings", None)
    if context is not None and window >= context:
        raise UserError(f"--window {window} does not fit the model's context of {context} tokens")


def cmd_mine(args: argparse.Namespace) -> None:
    from .scenarios import MiningStats, check_tasks, mine, write_scenarios

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
    from .extract import ExtractConfig, extract
    from .lm.load import load_target
    from .run import Run

    if not Path(args.scenarios).is_file():
        raise UserError(f"{args.scenarios}: no such scenarios file")
    cfg = ExtractConfig(batch_size=args.batch_size, keep=args.keep, precision=args.precision)
    cfg.keep_limit()  # validates --keep before the model loads
    if args.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    target = load_target(args.model, device=args.device, dtype=args.dtype, device_map=args.device_map)
    _warn_if_random(target)
    n = extract(Run(args.run), Path(args.scenarios), target, cfg)
    print(f"extracted {n} scenarios into run {args.run}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> None:
    from .report import build_report, dumps, format_report

    report = build_report(_existing_run(args.run))
    print(dumps(report) if args.json else format_report(report))


def cmd_demo(args: argparse.Namespace) -> None:
    from .pipeline import DemoConfig, StageTimes, build_default_run
    from .report import build_report, format_report
    from .run import Run

    cfg = _dataclass_from_args(DemoConfig, args)
    _atlas_engine()  # a writer: the database is migrated here, so its report can read it
    times = StageTimes()
    run = build_default_run(Run(args.run), cfg, source=args.source, times=times)
    print(format_report(build_report(run)))
    print("stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.seconds.items())
          + f"; total {sum(times.seconds.values()) / 60:.1f} min")
    if not args.build_only:
        _serve(args.run, args.host, args.port)


def _serve(run: str, host: str, port: int) -> None:
    import uvicorn

    from server.app import create_app
    from server.settings import Settings

    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"apmae: warning: listening on {host}, not loopback: anyone who can reach this "
              "machine can use the explorer and its model", file=sys.stderr)
    print(f"apmae: explorer of run {run!r} at http://{host}:{port}/ (Ctrl-C stops it)", file=sys.stderr)
    uvicorn.run(create_app(Settings(run=run)), host=host, port=port, log_level="warning")


def cmd_serve(args: argparse.Namespace) -> None:
    _existing_run(args.run)
    _serve(args.run, args.host, args.port)


def _add_serve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback by default)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")


def _existing_run(name: str):
    from .run import Run

    run = Run(name)
    if not run.path.exists():
        raise UserError(f"no run named {name!r} under {run.path.parent}")
    return run


def cmd_mae_train(args: argparse.Namespace) -> None:
    from .mae.train import MAETrainConfig, train_mae

    cfg = _dataclass_from_args(MAETrainConfig, args)
    print(train_mae(_existing_run(args.run), cfg, resume=args.resume))


def cmd_mae_eval(args: argparse.Namespace) -> None:
    from .mae.evaluate import MAEEvalConfig, evaluate

    run = _existing_run(args.run)
    other = _existing_run(args.other_run) if args.other_run else None
    result = evaluate(run, _dataclass_from_args(MAEEvalConfig, args), other=other,
                      model_dir=Path(args.model) if args.model else None)
    print(json.dumps(result, indent=2))


def cmd_mae_ship(args: argparse.Namespace) -> None:
    from .mae.shipped import ship
    from .paths import DEFAULT_MAE_DIR

    card = ship(_existing_run(args.run), Path(args.dest) if args.dest else DEFAULT_MAE_DIR)
    print(json.dumps(card["eval"]["reconstruction"]["ratio_to_best_baseline"]))


def cmd_mae_import(args: argparse.Namespace) -> None:
    from .mae.convert import import_reference

    source = Path(args.path)
    folder = (source if source.is_dir() else source.parent).resolve()
    out = Path(args.out) if args.out else apmae_home() / "mae" / folder.name
    print(import_reference(source, out))


def cmd_encode(args: argparse.Namespace) -> None:
    from .atlas.encode import EncodeConfig, encode_run

    cfg = _dataclass_from_args(EncodeConfig, args)
    if cfg.batch_size < 1 or cfg.pooling not in ("cls", "mean"):
        raise UserError("--batch-size must be >= 1 and --pooling cls or mean")
    n = encode_run(_existing_run(args.run), cfg, model_dir=Path(args.model) if args.model else None)
    print(f"encoded {n} scenarios of run {args.run}", file=sys.stderr)


def _atlas_engine():
    from .db.session import migrated_engine

    return migrated_engine()


def cmd_cluster(args: argparse.Namespace) -> None:
    from .atlas.cluster_stage import cluster_run
    from .atlas.cluster import ClusterConfig

    cfg = _dataclass_from_args(ClusterConfig, args)
    n = cluster_run(_existing_run(args.run), cfg, _atlas_engine())
    print(f"clustered {n} heads of run {args.run}", file=sys.stderr)


def cmd_predictor_train(args: argparse.Namespace) -> None:
    from .atlas.predictor_stage import predictor_run
    from .atlas.predictor import PredictorConfig

    section = predictor_run(_existing_run(args.run), _dataclass_from_args(PredictorConfig, args),
                            _atlas_engine())
    print(json.dumps(section, indent=2))


def cmd_sweep(args: argparse.Namespace) -> None:
    from .atlas.sweep_stage import sweep_run
    from .atlas.summaries import intervention_summary, sweep_summary
    from .atlas.intervention import InterventionConfig
    from .atlas.sweep import SweepConfig
    from .lm.load import load_target

    run = _existing_run(args.run)
    engine = _atlas_engine()
    cfg = _dataclass_from_args(SweepConfig, args)
    selective = _dataclass_from_args(InterventionConfig, args, seed=cfg.seed)
    sweep_run(run, cfg, engine, load_target(run.meta().get("model"),
                                            dtype=args.dtype or run.meta().get("model_dtype")),
              selective)
    print(json.dumps({"collapse": sweep_summary(engine, run.name)["collapse"],
                      "intervention": intervention_summary(engine, run.name)["verdict"]}))


def _migrate(direction: str, revision: str) -> None:
    """Run ``apmae.db.session.upgrade``/``downgrade``; a bad URL or revision, a missing driver
    or an unreachable server is a one-line error."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from .db import session

    url = session.database_url()
    try:
        at = getattr(session, direction)(url, revision)
    except (CommandError, SQLAlchemyError) as e:
        raise UserError(f"{session.masked_url(url)}: {str(e).splitlines()[0]}") from e
    except ImportError as e:  # the URL's driver, e.g. psycopg
        raise UserError(f"{session.masked_url(url)}: {e} "
                        "(PostgreSQL: pip install -e '.[postgres]')") from e
    print(f"{session.masked_url(url)}: at revision {at or 'base'}")


def cmd_db_upgrade(args: argparse.Namespace) -> None:
    _migrate("upgrade", args.revision)


def cmd_db_downgrade(args: argparse.Namespace) -> None:
    _migrate("downgrade", args.revision)


def _add_dtype_flag(p: argparse.ArgumentParser, what: str = "the model's weights",
                    default: str = "auto") -> None:
    from .lm.load import DTYPES

    p.add_argument("--dtype", choices=["auto", *DTYPES], help=f"{what} (default: {default}); auto "
                   "is float32 below a billion parameters (the embedded model), bfloat16 above")


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

    p = lm.add_parser("ship", help="copy the trained model into the package with its model card")
    p.add_argument("--from", dest="from_dir", help="training folder (default: $APMAE_HOME/lm/default)")
    p.add_argument("--dest", help="destination (default: the package's default_model/)")
    p.add_argument("--per-task", type=int, default=100, help="held-out scenarios per task")
    p.add_argument("--no-curve", action="store_true", help="skip evaluating the snapshots")
    p.add_argument("--step", type=int, help="ship the snapshot of this step, not the final weights")
    p.set_defaults(func=cmd_lm_ship)

    from .lm.shapes import SHAPES

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
    _add_dtype_flag(p, "the weights saved")
    p.set_defaults(func=cmd_lm_init)

    mae = sub.add_parser("mae", help="AP-MAE, the masked autoencoder over attention patterns") \
        .add_subparsers(dest="mae_command", required=True)
    from .mae.evaluate import MAEEvalConfig
    from .mae.train import MAETrainConfig

    p = mae.add_parser("train", help="train AP-MAE on the run's train-split patterns (torchrun: DDP)")
    p.add_argument("--run", default="default", help="run name under $APMAE_HOME/runs")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    _add_dataclass_flags(p, MAETrainConfig)
    p.set_defaults(func=cmd_mae_train)

    p = mae.add_parser("eval", help="masked MSE on held-out patterns against baselines")
    p.add_argument("--run", default="default", help="run name under $APMAE_HOME/runs")
    p.add_argument("--other-run", help="a run of another model: AP-MAE's MSE on patterns it never saw")
    p.add_argument("--model", help="AP-MAE folder (default: the run's mae/model)")
    _add_dataclass_flags(p, MAEEvalConfig)
    p.set_defaults(func=cmd_mae_eval)

    p = mae.add_parser("ship", help="make the run's AP-MAE (of the default model) the shipped one")
    p.add_argument("--run", default="default", help="run name under $APMAE_HOME/runs")
    p.add_argument("--dest", help="destination (default: the package's default_mae/)")
    p.set_defaults(func=cmd_mae_ship)

    p = mae.add_parser("import", help="convert a checkpoint of the paper's reference AP-MAE "
                       "(e.g. AP-MAE-SC2-3B) into a model for `apmae encode --model`")
    p.add_argument("path", help="the checkpoint: its folder (model.safetensors, config.json) or .safetensors file")
    p.add_argument("--out", help="new folder for the converted model "
                   "(default: $APMAE_HOME/mae/<checkpoint's folder name>)")
    p.set_defaults(func=cmd_mae_import)

    from .atlas.encode import EncodeConfig

    p = sub.add_parser("encode", help="embed every (scenario, layer, head) pattern with AP-MAE")
    p.add_argument("--run", default="default", help="run name under $APMAE_HOME/runs")
    p.add_argument("--model", help="AP-MAE folder (default: the run's mae/model)")
    _add_dataclass_flags(p, EncodeConfig)
    p.set_defaults(func=cmd_encode)

    from .atlas.cluster import ClusterConfig
    from .atlas.predictor import PredictorConfig
    from .atlas.intervention import InterventionConfig
    from .atlas.sweep import SweepConfig

    p = sub.add_parser("cluster", help="UMAP + HDBSCAN per head over the AP-MAE embeddings")
    p.add_argument("--run", default="default", help="run name under $APMAE_HOME/runs")
    _add_dataclass_flags(p, ClusterConfig)
    p.set_defaults(func=cmd_cluster)

    pred = sub.add_parser("predictor", help="predict correctness from pattern clusters") \
        .add_subparsers(dest="predictor_command", required=True)
    p = pred.add_parser("train", help="correctness predictors: held-out and k-fold; heads' SHAP")
    p.add_argument("--run", default="default", help="run name under $APMAE_HOME/runs")
    _add_dataclass_flags(p, PredictorConfig)
    p.set_defaults(func=cmd_predictor_train)

    p = sub.add_parser("sweep", help="heads' causal effects, selective interventions against "
                       "random heads, and the collapse curve (chosen on train, tested held out)")
    p.add_argument("--run", default="default", help="run name under $APMAE_HOME/runs")
    _add_dataclass_flags(p, SweepConfig)
    _add_dataclass_flags(p, InterventionConfig, skip=("seed",))
    _add_dtype_flag(p, "the target model's", default="the dtype it was extracted in")
    p.set_defaults(func=cmd_sweep)

    db = sub.add_parser("db", help="the SQL store of the pattern atlas (migrations)") \
        .add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", help="create or migrate the database's tables")
    p.add_argument("--revision", default="head", help="Alembic revision (default: head)")
    p.set_defaults(func=cmd_db_upgrade)
    p = db.add_parser("downgrade", help="migrate the database back (base: drops every table)")
    p.add_argument("--revision", default="base", help="Alembic revision (default: base)")
    p.set_defaults(func=cmd_db_downgrade)

    from .extract import KEEP_HELP, PRECISIONS
    from .scenarios import TASKS

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
    p.add_argument("--run", default="default", help="run name under $APMAE_HOME/runs")
    p.add_argument("--batch-size", type=int, default=8, help="scenarios per forward pass (default: 8)")
    p.add_argument("--keep", default="all", help=KEEP_HELP)
    p.add_argument("--precision", choices=sorted(PRECISIONS), default="uint8",
                   help="kept patterns on disk: uint8 (log p in [-20, 0], 255 steps) or float16")
    p.add_argument("--device", default="cpu", help="cpu | cuda (under torchrun: the rank's own GPU)")
    p.add_argument("--device-map", help="auto: split a model too big for one GPU over all visible "
                                        "ones (needs `pip install accelerate`; one process)")
    _add_dtype_flag(p)
    p.set_defaults(func=cmd_extract)

    from .pipeline import DemoConfig

    p = sub.add_parser("demo", help="build the default run on the embedded model (resumable)")
    p.add_argument("--run", default="default", help="run name under $APMAE_HOME/runs")
    p.add_argument("--source", help="corpus (default: the JDK's src.zip, installed if missing)")
    _add_dataclass_flags(p, DemoConfig)
    p.add_argument("--build-only", action="store_true", help="build, print the report, do not serve")
    _add_serve_flags(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="the browser explorer over a built run")
    p.add_argument("--run", default="default", help="run name under $APMAE_HOME/runs")
    _add_serve_flags(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("report", help="print the run's summary")
    p.add_argument("--run", default="default", help="run name under $APMAE_HOME/runs")
    p.add_argument("--json", action="store_true", help="the whole report as JSON")
    p.set_defaults(func=cmd_report)
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


if __name__ == "__main__":
    sys.exit(main())
