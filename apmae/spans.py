"""Candidate target spans of the AP-MAE completion tasks in one Java file.

A completion task masks one syntactic element (an identifier, a ``;\\n``, a ``+=``...) and
asks the model to fill it in. This module only finds *where* those elements are: for a task
and a file it returns every candidate ``(start, end)`` as **character** offsets into the
Python string, so ``text[start:end]`` is the target. Choosing among them is the caller's job.

The paper's reference pipeline finds half of the tasks with tree-sitter queries and the
other half with regular expressions over the raw text. Plain regexes also match inside
comments and string literals (a ``}`` in ``"a}b"``, a ``;`` in ``// x;``), and mistake ``!``
in ``!=`` or ``-`` in ``->`` for operators. Here every task reads the syntax tree instead:
the parser has already tokenised the file, so comments and literals are single nodes with no
operator or bracket tokens inside them, and each operator is exactly one token.
``TREE_SITTER_TASKS`` / ``TOKEN_TASKS`` keep the paper's grouping: its regex tasks are the
ones whose target is one token (``eol``: the ``;`` and its newline).

Decisions, where the paper leaves room:

* ``mathematical_operators``: ``+ - * / %`` of binary expressions, unary ``+ -``, and
  ``++ --``. Not comparisons (the reference regex also takes ``< > <= >=``), not the ``*`` of
  ``import a.*``, not compound assignments.
* ``boolean_operators``: ``== != && ||`` and unary ``!``.
* ``assignment_operators``: compound assignments only (``+= ... >>>=``); plain ``=`` is
  excluded, as in the paper ("compound assignment operators"), since it is everywhere and
  trivially predictable.
* ``keywords``: the reserved keywords of Java 17 as the parser sees them. So ``int``,
  ``void``, ``this``, ``class`` count (the reference regex list leaves these out);
  ``true``/``false``/``null`` are literals, and contextual words such as ``var``, ``record``
  and ``yield`` are not keywords. ``goto``/``const`` never parse.
* ``eol``: a ``;`` token immediately followed by ``\\n``; the span covers both characters.
  A ``;`` before ``\\r\\n`` does not count (the target must be exactly ``";\\n"``).
"""

from __future__ import annotations

import bisect
import random
import re
from functools import lru_cache
from typing import Callable

from tree_sitter import Language, Node, Parser, Query, QueryCursor, Tree

TREE_SITTER_TASKS = ("identifiers", "string_literals", "boolean_literals", "numeric_literals",
                     "function_call", "function_name")
TOKEN_TASKS = ("closing_bracket", "eol", "keywords", "mathematical_operators",
               "boolean_operators", "assignment_operators")
#: Every task with a span finder here; ``scenarios.TASKS`` adds ``random`` and ``noise``.
SPAN_TASKS = TREE_SITTER_TASKS + TOKEN_TASKS

#: Reserved keywords of Java 17 (JLS §3.9), without the literals true/false/null.
JAVA_KEYWORDS = frozenset("""
    abstract assert boolean break byte case catch char class const continue default do double
    else enum extends final finally float for goto if implements import instanceof int
    interface long native new package private protected public return short static strictfp
    super switch synchronized this throw throws transient try void volatile while""".split())

#: Keywords the grammar turns into named leaf nodes rather than anonymous tokens.
_NAMED_KEYWORD_NODES = ("boolean_type", "void_type", "this", "super")


def _any(tokens: str) -> str:
    """A query alternation of anonymous tokens: ``'} )'`` -> ``'["}" ")"]'``."""
    return "[" + " ".join(f'"{t}"' for t in tokens.split()) + "]"


#: Tasks whose targets are whole nodes, as one tree-sitter query each (``keywords`` is
#: built from the language, see ``_query``).
_NODE_QUERIES: dict[str, str] = {
    "identifiers": "(identifier) @t",
    # Text blocks are string_literals too in tree-sitter-java.
    "string_literals": "(string_literal) @t (character_literal) @t",
    "boolean_literals": "(true) @t (false) @t",
    "numeric_literals": """[(decimal_integer_literal) (hex_integer_literal)
        (octal_integer_literal) (binary_integer_literal)
        (decimal_floating_point_literal) (hex_floating_point_literal)] @t""",
    "closing_bracket": _any("} ) ]") + " @t",
    "eol": '";" @t',
}

#: Tasks whose targets are one child of a node: the parent node types, and either the field
#: that holds the target or the operator tokens wanted among the parent's anonymous children.
#: Not a query with a child pattern (``(binary_expression operator: "+" @t)``): tree-sitter
#: matches those in time quadratic in the nesting depth, and a generated file's
#: ``"a" + "b" + ...`` of 12,000 strings, or a 5,000-call builder chain, nests that deep
#: (seconds instead of milliseconds). Matching bare parent nodes stays linear.
_CHILD_TASKS: dict[str, tuple[tuple[str, ...], str | frozenset[str]]] = {
    "function_call": (("method_invocation",), "name"),
    "function_name": (("method_declaration",), "name"),
    # The grammar allows + - in unary, ++ -- in update and the rest in binary expressions
    # only, so one set per task suffices.
    "mathematical_operators": (("binary_expression", "unary_expression", "update_expression"),
                               frozenset("+ - * / % ++ --".split())),
    "boolean_operators": (("binary_expression", "unary_expression"),
                          frozenset("== != && || !".split())),
    "assignment_operators": (("assignment_expression",),
                             frozenset("+= -= *= /= %= &= |= ^= <<= >>= >>>=".split())),
}


