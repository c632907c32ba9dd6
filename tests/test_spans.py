"""Candidate spans of the completion tasks (apmae.spans) on small Java files."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apmae import spans
from apmae.spans import TOKEN_TASKS, SPAN_TASKS, TREE_SITTER_TASKS, find_spans, parse_java

FIXTURES = Path(__file__).parent / "fixtures" / "java"
JAVA_FILES = sorted(FIXTURES.glob("*.java"))


def load(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def targets(task: str, text: str) -> list[str]:
    tree = parse_java(text)
    assert tree is not None
    return [text[s:e] for s, e in find_spans(task, text, tree)]


def naive_char(text: str, byte: int) -> int:
    """Byte -> char offset the slow, obviously right way (independent of the module)."""
    return len(text.encode("utf-8")[:byte].decode("utf-8"))


def node_spans(text: str, types: set[str]) -> list[tuple[int, int]]:
    """Character spans of every node of the given types, by walking the whole tree."""
    tree = parse_java(text)
    assert tree is not None
    out, stack = [], [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type in types:
            out.append((naive_char(text, node.start_byte), naive_char(text, node.end_byte)))
        stack.extend(node.children)
    return sorted(out)


def test_task_names() -> None:
    assert len(set(SPAN_TASKS)) == 12 and set(SPAN_TASKS) == set(TREE_SITTER_TASKS) | set(TOKEN_TASKS)


def test_import_does_no_work() -> None:
    code = ("import sys, apmae.spans as s; assert s._language.cache_info().currsize == 0;"
            "assert 'tree_sitter_java' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- tree-sitter tasks ------------------------------------------------------------------


def test_function_calls_and_names() -> None:
    text = load("Inventory.java")
    assert targets("function_call", text) == ["getOrDefault", "put", "size", "size", "add", "apply",
                                              "keySet", "forEach", "add", "toUpperCase"]
    assert targets("function_name", text) == ["add", "isEmpty", "names"]
    shapes = load("Shapes.java")
    # Constructors are not method declarations; interface/abstract methods are.
    assert targets("function_name", shapes) == ["area", "toString", "visit", "area", "describe", "noop"]
    assert targets("function_call", shapes) == ["toString", "area", "println", "run", "trim"]
    assert targets("function_call", load("Util.java")) == []


def test_identifiers_after_non_ascii() -> None:
    text = load("Util.java")
    assert targets("identifiers", text) == [
        "org", "example", "shop", "Util", "greet", "name", "s", "name", "c", "xs", "sum", "x", "xs",
        "sum", "x", "sum", "sum", "sum", "sum", "avg", "sum", "sum", "s", "c", "xs", "sum"]
    shapes = targets("identifiers", load("Shapes.java"))
    assert "größe" in shapes and "$tmp" in shapes and "var" not in shapes


def test_literals() -> None:
    inv, util = load("Inventory.java"), load("Util.java")
    strings = targets("string_literals", inv)
    assert strings[:3] == ["';'", '"Café ☕ {open} (x + y); // not a comment"', '"n"']
    assert strings[3].startswith('"""\n') and strings[3].endswith('"""') and len(strings) == 4
    assert targets("string_literals", util) == ['"Grüße, "', '"! 🎉"', "'ß'"]
    assert targets("boolean_literals", inv) == ["true", "false", "true"]
    assert targets("numeric_literals", inv) == ["0x7F", "0b1010L", "0755", "1.5e-3", "0.5f", "0x1.8p1",
                                                "0", "1", "0", "2", "1", "0", "0"]
    assert targets("numeric_literals", util) == ["1", "2", "3", "0", "2", "0xFF", "1", "2", "3", "2", "1", "0"]


# --- "regex" tasks ----------------------------------------------------------------------


def test_operators() -> None:
    inv, util, shapes = load("Inventory.java"), load("Util.java"), load("Shapes.java")
    # `n <= 0` and `i < n` are comparisons; the `->` of the lambda and `*` of `import java.util.*`
    # are not operators; the operators in the comments and the text block are not code.
    assert targets("mathematical_operators", inv) == ["-", "%", "++", "+"]
    assert targets("mathematical_operators", util) == ["+", "+", "*", "/", "-", "--", "+", "+", "+"]
    assert targets("mathematical_operators", shapes) == ["+", "+", "+", "*", "*", "/", "+", "+", "+",
                                                         "+", "-", "-"]
    assert targets("boolean_operators", inv) == ["!", "||", "==", "&&", "!=", "!"]
    assert targets("boolean_operators", shapes) == ["&&"]
    assert targets("assignment_operators", inv) == ["+=", "*=", ">>>="]
    assert targets("assignment_operators", util) == ["-=", "/=", "|=", "^=", "<<="]


def test_keywords() -> None:
    assert targets("keywords", load("Util.java")) == ["package", "final", "class", "static", "char", "int",
                                                      "new", "int", "int", "for", "int", "int", "return"]
    shapes = targets("keywords", load("Shapes.java"))
    assert set(shapes) == {
        "package", "import", "public", "abstract", "class", "protected", "double", "return", "super",
        "this", "enum", "interface", "throws", "static", "final", "extends", "private", "switch", "case",
        "break", "default", "if", "instanceof", "try", "catch", "throw", "new", "finally", "void",
        "synchronized", "while", "continue"}
    assert shapes.count("this") == 3 and shapes.count("class") == 2
    # `var` is contextual and `false` a literal, even though a regex would say otherwise.
    assert "var" not in shapes and "false" not in shapes


def test_brackets_and_eol_skip_comments_and_literals() -> None:
    text = ('class A { int[] a = {1}; String s = ")]};\\n"; char c = \'}\'; /* ) ]; */\n'
            '  void f() { g(a[0]); } // } );\n'
            '}\n')
    tree = parse_java(text)
    assert tree is not None
    brackets = find_spans("closing_bracket", text, tree)
    assert [text[s:e] for s, e in brackets] == ["]", "}", ")", "]", ")", "}", "}"]
    assert brackets[0] == (text.index("]"), text.index("]") + 1)
    assert brackets[-1] == (len(text) - 2, len(text) - 1)
    assert find_spans("eol", text, tree) == []  # the only `;\n` sit in comments
    assert len(targets("eol", load("Inventory.java"))) == 27  # 29 lines end in `;`: one comment, one text block
    assert len(targets("eol", load("Util.java"))) == 13


def test_eol_is_exactly_semicolon_newline() -> None:
    text = "class A {\n  int x;\n  int y;\r\n  int z; \n  int w;}"
    assert find_spans("eol", text, parse_java(text)) == [(text.index("x;") + 1, text.index("x;") + 3)]


def test_offsets_after_multibyte_characters() -> None:
    text = load("Util.java")
    tree = parse_java(text)
    assert tree is not None
    # 4-byte emoji, 3-byte CJK and 2-byte umlauts all precede these.
    assert (text.index("/= 2"), text.index("/= 2") + 2) in find_spans("assignment_operators", text, tree)
    assert (text.index("0xFF"), text.index("0xFF") + 4) in find_spans("numeric_literals", text, tree)
    assert find_spans("identifiers", text, tree) == node_spans(text, {"identifier"})


def test_byte_to_char_mapping() -> None:
    text = "a\u00e9\u65e5\U0001f389b" * 3  # 1-, 2-, 3- and 4-byte characters
    to_char = spans._byte_to_char(text)
    for i in range(len(text) + 1):
        assert to_char(len(text[:i].encode("utf-8"))) == i


@pytest.mark.parametrize("path", JAVA_FILES, ids=lambda p: p.name)
def test_non_ascii_does_not_shift_spans(path: Path) -> None:
    """Replacing each non-ASCII character by one ASCII letter keeps every character offset,
    so every task must find the very same spans in both versions."""
    text = load(path.name)
    ascii_text = re.sub(r"[^\x00-\x7f]", "x", text)
    assert ascii_text != text
    tree, ascii_tree = parse_java(text), parse_java(ascii_text)
    assert tree is not None and ascii_tree is not None
    for task in SPAN_TASKS:
        assert find_spans(task, text, tree) == find_spans(task, ascii_text, ascii_tree), task


def test_deeply_nested_expressions_stay_fast() -> None:
    """Generated code nests thousands deep; child-pattern queries took seconds here."""
    chain = "sb" + ".append(x)" * 4000
    concat = " + ".join(f"s{i}" for i in range(4000))
    text = f"class A {{ void f() {{ {chain}; t = {concat}; b = {' && '.join(['c'] * 3000)}; }} }}"
    tree = parse_java(text)
    assert tree is not None
    start = time.perf_counter()
    assert len(find_spans("function_call", text, tree)) == 4000
    assert len(find_spans("mathematical_operators", text, tree)) == 3999
    assert len(find_spans("boolean_operators", text, tree)) == 2999
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("path", JAVA_FILES, ids=lambda p: p.name)
def test_no_regex_task_span_inside_comments_or_literals(path: Path) -> None:
    text = load(path.name)
    tree = parse_java(text)
    assert tree is not None
    hidden = node_spans(text, {"line_comment", "block_comment", "string_literal", "character_literal"})
    for task in TOKEN_TASKS:
        for s, e in find_spans(task, text, tree):
            assert not any(hs <= s and e <= he for hs, he in hidden), (task, text[s:e], s)


# --- edge cases -------------------------------------------------------------------------


def test_unknown_task() -> None:
    with pytest.raises(ValueError, match="unknown completion task"):
        find_spans("semicolons", "class A {}", parse_java("class A {}"))


@pytest.mark.parametrize("text", ["class A { void f() { g( } }", "class A { int x = 1 }", "clas A {}",
                                  "class A { String s = \"\ud800\"; }"])
def test_broken_files_do_not_parse(text: str) -> None:
    assert parse_java(text) is None


def test_empty_text() -> None:
    tree = parse_java("")
    assert tree is not None
    assert all(find_spans(task, "", tree) == [] for task in SPAN_TASKS)


# --- every span of every task on every fixture ------------------------------------------

_IDENT = r"[\w$]+"
PLAUSIBLE = {
    "identifiers": _IDENT,
    "string_literals": r'"""\n.*"""|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)+\'',
    "boolean_literals": "true|false",
    "numeric_literals": r"\.?[0-9][0-9a-fA-FxXbBpP_.+\-lL]*",
    "function_call": _IDENT,
    "function_name": _IDENT,
    "closing_bracket": r"[)\]}]",
    "eol": ";\n",
    "keywords": "|".join(sorted(spans.JAVA_KEYWORDS)),
    "mathematical_operators": r"\+\+|--|[-+*/%]",
    "boolean_operators": r"==|!=|&&|\|\||!",
    "assignment_operators": r"(?:[-+*/%&|^]|<<|>>>?)=",
}


@pytest.mark.parametrize("path", JAVA_FILES, ids=lambda p: p.name)
def test_every_span_round_trips(path: Path) -> None:
    text = load(path.name)
    tree = parse_java(text)
    assert tree is not None
    assert set(PLAUSIBLE) == set(SPAN_TASKS)
    for task in SPAN_TASKS:
        found = find_spans(task, text, tree)
        if path.name == "Inventory.java":  # the fixture meant to cover every task
            assert found, task
        assert found == sorted(set(found))
        for s, e in found:
            assert 0 <= s < e <= len(text)
            assert re.fullmatch(PLAUSIBLE[task], text[s:e], re.DOTALL), (task, text[s:e])
