"""The atlas's stages over a run: ``apmae encode``, ``cluster``, ``predictor train`` and
``sweep``; each writes into the atlas database (:func:`apmae.cli.db.atlas_engine`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..configs import (ClusterConfig, EncodeConfig, InterventionConfig, PredictorConfig,
                       SweepConfig)
from .common import (UserError, add_dataclass_flags, add_dtype_flag, add_run_flag,
                     dataclass_from_args, existing_run)
from .db import atlas_engine


def cmd_encode(args: argparse.Namespace) -> None:
    from ..atlas.encode import encode_run

    cfg = dataclass_from_args(EncodeConfig, args)
    if cfg.batch_size < 1 or cfg.pooling not in ("cls", "mean"):
        raise UserError("--batch-size must be >= 1 and --pooling cls or mean")
    n = encode_run(existing_run(args.run), cfg, model_dir=Path(args.model) if args.model else None)
    print(f"encoded {n} scenarios of run {args.run}", file=sys.stderr)


def cmd_cluster(args: argparse.Namespace) -> None:
    from ..atlas.cluster_stage import cluster_run

    cfg = dataclass_from_args(ClusterConfig, args)
    n = cluster_run(existing_run(args.run), cfg, atlas_engine())
    print(f"clustered {n} heads of run {args.run}", file=sys.stderr)


def cmd_predictor_train(args: argparse.Namespace) -> None:
    from ..atlas.predictor_stage import predictor_run

    section = predictor_run(existing_run(args.run), dataclass_from_args(PredictorConfig, args),
                            atlas_engine())
    print(json.dumps(section, indent=2))


def cmd_sweep(args: argparse.Namespace) -> None:
    from ..atlas.sweep_stage import sweep_run
    from ..atlas.summaries import intervention_summary, sweep_summary
    from ..lm.load import load_target

    run = existing_run(args.run)
    engine = atlas_engine()
    cfg = dataclass_from_args(SweepConfig, args)
    selective = dataclass_from_args(InterventionConfig, args, seed=cfg.seed)
    sweep_run(run, cfg, engine, load_target(run.meta().get("model"), device=args.device,
                                            dtype=args.dtype or run.meta().get("model_dtype")),
              selective)
    print(json.dumps({"collapse": sweep_summary(engine, run.name)["collapse"],
                      "intervention": intervention_summary(engine, run.name)["verdict"]}))


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="embed every (scenario, layer, head) pattern with AP-MAE")
    add_run_flag(p)
    p.add_argument("--model", help="AP-MAE folder (default: the run's mae/model)")
    add_dataclass_flags(p, EncodeConfig)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("cluster", help="UMAP + HDBSCAN per head over the AP-MAE embeddings")
    add_run_flag(p)
    add_dataclass_flags(p, ClusterConfig)
    p.set_defaults(func=cmd_cluster)

    pred = sub.add_parser("predictor", help="predict correctness from pattern clusters") \
        .add_subparsers(dest="predictor_command", required=True)
    p = pred.add_parser("train", help="correctness predictors: held-out and k-fold; heads' SHAP")
    add_run_flag(p)
    add_dataclass_flags(p, PredictorConfig)
    p.set_defaults(func=cmd_predictor_train)

    p = sub.add_parser("sweep", help="heads' causal effects, selective interventions against "
                       "random heads, and the collapse curve (chosen on train, tested held out)")
    add_run_flag(p)
    add_dataclass_flags(p, SweepConfig)
    add_dataclass_flags(p, InterventionConfig, skip=("seed",))
    add_dtype_flag(p, "the target model's", default="the dtype it was extracted in")
    p.add_argument("--device", default="cpu", help="cpu | cuda: where the ablated passes run (a "
                   "model of hundreds of heads needs a GPU for more than a short sweep)")
    p.set_defaults(func=cmd_sweep)
