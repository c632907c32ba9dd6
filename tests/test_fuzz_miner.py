"""Property tests of the miner on generated Java-ish text (hypothesis).

A small grammar composes classes, interfaces, enums, records and bare statement lists from
templates, with unicode identifiers (``café``, ``変数``, ``_$x``), LF, CRLF or mixed line
ends, tabs or spaces, very long lines (string literals of thousands of characters), comments
and every literal form. On such text, and on arbitrary text (lone surrogates included):

* ``parse_java`` returns a tree or None and never raises; the generated Java parses;
* ``find_spans`` never raises and every span lies on the text and is what its task means;
* ``build_window`` gives exactly the window, ``build_prompt`` at most it, and both mask
  exactly the span (its tokens are the span's bytes, the prefix's end before it, the
  suffix's start after it);
* ``random_token_span`` and ``locate`` return spans on the text (``locate`` otherwise a
  ``LiveError``, never another exception); ``mine`` yields scenarios whose targets are the
  files' text.

Every test is derandomized (the same examples each run) and small (under a minute in all).
"""

from __future__ import annotations

import random
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from apmae.live import LiveError, locate
from apmae.lm.fim import SpecialIds, build_prompt, build_window, special_ids
from apmae.scenarios import TASKS as SCENARIO_TASKS
from apmae.scenarios import mine
from apmae.spans import random_token_span
from apmae.spans import JAVA_KEYWORDS, SPAN_TASKS, find_spans, parse_java

#: The conftest's autouse ``_isolated_home`` is function-scoped; it only points APMAE_HOME
#: somewhere harmless, so sharing it between the examples of one test is fine.
SETTINGS = {"deadline": None, "derandomize": True, "database": None, "print_blob": True,
            "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                      HealthCheck.data_too_large, HealthCheck.large_base_example]}

# --- a grammar of Java-ish text -----------------------------------------------------------

#: Words that are not identifiers for tree-sitter-java (or contextual: kept out to be sure).
NOT_IDENTIFIERS = JAVA_KEYWORDS | {"true", "false", "null", "_", "var", "record", "yield",
                                   "sealed", "permits", "non", "when", "module", "open",
                                   "exports", "opens", "requires", "uses", "provides", "with",
                                   "to", "transitive"}
ODD_NAMES = ["café", "変数", "_$x", "$", "naïve", "Ωmega", "ßtraße", "x1", "λ", "ﬁle", "i"]
START = "abcxyzABXYZ_$éßΩ変数ñ"
PART = START + "0129"

identifiers = st.one_of(
    st.sampled_from(ODD_NAMES),
    st.builds(str.__add__, st.sampled_from(START), st.text(PART, max_size=6)),
).filter(lambda s: s not in NOT_IDENTIFIERS)
type_names = st.one_of(st.sampled_from(["Café", "変数型", "Totals", "A", "Ωmega", "$Gen"]),
                       st.builds(str.__add__, st.sampled_from("ABCXYZÉΩ"), st.text(PART, max_size=5)))
types = st.one_of(st.sampled_from(["int", "long", "double", "boolean", "char", "String", "var",
                                   "int[]", "List<String>", "Map<String, Integer>"]), type_names)

#: Text inside a literal: anything but a quote, a backslash or a line break (escapes apart),
#: and NUL, which tree-sitter takes for the end of the input (see test_nul_never_parses).
literal_char = st.one_of(
    st.characters(exclude_characters="\"'\\\n\r\x00", exclude_categories=["Cs", "Zl", "Zp"]),
    st.sampled_from(["\\n", "\\t", '\\"', "\\\\", "\\u00e9", "\\'", "<", "{", "}", ";", "//"]),
)
short_text = st.lists(literal_char, max_size=12).map("".join)
strings = st.one_of(
    short_text.map(lambda s: f'"{s}"'),
    # Very long lines: a string literal of up to ~10,000 characters.
    st.builds(lambda unit, n: '"' + unit * n + '"', st.lists(literal_char, min_size=1, max_size=12)
              .map("".join), st.integers(500, 2000)),
)
chars = st.sampled_from(["'a'", "'\\n'", "'é'", "'変'", "'\\''", "'\\u0041'", "'\"'"])
numbers = st.sampled_from(["0", "42", "0x1F", "0b101", "017", "1_000", "5L", "1.5", "2e10",
                           "3.0f", ".5", "1.5d", "0x1.8p+3", "1e-5"])
literals = st.one_of(numbers, strings, chars, st.sampled_from(["true", "false", "null"]))

BINARY = ["+", "-", "*", "/", "%", "==", "!=", "&&", "||", "<", ">", "<=", ">=", "&", "|", "^",
          "<<", ">>", ">>>"]
ASSIGN = ["=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=", ">>>="]


def _call(name: str, args: list[str]) -> str:
    return f"{name}({', '.join(args)})"


expressions = st.recursive(
    st.one_of(literals, identifiers),
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(BINARY), inner),
        st.builds(lambda op, a: f"{op}({a})", st.sampled_from(["!", "-", "+", "~"]), inner),
        st.builds(_call, identifiers, st.lists(inner, max_size=3)),
        st.builds(lambda o, n, a: f"{o}.{_call(n, a)}", identifiers, identifiers,
                  st.lists(inner, max_size=2)),
        st.builds(lambda t, a: f"new {_call(t, a)}", type_names, st.lists(inner, max_size=2)),
        st.builds(lambda a, i: f"{a}[{i}]", identifiers, inner),
        st.builds(lambda c, a, b: f"({c} ? {a} : {b})", inner, inner, inner),
        st.builds(lambda p, e: f"({p}) -> {e}", identifiers, inner),
        st.builds(lambda i, op: f"{i}{op}", identifiers, st.sampled_from(["++", "--"])),
    ),
    max_leaves=6,
)
comments = st.one_of(
    st.lists(st.characters(exclude_characters="\n\r\x00", exclude_categories=["Cs", "Zl", "Zp"]),
             max_size=20).map(lambda cs: "// " + "".join(cs)),
    short_text.filter(lambda s: "*/" not in s).map(lambda s: f"/* {s} */"),
)

