"""The README documents every command and setting (a command nobody can find is a defect)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from apmae.cli import build_parser

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands(parser: argparse.ArgumentParser, prefix: str = "apmae") -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(f"{prefix} {name}")
                out.extend(_commands(sub, f"{prefix} {name}"))
    return out


def test_every_command_is_in_the_readme():
    leaves = [c for c in _commands(build_parser()) if c not in ("apmae lm",)]
    missing = [c for c in leaves if c not in README]
    assert not missing, f"undocumented commands: {missing}"


def test_readme_starts_with_the_two_commands():
    blocks = README.split("```")
    first = blocks[1]
    assert "apmae demo" in first and "pytest" in first


def test_settings_are_documented():
    for setting in ("APMAE_HOME", "JAVA_HOME"):
        assert f"`{setting}`" in README


def _flags(parser: argparse.ArgumentParser, prefix: str = "apmae"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _flags(sub, f"{prefix} {name}")
        elif action.option_strings and "--help" not in action.option_strings:
            yield prefix, action.option_strings[0], action.help


def test_every_flag_says_what_it_does():
    bare = [f"{command} {flag}" for command, flag, text in _flags(build_parser())
            if not text or text.startswith("(default") or text.startswith(";")]
    assert not bare, f"flags without help: {bare}"


def test_every_environment_variable_is_documented():
    code = "".join(p.read_text(encoding="utf-8") for folder in ("apmae", "server")
                   for p in (ROOT / folder).rglob("*.py"))
    used = set(re.findall(r"APMAE_[A-Z_]+", code))
    assert used >= {"APMAE_HOME", "APMAE_DATABASE_URL"}  # the scan finds what it must
    missing = sorted(v for v in used if f"`{v}`" not in README)
    assert not missing, f"undocumented environment variables: {missing}"


def test_the_layout_follows_the_quick_start_and_names_every_module():
    headings = [line for line in README.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Layout"
    layout = README[README.index("## Layout"):README.index(headings[1])]
    missing = [f"{root}/{p.relative_to(ROOT / root).as_posix()}"
               for root in ("apmae", "server") for p in sorted((ROOT / root).rglob("*.py"))
               if p.name not in ("__init__.py", "__main__.py")
               and (p.relative_to(ROOT / root).as_posix() if root == "apmae" else p.name) not in layout]
    assert not missing, f"modules the README's layout does not name: {missing}"
