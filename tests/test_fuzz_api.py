"""Bad input, fuzzed: the explorer's JSON API driven from its own OpenAPI schema.

Schemathesis generates requests for every operation in ``/openapi.json`` (schema-valid ones
and, where an operation has parameters or a body, schema-violating ones), sends them to the
app on the tiny built run and checks each answer: never a 5xx, a documented status code and
content type, a body that conforms to the documented schema, and a 4xx for invalid input.
Generation is derandomized (the same cases on every run) and bounded: about 700 cases, at
least 500 asserted.

Random strings rarely hit a stored scenario, a cluster id or a live result, so many of the
schema-valid cases get a real one in its place (and POST bodies real Java with a span inside
it): the fuzzing then reaches the code behind the 404s, and the model runs. Requests go through
schemathesis' own in-process client for the app (the requests it means to send, exactly).

Then written cases: odd but valid Java (unicode identifiers, CRLF, tabs, a long line, files
without a class) through ``/api/predict`` gets an answer; code the model cannot take (a lone
surrogate, a span beyond its context) gets a 422 that says why.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python.asgi import ASGIClient

from server.app import create_app
from server.settings import Settings
from server.state import Explorer

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]

#: Generated cases per operation and mode; the model-running POSTs cost ~10-50 ms a case.
EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 20}
MIN_CASES = 500

BASE_URL = "http://testserver"
#: Explicit, so that no schemathesis.toml found around changes the run. Any 4xx rejects invalid
#: data: the default list lacks 413, which a 4,097-entry ``ablate`` rightly gets.
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": ["4xx", "5xx"]}}})


def _operations() -> list[tuple[str, str, bool]]:
    """``(method, path, negatable)`` of every operation the app documents (no run needed: the
    schema does not depend on the run). Negative data needs something to violate: a body or a
    parameter that is not any string (every string is a valid ``key``)."""
    spec = create_app(Settings(run="schema-only", database_url="sqlite://")).openapi()
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            typed = [p for p in op.get("parameters", []) if p["schema"].get("type") != "string"]
            out.append((method.upper(), path, bool(typed or op.get("requestBody"))))
    return out


OPERATIONS = _operations()
PLAN = [pytest.param(m, p, mode, id=f"{m} {p} {mode.value}")
        for m, p, negatable in OPERATIONS
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if negatable or mode is GenerationMode.POSITIVE]
#: Cases sent, by (method, path, mode); checked by the last test of the file.
SENT: collections.Counter = collections.Counter()
#: Status codes answered, by (method, path).
STATUS: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
TIMES: dict[str, float] = {}

JAVA = [
    (Path(__file__).parent / "fixtures" / "snippets" / "Totals.java").read_text(),
    "class Café {\r\n\tint 変数 = 1;\r\n\tboolean _$x = true;\r\n\tint f() { return 変数 + 2; }\r\n}\r\n",
    "interface Shape {\n    double area();\n    default boolean big() { return area() > 10.0; }\n}\n",
    "enum Color { RED, GREEN; Color next() { return this == RED ? GREEN : RED; } }\n",
    "int x = 1;\nx += 2;\nSystem.out.println(x);\n",
    "class Long { String s = \"" + "a" * 600 + "\"; int n = s.length(); }\n",
    "}{ not java at all ;; \u00e9\u0000\ud7ff",
]


class Api:
    def __init__(self, schema, session: ASGIClient, values: dict[str, list]) -> None:
        self.schema, self.session, self.values = schema, session, values


@pytest.fixture(scope="module")
def api(explorer_run):
    run, url = explorer_run
    settings_ = Settings(run=run.name, database_url=url, max_code_bytes=4096, max_body_bytes=16384)
    app = create_app(settings_, Explorer.load(settings_, run=run))
    # The TestClient runs the app's lifespan (it sets app.state.explorer); schemathesis' requests
    # then go through its own in-process ASGI client, not entered, so that schemathesis neither
    # starts nor (at the end of each test) stops a second lifespan that would shut the pool.
    with TestClient(app) as client:
        assert isinstance(app.state.explorer, Explorer) and app.state.explorer.atlas is not None
        schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json(), config=CONFIG)
        cluster_ids = [c["id"] for h in ((0, 0), (1, 2))
                       for c in client.get(f"/api/heads/{h[0]}/{h[1]}").json()["clusters"]]
        live = client.post("/api/intervene", json={"code": JAVA[0], "cursor": 40, "ablate": [[0, 1]]})
        assert live.status_code == 200, live.text
        values = {"key": sorted(r["id"] for r in run.results())[:8], "cluster_id": cluster_ids,
                  "rid": [live.json()["id"]], "layer": [0, 1], "head": [0, 1, 2, 3],
                  "task": ["identifiers", "eol", "random", "noise", "boolean_literals", "nope"]}
        yield Api(schema, ASGIClient(app), values)


def _guide(case, data, values: dict[str, list]) -> None:
    """Swap generated values for real ones: half of the time the path's key, id and head all
    at once; two times in three a POST body for Java code with one way to name the span
    (cursor, start and end, or task) and, for intervene, existing heads to ablate."""
    params = case.path_parameters or {}
    if any(name in values for name in params) and data.draw(st.booleans(), label="real path"):
        for name in params:
            if name in values:
                params[name] = data.draw(st.sampled_from(values[name]), label=name)
    body = case.body
    if not isinstance(body, dict) or not data.draw(st.integers(0, 2), label="real body"):
        return
    code = data.draw(st.sampled_from(JAVA), label="code")
    for name in ("code", "start", "end", "task", "cursor"):
        body.pop(name, None)
    body["code"] = code
    how = data.draw(st.sampled_from(["cursor", "span", "task"]), label="how")
    if how == "cursor":
        body["cursor"] = data.draw(st.integers(0, len(code)), label="cursor")
    elif how == "span":
        body["start"] = data.draw(st.integers(0, len(code) - 1), label="start")
        body["end"] = data.draw(st.integers(body["start"] + 1, min(len(code), body["start"] + 12)),
                                label="end")
    else:
        body["task"] = data.draw(st.sampled_from(values["task"]), label="task")
    if "ablate" in body and data.draw(st.integers(0, 3), label="real ablate"):
        heads = st.tuples(st.sampled_from(values["layer"]), st.sampled_from(values["head"]))
        body["ablate"] = [list(h) for h in data.draw(st.lists(heads, min_size=1, max_size=4,
                                                              unique=True), label="ablate")]


@pytest.mark.parametrize(("method", "path", "mode"), PLAN)
def test_operation_survives_fuzzing(api, method, path, mode):
    operation = api.schema[path][method]
    key = (method, path, mode.value)
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

    @settings(max_examples=EXAMPLES[mode], derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large], print_blob=True)
    @given(case=operation.as_strategy(mode), data=st.data())
    def fuzz(case, data):
        if mode is GenerationMode.POSITIVE:
            _guide(case, data, api.values)
        SENT[key] += 1
        response = case.call_and_validate(base_url=BASE_URL, session=api.session, checks=checks)
        STATUS[method, path][response.status_code] += 1

    began = time.perf_counter()
    fuzz()
    TIMES[" ".join(key)] = time.perf_counter() - began
    assert SENT[key] >= 1


@pytest.mark.parametrize("code", JAVA[:6], ids=["plain", "unicode-crlf-tabs", "interface", "enum",
                                                 "statements", "long-line"])
@pytest.mark.parametrize("how", ["cursor", "span", "task"])
def test_odd_but_valid_java_gets_an_answer(api, code, how):
    """Each odd input is completed (200) at a cursor, a span or a task's span, and the answer
    conforms to the schema."""
    middle = len(code) // 2
    start = next(i for i in range(middle, len(code)) if code[i].strip())
    body = {"cursor": {"code": code, "cursor": middle},
            "span": {"code": code, "start": start, "end": start + 1},
            "task": {"code": code, "task": "identifiers"}}[how]
    operation = api.schema["/api/predict"]["POST"]
    response = operation.Case(body=body).call_and_validate(base_url=BASE_URL, session=api.session,
                                                           checks=CHECKS)
    SENT[("POST", "/api/predict", "odd")] += 1
    assert response.status_code == 200, response.text
    out = response.json()
    assert code[out["start"]:out["end"]] == (out["target"] or "")
    assert len(out["tokens"]) <= out["window"]


@pytest.mark.parametrize(("body", "message"), [
    # JSON may escape a lone surrogate, and pydantic lets it through into ``code``.
    ({"code": JAVA[0] + "\ud800", "cursor": 3}, "surrogate"),
    ({"code": "class A { String s = \"\udc00\"; }", "task": "random"}, "surrogate"),
    ({"code": "class A { String s = \"\udc00\"; }", "task": "identifiers"}, "surrogate"),
    # A span of more tokens than the model can generate after the prompt: 4,000 tokens of the
    # tiny tokenizer (no merges for this pair), whose model has 2048 positions.
    ({"code": "~`" * 2000, "start": 0, "end": 4000}, "context"),
], ids=["surrogate-cursor", "surrogate-random", "surrogate-task", "span-beyond-context"])
def test_unservable_code_gets_a_clear_4xx(api, body, message):
    operation = api.schema["/api/predict"]["POST"]
    response = operation.Case(body=body).call_and_validate(base_url=BASE_URL, session=api.session,
                                                           checks=CHECKS)
    SENT[("POST", "/api/predict", "bad")] += 1
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_enough_cases_were_fuzzed():
    """Every operation was fuzzed, with at least MIN_CASES generated cases in all."""
    ran = {(m, p, mode.value) for m, p, mode in (x.values for x in PLAN)}
    if not ran <= set(SENT):
        pytest.skip("run the whole file to count the cases")
    total = sum(SENT[k] for k in ran)
    slowest = sorted(TIMES.items(), key=lambda kv: -kv[1])[:3]
    print(f"\n{total} generated cases over {len(OPERATIONS)} operations (and {sum(SENT.values()) - total} "
          f"written ones); slowest: {slowest}")
    for (m, p), counts in STATUS.items():
        print(f"  {m} {p}: {dict(sorted(counts.items()))}")
    assert total >= MIN_CASES
    # The guidance works: every operation answered some case with success, not only errors.
    assert all(any(200 <= c < 300 for c in STATUS[m, p]) for m, p, _ in OPERATIONS), STATUS