Lines = list  # [(depth, text)], indented and joined later


def _block(head: str, body: Lines) -> Lines:
    return [(0, head + " {"), *[(d + 1, t) for d, t in body], (0, "}")]


def statements(depth: int = 0) -> st.SearchStrategy[Lines]:
    simple = st.one_of(
        st.builds(lambda t, n, e: [(0, f"{t} {n} = {e};")], types, identifiers, expressions),
        st.builds(lambda n, op, e: [(0, f"{n} {op} {e};")], identifiers, st.sampled_from(ASSIGN),
                  expressions),
        st.builds(lambda n, a: [(0, f"{_call(n, a)};")], identifiers, st.lists(expressions, max_size=2)),
        st.builds(lambda e: [(0, f"System.out.println({e});")], expressions),
        st.builds(lambda e: [(0, f"return {e};")], expressions),
        st.builds(lambda n: [(0, f"{n}++;")], identifiers),
        comments.map(lambda c: [(0, c)]),
        st.just([(0, ";")]),
        st.just([(0, "")]),
    )
    if depth >= 2:
        return st.lists(simple, min_size=1, max_size=4).map(lambda ls: [x for l in ls for x in l])
    inner = statements(depth + 1)
    compound = st.one_of(
        st.builds(lambda c, a, b: _block(f"if ({c})", a) + _block("else", b), expressions, inner, inner),
        st.builds(lambda i, n, body: _block(f"for (int {i} = 0; {i} < {n}; {i}++)", body),
                  identifiers, numbers, inner),
        st.builds(lambda c, body: _block(f"while ({c})", body), expressions, inner),
        st.builds(lambda body, n: _block("try", body) + _block(f"catch (Exception {n})", []),
                  inner, identifiers),
    )
    return st.lists(st.one_of(simple, compound), min_size=1, max_size=4).map(
        lambda ls: [x for l in ls for x in l])


