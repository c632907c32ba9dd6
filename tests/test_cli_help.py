"""``apmae --help`` and every command's ``--help`` answer without loading the heavy libraries:
the parser and its flag help (read from the settings dataclasses) import none of them; each
command loads what it needs when it runs. Checked in fresh interpreters, since this test
process has long imported torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
HEAVY = {"torch", "transformers", "sklearn", "umap", "hdbscan"}

#: Prints every command's --help (to a buffer), then, as JSON, the commands whose help did not
#: start with a usage line and the heavy top-level modules loaded meanwhile.
EVERY_HELP = """
import argparse, contextlib, io, json, sys
from apmae.cli import build_parser, main

def commands(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from commands(sub, prefix + (name,))

argvs = [(), *commands(build_parser())]
broken = []
for argv in argvs:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
    if not out.getvalue().startswith("usage: apmae"):
        broken.append(" ".join(argv))
print(json.dumps({"commands": len(argvs), "broken": broken,
                  "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_apmae_help_imports_no_heavy_library():
    """The console entry's own path (``python -m apmae``), every import listed by -X importtime."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "apmae", "--help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: apmae")
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0]
                for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "apmae" in imported  # the listing is what it claims to be
    assert not imported & HEAVY, sorted(imported & HEAVY)


def test_every_command_help_imports_no_heavy_library():
    done = subprocess.run([sys.executable, "-c", EVERY_HELP], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["commands"] > 15 and not result["broken"], result
    assert not set(result["loaded"]) & HEAVY, sorted(set(result["loaded"]) & HEAVY)
