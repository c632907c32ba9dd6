"""A built run: ``apmae demo`` builds the default one and serves it, ``apmae serve`` explores
one in the browser, ``apmae report`` prints its summary."""

from __future__ import annotations

import argparse
import sys

from ..configs import DemoConfig
from .common import add_dataclass_flags, add_run_flag, dataclass_from_args, existing_run
from .db import atlas_engine


def serve_explorer(run: str, host: str, port: int) -> None:
    """The explorer of ``run`` until Ctrl-C; a warning where it listens beyond loopback."""
    import uvicorn

    from server.app import create_app
    from server.settings import Settings

    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"apmae: warning: listening on {host}, not loopback: anyone who can reach this "
              "machine can use the explorer and its model", file=sys.stderr)
    print(f"apmae: explorer of run {run!r} at http://{host}:{port}/ (Ctrl-C stops it)", file=sys.stderr)
    uvicorn.run(create_app(Settings(run=run)), host=host, port=port, log_level="warning")


def cmd_demo(args: argparse.Namespace) -> None:
    from ..pipeline import StageTimes, build_default_run
    from ..report import build_report, format_report
    from ..run import Run

    cfg = dataclass_from_args(DemoConfig, args)
    atlas_engine()  # a writer: the database is migrated here, so its report can read it
    times = StageTimes()
    run = build_default_run(Run(args.run), cfg, source=args.source, times=times)
    print(format_report(build_report(run)))
    print("stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.seconds.items())
          + f"; total {sum(times.seconds.values()) / 60:.1f} min")
    if not args.build_only:
        serve_explorer(args.run, args.host, args.port)


def cmd_serve(args: argparse.Namespace) -> None:
    existing_run(args.run)
    serve_explorer(args.run, args.host, args.port)


def cmd_report(args: argparse.Namespace) -> None:
    from ..report import build_report, dumps, format_report

    report = build_report(existing_run(args.run))
    print(dumps(report) if args.json else format_report(report))


def _add_serve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback by default)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="build the default run on the embedded model (resumable)")
    add_run_flag(p)
    p.add_argument("--source", help="corpus (default: the JDK's src.zip, installed if missing)")
    add_dataclass_flags(p, DemoConfig)
    p.add_argument("--build-only", action="store_true", help="build, print the report, do not serve")
    _add_serve_flags(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="the browser explorer over a built run")
    add_run_flag(p)
    _add_serve_flags(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("report", help="print the run's summary")
    add_run_flag(p)
    p.add_argument("--json", action="store_true", help="the whole report as JSON")
    p.set_defaults(func=cmd_report)