modifiers = st.sampled_from(["", "public ", "private ", "protected static ", "final ", "static "])
params = st.lists(st.builds(lambda t, n: f"{t} {n}", types, identifiers), max_size=3,
                  unique_by=lambda p: p.split()[-1]).map(", ".join)
methods = st.builds(lambda m, t, n, p, body: _block(f"{m}{t} {n}({p})", body),
                    modifiers, st.one_of(types, st.just("void")), identifiers, params, statements(1))
fields = st.builds(lambda m, t, n, e: [(0, f"{m}{t} {n} = {e};")], modifiers, types, identifiers,
                   expressions)
members = st.lists(st.one_of(methods, fields, comments.map(lambda c: [(0, c)])), max_size=4).map(
    lambda ls: [x for l in ls for x in l])

headers = st.lists(st.sampled_from(["package demo.tests;", "import java.util.*;",
                                    "import java.util.List;", "// header ✓", ""]),
                   max_size=3).map(lambda ls: [(0, l) for l in ls])
units = st.one_of(
    st.builds(lambda m, n, body: _block(f"{m}class {n}", body), modifiers, type_names, members),
    st.builds(lambda n, sig, body: _block(f"interface {n}", [(0, sig)] + body), type_names,
              st.builds(lambda t, n, p: f"{t} {n}({p});", types, identifiers, params),
              st.lists(methods.map(lambda ls: [(ls[0][0], "default " + ls[0][1]), *ls[1:]]),
                       max_size=2).map(lambda ls: [x for l in ls for x in l])),
    st.builds(lambda n, consts, body: _block(f"enum {n}", [(0, ", ".join(consts) + ";")] + body),
              type_names, st.lists(type_names, min_size=1, max_size=4, unique=True), members),
    st.builds(lambda n, p, body: _block(f"record {n}({p})", body), type_names, params, members),
    statements(1),  # a file without a class: bare statements
)


@st.composite
def java_files(draw) -> str:
    """A syntactically valid Java-ish file, rendered with its own indentation and line ends."""
    lines = draw(headers) + [x for unit in draw(st.lists(units, min_size=1, max_size=2)) for x in unit]
    indent = draw(st.sampled_from(["    ", "\t", "  ", "\t  "]))
    eol = draw(st.sampled_from(["\n", "\r\n", "mixed"]))
    out = []
    for depth, text in lines:
        end = draw(st.sampled_from(["\n", "\r\n"])) if eol == "mixed" else eol
        trailing = draw(st.sampled_from(["", "", " ", "\t"]))
        out.append(indent * depth + text + trailing + end)
    text = "".join(out)
    return text if draw(st.booleans()) else text.rstrip("\r\n")


#: Arbitrary text, lone surrogates and control characters included.
any_char = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from("\x00\r\n\t"))
any_text = st.one_of(
    st.text(any_char, max_size=200),
    st.builds(lambda a, c, b: a + c + b, st.text(max_size=60), st.characters(categories=["Cs"]),
              st.text(max_size=60)),
)


@st.composite
def mutated_java(draw) -> str:
    """Java with a few characters inserted or removed: mostly broken, sometimes still valid."""
    text = draw(java_files())
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        if draw(st.booleans()) and i < len(text):
            text = text[:i] + text[i + 1:]
        else:
            text = text[:i] + draw(st.sampled_from(list("{}();\"'=+/*\n\r\t") + ["\ud800", "é"])) + text[i:]
    return text


# --- what each task's targets look like -----------------------------------------------------

NOT_IN_NAMES = re.compile(r"[\s\"'(){}\[\];,.=+\-*/%!<>&|^~?:@#`\\]")


def _is_name(t: str) -> bool:
    """An identifier (contextual words such as ``var`` or ``record`` included)."""
    return (bool(t) and not t[0].isdigit() and not NOT_IN_NAMES.search(t)
            and t not in JAVA_KEYWORDS | {"true", "false", "null", "_"})


