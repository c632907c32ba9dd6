"""Data flows one way (corpus -> scenarios -> LM -> capture -> store -> extract -> AP-MAE -> atlas
-> report/live -> CLI/server): no module imports from a stage above it. The imports are read from
the source with ``ast``, so an import inside a function counts as much as one at the top; one
under ``if TYPE_CHECKING:`` (an annotation, never run) does not."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "apmae"

#: what the language model must not know: everything that mines for it, runs it over scenarios
#: or reads its results
ABOVE_LM = ("apmae.scenarios", "apmae.extract", "apmae.report", "apmae.atlas", "apmae.pipeline",
            "apmae.ship", "apmae.live", "apmae.cli")
#: the stages that write a run; the report only reads what they wrote
STAGES = ("apmae.pipeline", "apmae.extract", "apmae.ship", "apmae.cli", "apmae.lm.train",
          "apmae.mae.train", "apmae.mae.evaluate", "apmae.atlas.encode", "apmae.atlas.cluster",
          "apmae.atlas.predictor", "apmae.atlas.sweep", "apmae.atlas.importance",
          "apmae.atlas.intervention", "apmae.atlas.build", "apmae.atlas.cluster_stage",
          "apmae.atlas.predictor_stage", "apmae.atlas.sweep_stage")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """The absolute names ``module`` imports (``from X import a`` gives X and X.a, since ``a``
    may be a module), type-only imports left out."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def module_path(name: str) -> Path | None:
    """The source of module ``name`` under apmae; None when the name is not a module (an
    attribute imported from one, or outside apmae)."""
    if name.split(".")[0] != PACKAGE.name:
        return None
    path = PACKAGE.parent.joinpath(*name.split("."))
    return next((p for p in (path.with_suffix(".py"), path / "__init__.py") if p.exists()), None)


def reached_from(root: str) -> dict[str, list[str]]:
    """Every apmae module that loading ``root`` loads, directly or through other apmae modules
    (a package with each module in it), each with a shortest chain of imports that reaches it."""
    chains = {root: [root]}
    todo = deque([root])
    while todo:
        name = todo.popleft()
        path = module_path(name)
        source = path.read_text(encoding="utf-8")
        for imported in sorted(imports_of(source, name, path.name == "__init__.py")):
            parts = imported.split(".")
            for module in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
                if module not in chains and module_path(module) is not None:
                    chains[module] = [*chains[name], module]
                    todo.append(module)
    return chains


def _banned(name: str, banned: tuple[str, ...]) -> bool:
    return any(name == b or name.startswith(b + ".") for b in banned)


def _violations(modules: list[Path], banned: tuple[str, ...]) -> list[str]:
    return sorted(f"{module_name(p)} imports {name}" for p in modules
                  for name in imports_of(p.read_text(encoding="utf-8"), module_name(p), p.name == "__init__.py")
                  if _banned(name, banned))


def test_the_reader_resolves_relative_lazy_and_type_only_imports():
    source = ("from typing import TYPE_CHECKING\nfrom .fim import build_window\nimport apmae.paths\n"
              "if TYPE_CHECKING:\n    from ..report import task_table\n"
              "def f():\n    from ..atlas import build\n    from .. import scenarios\n")
    found = imports_of(source, "apmae.lm.load")
    assert {"apmae.lm.fim", "apmae.paths", "apmae.atlas.build", "apmae.scenarios"} <= found
    assert not any(name.startswith("apmae.report") for name in found)
    assert "apmae.lm.tokenizer" in imports_of("from .tokenizer import x", "apmae.lm", is_package=True)
    # and on the real tree: a lazy import inside a function is found
    assert "apmae.ship.install" in imports_of((PACKAGE / "pipeline.py").read_text(), "apmae.pipeline")


@pytest.mark.parametrize("banned", [ABOVE_LM, STAGES])
def test_the_banned_names_exist(banned):
    """A name that no longer names a module would ban nothing."""
    for name in banned:
        path = PACKAGE.parent.joinpath(*name.split("."))
        assert path.with_suffix(".py").exists() or path.is_dir(), name


def test_the_language_model_imports_nothing_above_it():
    bad = _violations(sorted((PACKAGE / "lm").rglob("*.py")), ABOVE_LM)
    assert not bad, bad


def test_the_import_walk_follows_modules_through_others():
    reached = reached_from("apmae.report")
    assert reached["apmae.store.arrays"] == ["apmae.report", "apmae.run", "apmae.store.arrays"]
    assert "apmae.atlas.summaries" in reached  # imported inside a function
    assert "apmae.atlas" in reached  # the package a module is loaded from
    assert not any(name.endswith("cluster_summary") for name in reached)  # a function, no module


def test_the_report_reaches_no_stage():
    """Not directly, nor through a module it imports (the read side must not load a stage)."""
    bad = sorted(" -> ".join(chain) for name, chain in reached_from("apmae.report").items()
                 if _banned(name, STAGES))
    assert not bad, bad


def test_settings_are_imported_from_configs_only():
    """A stage's settings have one home, :mod:`apmae.configs`; importing them through a stage
    module would tie a light reader (the CLI's parser, a test) to that stage's heavy imports."""
    tree = ast.parse((PACKAGE / "configs.py").read_text(encoding="utf-8"))
    settings = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert {"MAETrainConfig", "ClusterConfig", "DemoConfig"} <= settings
    bad = []
    for root in ("apmae", "server", "bench", "tests", "tools"):
        for path in sorted((PACKAGE.parent / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").rpartition(".")[2] != "configs":
                    bad += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {alias.name}"
                            for alias in node.names if alias.name in settings]
    assert not bad, bad