@lru_cache(maxsize=1)
def _language() -> Language:
    """The Java grammar, loaded on first use so importing this module stays free."""
    import tree_sitter_java

    return Language(tree_sitter_java.language())


@lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser(_language())


@lru_cache(maxsize=None)
def _query(task: str) -> Query:
    """The compiled query of a task; compiling costs milliseconds, so each is built once."""
    if task == "keywords":
        lang = _language()
        # Only keywords the grammar has as tokens: a query naming an unknown kind
        # (goto, const) does not compile.
        tokens = [f'"{k}"' for k in sorted(JAVA_KEYWORDS) if lang.id_for_node_kind(k, False)]
        named = [f"({n})" for n in _NAMED_KEYWORD_NODES]
        return Query(lang, "[" + " ".join(tokens + named) + "] @t")
    if task in _CHILD_TASKS:
        return Query(_language(), " ".join(f"({t}) @t" for t in _CHILD_TASKS[task][0]))
    return Query(_language(), _NODE_QUERIES[task])


def syntax_tree(text: str) -> Tree:
    """tree-sitter-java's tree of any text, syntax errors recovered as ERROR/MISSING nodes
    (lone surrogates passed through): what pasted fragments, cut out mid-file, need."""
    return _parser().parse(text.encode("utf-8", "surrogatepass"))


def parse_java(text: str) -> Tree | None:
    """Parse a Java file; ``None`` when it has syntax errors (or cannot be UTF-8 encoded).

    Files with errors are dropped rather than mined: error recovery can turn a keyword or an
    operator into an ERROR node, and the spans found would no longer be what the task means.
    """
    try:
        source = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return None
    tree = _parser().parse(source)
    return None if tree.root_node.has_error else tree


def _byte_to_char(text: str) -> Callable[[int], int]:
    """Map UTF-8 byte offsets (what tree-sitter reports) to ``str`` indices.

    Pure-ASCII text needs no mapping. Otherwise only the non-ASCII characters are recorded:
    a byte offset minus the extra bytes of the multi-byte characters before it is the
    character offset, found by bisection, so the cost is O(non-ASCII characters).
    """
    if text.isascii():
        return lambda b: b
    starts: list[int] = []  # byte offset of each non-ASCII character
    extra = [0]  # extra[k]: surplus bytes of the first k non-ASCII characters
    for m in re.finditer(r"[^\x00-\x7f]", text):
        starts.append(m.start() + extra[-1])
        extra.append(extra[-1] + len(m.group().encode("utf-8")) - 1)
    return lambda b: b - extra[bisect.bisect_left(starts, b)]


def _target_nodes(task: str, tree: Tree) -> list[Node]:
    """The nodes whose text is a target of ``task`` (eol: the ``;`` only)."""
    captures = QueryCursor(_query(task)).captures(tree.root_node)
    captured = [node for nodes in captures.values() for node in nodes]
    if task not in _CHILD_TASKS:
        return captured
    pick = _CHILD_TASKS[task][1]
    if isinstance(pick, str):
        return [child for node in captured if (child := node.child_by_field_name(pick)) is not None]
    return [child for node in captured for child in node.children
            if not child.is_named and child.type in pick]


def find_spans(task: str, text: str, tree: Tree) -> list[tuple[int, int]]:
    """Every candidate target of ``task`` in ``text``, as sorted unique character spans.

    ``tree`` must be ``parse_java(text)``. Raises ``ValueError`` for an unknown task.
    """
    if task not in SPAN_TASKS:
        raise ValueError(f"unknown completion task {task!r}; expected one of {', '.join(SPAN_TASKS)}")
    to_char = _byte_to_char(text)
    spans: set[tuple[int, int]] = set()
    for node in _target_nodes(task, tree):
        start, end = to_char(node.start_byte), to_char(node.end_byte)
        if task == "eol":
            if text[end:end + 1] != "\n":
                continue
            end += 1
        elif task == "keywords" and text[start:end] not in JAVA_KEYWORDS:
            continue
        if end > start:  # MISSING nodes are zero-width
            spans.add((start, end))
    return sorted(spans)


#: Tokens in a random-span task's span.
RANDOM_SPAN_TOKENS = (3, 10)


def random_token_span(tokenizer, text: str, rng: random.Random) -> tuple[int, int] | None:
    """Character offsets of 3–10 consecutive tokens at a random position of ``text``."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    pos = rng.randrange(len(text))
    lo = max(0, pos - 200)
    enc = backend.encode(text[lo:pos + 400], add_special_tokens=False)
    offsets = enc.offsets[1:]  # the first token may be a cut piece
    n = rng.randint(*RANDOM_SPAN_TOKENS)
    if len(offsets) < n + 1:
        return None
    i = rng.randrange(len(offsets) - n)
    start, end = lo + offsets[i][0], lo + offsets[i + n - 1][1]
    return (start, end) if text[start:end].strip() else None