KIND = {
    "identifiers": _is_name,
    "function_call": _is_name,
    "function_name": _is_name,
    "string_literals": lambda t: len(t) >= 2 and t[0] in "\"'" and t[-1] == t[0],
    "boolean_literals": lambda t: t in {"true", "false"},
    "numeric_literals": lambda t: re.fullmatch(r"\.?[0-9][\w.+\-]*", t) is not None,
    "closing_bracket": lambda t: t in {"}", ")", "]"},
    "eol": lambda t: t == ";\n",
    "keywords": lambda t: t in JAVA_KEYWORDS,
    "mathematical_operators": lambda t: t in {"+", "-", "*", "/", "%", "++", "--"},
    "boolean_operators": lambda t: t in {"==", "!=", "&&", "||", "!"},
    "assignment_operators": lambda t: t in set(ASSIGN) - {"="},
}


def _naive_identifier_spans(text: str, tree) -> list[tuple[int, int]]:
    """Character spans of every ``identifier`` node, mapped from bytes the slow, plain way."""
    data = text.encode("utf-8")
    out, stack = set(), [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "identifier":
            out.add((len(data[:node.start_byte].decode()), len(data[:node.end_byte].decode())))
        stack.extend(node.children)
    return sorted(out)


def check_spans(text: str, tree) -> dict[str, list[tuple[int, int]]]:
    """Every task's spans, each checked to lie on the text and be that task's kind."""
    found = {}
    for task in SPAN_TASKS:
        spans = find_spans(task, text, tree)
        assert spans == sorted(set(spans)), task
        for start, end in spans:
            assert 0 <= start < end <= len(text), (task, start, end)
            assert KIND[task](text[start:end]), (task, text[start:end])
        found[task] = spans
    assert found["identifiers"] == _naive_identifier_spans(text, tree)
    names = set(found["identifiers"])
    assert set(found["function_call"]) <= names and set(found["function_name"]) <= names
    return found


# --- parse_java and find_spans --------------------------------------------------------------


@settings(max_examples=100, **SETTINGS)
@given(text=java_files())
@example(text="class Café {\r\n\tint 変数 = 1;\r\n\tboolean _$x = true;\r\n}\r\n")
@example(text="interface Shape { double area(); }")
@example(text="enum Color { RED, GREEN }")
@example(text="int x = 1;\nx += 2;\n")
@example(text='class L { String s = "' + "x" * 5000 + '"; int n = s.length() + 1; }\n')
def test_generated_java_parses_and_every_span_is_its_tasks(text):
    tree = parse_java(text)
    assert tree is not None, text
    found = check_spans(text, tree)
    # eol: exactly the ";" tokens before "\n", never before "\r\n"
    assert all(text[s:e] == ";\n" for s, e in found["eol"])
    if ";\n" not in text:
        assert found["eol"] == []


@settings(max_examples=150, **SETTINGS)
@given(text=st.one_of(any_text, mutated_java()))
@example(text="\ud800")
@example(text="class A { String s = \"\ud800\"; }")
@example(text="")
@example(text="\x00")
def test_parse_java_never_raises_and_spans_hold_on_any_text(text):
    tree = parse_java(text)
    event(f"parsed: {tree is not None}")
    if tree is None:
        return
    assert not tree.root_node.has_error
    text.encode("utf-8")  # a tree only for encodable text
    check_spans(text, tree)


@pytest.mark.parametrize("text", ["class A {} // \x00", 'class A { String s = "\x00"; }',
                                  "/* \x00 */ class A {}", "class A {}\n\x00"])
def test_nul_never_parses(text):
    """tree-sitter takes NUL for the end of the input, so a file holding one has an error
    wherever the NUL is (the corpus skips such files as binary anyway)."""
    assert parse_java(text) is None


def test_lone_surrogates_never_parse():
    assert parse_java("\ud800") is None
    assert parse_java("class A { String s = \"\udfff\"; }") is None


@pytest.mark.parametrize(("text", "task", "expected"), [
    ("class Café { int 変数 = 1; boolean _$x = true; }", "identifiers", ["Café", "変数", "_$x"]),
    ("class A {\r\n\tint x = 1;\r\n\tint y = 2;\n}\r\n", "eol", [";\n"]),
    ("class A {\r\n\tint x = 1;\r\n}", "keywords", ["class", "int"]),
    ("interface I { boolean ok(); default int f() { return -1 % 2; } }", "mathematical_operators",
     ["-", "%"]),
    ("enum E { A, B; boolean f() { return true && !false; } }", "boolean_literals", ["true", "false"]),
    ("x += 1;\ny -= x;\n", "assignment_operators", ["+=", "-="]),
    ('String s = "' + "é" * 5000 + '"; int n = s.length();', "function_call", ["length"]),
    ('String s = "' + "é" * 5000 + '"; int n = 1;', "numeric_literals", ["1"]),
])
def test_odd_but_valid_files(text, task, expected):
    tree = parse_java(text)
    assert tree is not None
    assert [text[s:e] for s, e in find_spans(task, text, tree)] == expected


# --- prompts ------------------------------------------------------------------------------


def _bytes_of(tokenizer, ids: list[int]) -> bytes:
    """The text bytes behind token ids (byte-level BPE; control tokens as their own text)."""
    decoder = {c: b for b, c in _bytes_to_unicode().items()}
    special = set(tokenizer.all_special_ids)
    out = b""
    for i, token in zip(ids, tokenizer.convert_ids_to_tokens(ids)):
        out += token.encode() if i in special else bytes(decoder[c] for c in token)
    return out


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte <-> printable character table of the byte-level tokenizers."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@st.composite
def text_and_span(draw, tokenizer) -> tuple[str, int, int]:
    """A generated file and a span to mask: a task's target, random tokens, or any range."""
    text = draw(java_files().filter(str.strip))
    tree = parse_java(text)
    assert tree is not None
    candidates = [s for task in SPAN_TASKS for s in find_spans(task, text, tree)]
    how = draw(st.sampled_from(["task", "random", "any"]))
    if how == "task" and candidates:
        return text, *draw(st.sampled_from(candidates))
    if how == "random" and text:
        found = random_token_span(tokenizer, text, random.Random(draw(st.integers(0, 2**32))))
        if found:
            return text, *found
    start = draw(st.integers(0, max(0, len(text) - 1)))
    return text, start, draw(st.integers(start + 1, max(start + 1, min(len(text), start + 40))))


@settings(max_examples=70, **SETTINGS)
@given(data=st.data(), window=st.sampled_from([8, 16, 32, 64, 256]), fim=st.booleans())
def test_prompts_mask_exactly_the_span(tiny_tokenizer, data, window, fim):
    tok = tiny_tokenizer
    text, start, end = data.draw(text_and_span(tok), label="text and span")
    assert 0 <= start < end <= len(text)
    ids = special_ids(tok) if fim else SpecialIds(eos=special_ids(tok).eos)
    target = text[start:end]
    before, after = text[:start].encode(), text[end:].encode()

    w = build_window(tok, text, start, end, window, ids)
    p = build_prompt(tok, text, start, end, window, ids)
    for prompt in ([w] if w is not None else []) + [p]:
        assert tok.decode(prompt.target_ids) == target
        assert _bytes_of(tok, prompt.target_ids) == target.encode()
        assert before.endswith(_bytes_of(tok, prompt.prefix_ids))
        assert after.startswith(_bytes_of(tok, prompt.suffix_ids))
        if fim:
            assert prompt.input_ids == [ids.prefix, *prompt.prefix_ids, ids.suffix,
                                        *prompt.suffix_ids, ids.middle]
        else:
            assert prompt.input_ids == prompt.prefix_ids and prompt.suffix_ids == []
    event(f"window {'built' if w is not None else 'None: file too short'}")
    if w is not None:
        assert len(w.input_ids) == window
        assert p == w
    assert len(p.input_ids) <= window


@settings(max_examples=100, **SETTINGS)
@given(text=st.one_of(java_files(), st.text(min_size=1, max_size=300)), seed=st.integers(0, 2**32))
def test_random_token_span_is_on_the_text(tiny_tokenizer, text, seed):
    found = random_token_span(tiny_tokenizer, text, random.Random(seed))
    if found is not None:
        start, end = found
        assert 0 <= start < end <= len(text) and text[start:end].strip()


# --- locate (what /api/predict asks for) ------------------------------------------------------

TASK_NAMES = st.sampled_from([*SCENARIO_TASKS, "nope", ""])


@settings(max_examples=150, **SETTINGS)
@given(code=st.one_of(java_files(), mutated_java(), any_text), data=st.data())
def test_locate_gives_a_span_on_the_code_or_a_live_error(tiny_tokenizer, code, data):
    """One way to name the span (offsets near the code), or any mix of them."""
    near = st.integers(-2, len(code) + 2)
    how = data.draw(st.sampled_from(["span", "task", "cursor", "anything"]), label="how")
    ask = {"start": None, "end": None, "task": None, "cursor": None}
    if how == "span":
        ask["start"] = data.draw(near, label="start")
        ask["end"] = data.draw(st.one_of(near, st.integers(ask["start"] + 1, ask["start"] + 12)),
                               label="end")
    elif how == "task":
        ask["task"] = data.draw(TASK_NAMES, label="task")
    elif how == "cursor":
        ask["cursor"] = data.draw(near, label="cursor")
    else:
        for name in ("start", "end", "cursor"):
            ask[name] = data.draw(st.one_of(st.none(), near, st.integers()), label=name)
        ask["task"] = data.draw(st.one_of(st.none(), TASK_NAMES), label="task")
    try:
        span = locate(code, tiny_tokenizer, **ask)
    except LiveError as e:
        assert str(e)
        event(f"locate {how}: LiveError")
        return
    event(f"locate {how}: span")
    code.encode("utf-8")  # a span only on valid text: the model's tokenizer needs it
    assert 0 <= span.start <= span.end <= len(code)
    if span.target is None:
        assert span.start == span.end == ask["cursor"]
    else:
        assert span.start < span.end and code[span.start:span.end] == span.target
        assert span.target.strip()
    if ask["task"] is not None:
        assert span.task == ask["task"]
        if span.task in KIND:
            assert KIND[span.task](span.target)


@pytest.mark.parametrize("ask", [{"cursor": 3}, {"start": 0, "end": 5}, {"task": "random"},
                                 {"task": "identifiers"}])
def test_locate_refuses_lone_surrogates(tiny_tokenizer, ask):
    """JSON can carry "\\ud800" into the code; the tokenizer cannot encode it."""
    with pytest.raises(LiveError, match="surrogate"):
        locate("class A { int x = 1; }\ud800", tiny_tokenizer, **ask)


# --- mine ---------------------------------------------------------------------------------


@settings(max_examples=12, **SETTINGS)
@given(files=st.lists(java_files().filter(str.strip), min_size=1, max_size=3), seed=st.integers(0, 3))
def test_mined_scenarios_mask_the_files_text(tiny_tokenizer, files, seed):
    tok = tiny_tokenizer
    with tempfile.TemporaryDirectory() as root:
        for i, text in enumerate(files):
            folder = Path(root) / f"p{i}"
            folder.mkdir()
            # newline="" keeps CRLF as generated
            (folder / f"F{i}.java").write_text(text, encoding="utf-8", newline="")
        texts = {f"p{i}/F{i}.java": t for i, t in enumerate(files)}
        tasks = [t for t in SCENARIO_TASKS if t != "noise"]
        for s in mine(root, tok, tasks=tasks, per_task=2, seed=seed, window=32):
            text = texts[s.path]
            assert text[s.start:s.end] == s.target and s.target
            assert len(s.input_ids) == s.window == 32
            assert tok.decode(s.target_ids) == s.target
            if s.task in KIND:
                assert KIND[s.task](s.target)


def test_control_token_text_in_code_stays_text(tiny_tokenizer):
    text = 'class A {\n    String s = "<fim_middle><|endoftext|>";\n    int x = 1;\n}\n'
    start = text.index("x = 1")
    p = build_prompt(tiny_tokenizer, text, start, start + 1, 64)
    special = set(tiny_tokenizer.all_special_ids)
    assert not special & set(p.prefix_ids + p.suffix_ids + p.target_ids)
