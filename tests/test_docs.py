"""The README documents every command and setting (a command nobody can find is a defect)."""

from __future__ import annotations

import argparse
from pathlib import Path

from apmae.cli import build_parser

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


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
