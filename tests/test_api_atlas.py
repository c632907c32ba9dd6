"""The atlas API as a research instrument (issue 18): clusters described and enriched, filters
that recount them, mean and difference patterns, similar heads within and across runs,
ablations with top-k tokens and per-head pattern changes, scenarios sorted, searched in their
code and exported whole, and an OpenAPI schema that types every JSON answer."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from apmae.atlas.describe import METRICS, pattern_metrics
from apmae.store.format import unpack_lower_triangle
from apmae.db import models as m
from apmae.db.session import migrated_engine, session_scope
from apmae.store.arrays import ArrayStore, StoreMeta
from server.app import create_app
from server.settings import Settings
from server.state import Explorer

CODE = (Path(__file__).parent / "fixtures" / "snippets" / "Totals.java").read_text()


@pytest.fixture(scope="module")
def client(explorer_run):
    run, url = explorer_run
    settings = Settings(run=run.name, database_url=url)
    with TestClient(create_app(settings, Explorer.load(settings, run=run))) as c:
        yield c


def test_openapi_types_every_json_answer(tmp_path):
    """Every route's 200 JSON body names a schema (a model, or an array of one)."""
    app = create_app(Settings(run="none", database_url=f"sqlite:///{tmp_path / 'x.db'}"))
    untyped = []
    for path, ops in app.openapi()["paths"].items():
        for method, op in ops.items():
            schema = op["responses"].get("200", {}).get("content", {}).get("application/json")
            if schema is None:
                continue
            s = schema.get("schema", {})
            if "$ref" not in s and "$ref" not in s.get("items", {}):
                untyped.append(f"{method.upper()} {path}")
    assert not untyped, untyped


def _kept(run, layer: int, head: int, keys: list[str]) -> np.ndarray:
    store = run.pattern_store()
    return np.stack([np.asarray(store.get(k, layer, head)) for k in keys])


def test_head_and_clusters_are_described(client, explorer_run):
    run, _ = explorer_run
    body = client.get("/api/heads/1/2").json()
    clusters = body["clusters"]
    assert body["metrics"]["n"] == sum(c["size"] for c in clusters)  # every pattern is kept here
    assert sum(c["metrics"]["n"] for c in clusters) == body["metrics"]["n"]
    assert isinstance(body["description"], str) and body["matching_total"] is None
    c = clusters[0]
    assert c["matching"] is None and isinstance(c["description"], str)
    members = client.get("/api/scenarios", params={"layer": 1, "head": 2, "cluster": c["label"],
                                                   "limit": 500}).json()["items"]
    keys = [s["key"] for s in members]
    ids = [next(json.loads(l) for l in run.scenarios_path.open() if json.loads(l)["id"] == k)["input_ids"]
           for k in keys]
    direct = np.nanmean(pattern_metrics(_kept(run, 1, 2, keys), ids), 0)
    for i, name in enumerate(METRICS):
        if name != "induction":
            assert c["metrics"][name] == pytest.approx(direct[i], rel=1e-4, abs=1e-6), name
    sizes = {x["label"]: x["size"] for x in clusters}
    for task, test in c["enrichment"]["tasks"].items():
        assert test["count"] == c["by_task"].get(task, 0)
        assert test["share"] == pytest.approx(test["count"] / c["size"])
        total = sum(x["by_task"].get(task, 0) for x in clusters)
        assert test["base"] == pytest.approx(total / sum(sizes.values()))
        assert test["q"] >= test["p"] and test["mark"] in ("", "*", "**", "***")
    assert c["enrichment"]["correct"]["count"] == c["by_correct"]["correct"]
    bare = client.get("/api/heads/1/2", params={"metrics": False}).json()
    assert bare["metrics"] is None and bare["clusters"][0]["metrics"] is None
    detail = client.get(f"/api/clusters/{c['id']}").json()
    assert detail["metrics"] == c["metrics"] and detail["description"] == c["description"]


def test_filters_recount_the_cards(client):
    points = client.get("/api/heads/0/1/map").json()["points"]
    task = points[0]["task"]
    body = client.get("/api/heads/0/1", params={"task": task, "correct": True}).json()
    wanted = [p for p in points if p["task"] == task and p["correct"]]
    assert body["matching_total"] == len(wanted)
    for c in body["clusters"]:
        assert c["matching"] == sum(p["cluster"] == c["label"] for p in wanted)
    mapped = client.get("/api/heads/0/1/map", params={"task": task, "correct": True}).json()
    assert {x["label"]: x["matching"] for x in mapped["counts"]} == \
        {c["label"]: c["matching"] for c in body["clusters"]}
    assert sum(x["size"] for x in mapped["counts"]) == len(points)


def test_mean_and_difference_patterns(client, explorer_run):
    run, _ = explorer_run
    store = run.pattern_store()
    keys = store.ids()

    def mean_weights(members: list[str]) -> np.ndarray:
        return np.exp(unpack_lower_triangle(_kept(run, 1, 2, members).astype(np.float64))).mean(0)

    mean = client.get("/api/heads/1/2/mean-pattern").json()
    assert mean["n"] == len(keys) and mean["scale"] == "log10" and mean["tokens"] == []
    p = mean_weights(keys)
    assert mean["z"][5][:6] == pytest.approx(np.clip(np.log10(p[5, :6]), -6, 0), abs=0.006)
    assert mean["z"][5][6] is None
    head = client.get("/api/heads/1/2").json()
    c = next(x for x in head["clusters"] if x["label"] >= 0)
    own = client.get("/api/heads/1/2/mean-pattern", params={"cluster": c["label"]}).json()
    members = [s["key"] for s in client.get("/api/scenarios", params={
        "layer": 1, "head": 2, "cluster": c["label"], "limit": 500}).json()["items"]]
    assert own["n"] == c["size"] == len(members)
    assert own["z"][30][:31] == pytest.approx(np.clip(np.log10(mean_weights(members)[30, :31]), -6, 0),
                                              abs=0.006)
    assert client.get("/api/heads/1/2/mean-pattern", params={"cluster": 999}).status_code == 404
    diff = client.get(f"/api/clusters/{c['id']}/difference-pattern").json()
    medoid = np.exp(unpack_lower_triangle(np.asarray(store.get(c["medoid"], 1, 2), np.float64)))
    assert diff["scale"] == "difference" and len(diff["tokens"]) == len(diff["z"])
    assert diff["z"][40][:41] == pytest.approx(medoid[40, :41] - p[40, :41], abs=0.002)
    assert any(v for row in diff["z"] for v in row)  # the medoid is not the mean
    noise = next((x for x in head["clusters"] if x["label"] == -1), None)
    if noise is not None:
        assert client.get(f"/api/clusters/{noise['id']}/difference-pattern").status_code == 404


def _other_run(home: Path, layers: int, heads: int, window: int) -> None:
    """A run of another shape with only what the profile measure reads: run.json, one
    scenario (its window), and per-scenario whole-pattern and predicting-row statistics."""
    root = home / "runs" / "wide"
    root.mkdir(parents=True)
    (root / "scenarios.jsonl").write_text(json.dumps({
        "id": "s0", "task": "eol", "path": "p9/A.java", "split": "train", "start": 0, "end": 1,
        "target": ";", "prefix": "", "suffix": "", "input_ids": list(range(window)),
        "target_ids": [1], "tokenizer": "x", "window": window}) + "\n")
    (root / "run.json").write_text(json.dumps({"model": "other", "layers": layers, "heads": heads,
                                               "scenarios": str(root / "scenarios.jsonl")}))
    rng = np.random.default_rng(0)
    for name, width in (("pattern_stats", 4), ("row_stats", 10)):
        store = ArrayStore(root / name, StoreMeta(layers=layers, heads=heads, window=0, model="other",
                                                    dtype="float32", width=width))
        store.append(["s0", "s1"], rng.random((2, layers, heads, width), np.float32))


def test_similar_heads_within_and_across_runs(client, explorer_run):
    run, _ = explorer_run
    body = client.get("/api/heads/1/1/similar", params={"k": 3}).json()
    assert body["by"] == "embedding" and body["other_run"] == run.name and len(body["items"]) == 3
    assert (1, 1) not in {(i["layer"], i["head"]) for i in body["items"]}
    distances = [i["distance"] for i in body["items"]]
    assert distances == sorted(distances)
    every = client.get("/api/heads/1/1/similar", params={"k": 200, "by": "profile"}).json()
    assert len(every["items"]) == 7 and every["by"] == "profile"
    home = Path(os.environ["APMAE_HOME"])
    shutil.copytree(run.path, home / "runs" / "copy", ignore=shutil.ignore_patterns("patterns"))
    same = client.get("/api/heads/1/1/similar", params={"run": "copy", "k": 2}).json()
    assert same["by"] == "embedding" and same["other_run"] == "copy"  # one AP-MAE: comparable
    assert (same["items"][0]["layer"], same["items"][0]["head"]) == (1, 1)
    assert same["items"][0]["distance"] == pytest.approx(0, abs=1e-6)
    _other_run(home, layers=3, heads=6, window=32)
    wide = client.get("/api/heads/1/1/similar", params={"run": "wide", "k": 4}).json()
    assert wide["by"] == "profile" and wide["other_n"] == 2 and len(wide["items"]) == 4
    assert all(0 <= i["layer"] < 3 and 0 <= i["head"] < 6 for i in wide["items"])
    for params, status, message in [({"run": "wide", "by": "embedding"}, 404, "encode"),
                                    ({"run": "nope"}, 404, "no extracted run"),
                                    ({"run": "../x"}, 422, "not a run name"),
                                    ({"k": 0}, 422, "k")]:
        response = client.get("/api/heads/1/1/similar", params=params)
        assert response.status_code == status and message in response.json()["detail"], response.text
    assert client.get("/api/heads/9/0/similar").status_code == 404
    # embeddings of another AP-MAE: not comparable by embedding, still by profile
    width = ArrayStore(run.path / "embeddings").meta.width
    ArrayStore(home / "runs" / "wide" / "embeddings", StoreMeta(
        layers=3, heads=6, window=0, model="another-mae", width=width)).append(
        ["s0"], np.ones((1, 3, 6, width), np.float16))
    response = client.get("/api/heads/1/1/similar", params={"run": "wide", "by": "embedding"})
    assert response.status_code == 422 and "different AP-MAEs" in response.json()["detail"]
    assert client.get("/api/heads/1/1/similar", params={"run": "wide"}).json()["by"] == "profile"


def test_intervene_explains_the_change(client):
    start = CODE.index("total +=") + len("total ")
    request = {"code": CODE, "start": start, "end": start + 2}
    body = client.post("/api/intervene", json={**request, "ablate": [[0, 0], [0, 2]]}).json()
    before, after = body["baseline"], body["ablated"]
    for outcome in (before, after):
        top = outcome["top_k"]
        assert len(top) == 10 and [t["prob"] for t in top] == sorted((t["prob"] for t in top), reverse=True)
        assert top[0]["token"] == outcome["first_token"]
        assert outcome["target_first_logprob"] == pytest.approx(math.log(outcome["target_first_prob"]))
    assert body["target_logprob_change"] == pytest.approx(
        after["target_first_logprob"] - before["target_first_logprob"])
    heads = {(h["layer"], h["head"]): h for h in body["heads"]}
    assert {k for k, h in heads.items() if h["ablated"]} == {(0, 0), (0, 2)}
    # ablation acts on a head's output: layer 0's patterns stay, layer 1's move
    assert all(heads[(0, h)]["pattern_change"] == 0 for h in range(4))
    assert all(heads[(1, h)]["pattern_change"] > 0 for h in range(4))
    moved = heads[(1, 3)]
    diff = client.get(moved["difference_pattern_url"]).json()
    assert diff["scale"] == "difference"
    tv = np.mean([sum(abs(v) for v in row if v is not None) / 2 for row in diff["z"]])
    assert tv == pytest.approx(moved["pattern_change"], abs=0.01)
    still = client.get(heads[(0, 1)]["difference_pattern_url"]).json()
    assert all(v in (0, None) for row in still["z"] for v in row)
    assert client.get(heads[(1, 0)]["ablated_pattern_url"]).status_code == 200
    plain = client.post("/api/predict", json=request).json()
    assert [t["token_id"] for t in plain["top_k"]] == [t["token_id"] for t in before["top_k"]]
    assert [t["prob"] for t in plain["top_k"]] == pytest.approx([t["prob"] for t in before["top_k"]])
    missing = client.get(f"/api/live/{plain['id']}/heads/0/0/pattern", params={"which": "difference"})
    assert missing.status_code == 404 and "intervene" in missing.json()["detail"]


def test_scenarios_sort_and_search_in_code(client, explorer_run):
    run, _ = explorer_run
    page = client.get("/api/scenarios", params={"sort": "target", "order": "desc", "limit": 500}).json()
    targets = [s["target"] for s in page["items"]]
    assert targets == sorted(targets, reverse=True) and page["sort"] == "target"
    for column in ("path", "logprob_target_first", "correct_first_token"):
        assert client.get("/api/scenarios", params={"sort": column}).status_code == 200
    assert client.get("/api/scenarios", params={"sort": "nope"}).status_code == 422
    assert client.get("/api/scenarios", params={"order": "up"}).status_code == 422
    rows = [json.loads(l) for l in run.scenarios_path.read_text().splitlines() if l.strip()]
    results = {r["id"]: r for r in run.results()}
    s = next(r for r in rows if len(r["prefix"]) > 80 and r["id"] in results)
    needle = s["prefix"][40:70]
    assert needle not in s["path"] + s["target"] + results[s["id"]]["completion"]
    found = client.get("/api/scenarios", params={"q": needle.upper(), "limit": 500}).json()
    expected = {r["id"] for r in rows if r["id"] in results and
                needle.casefold() in (r["prefix"] + "\x00" + r["suffix"]).casefold()}
    assert s["id"] in expected and expected <= {x["key"] for x in found["items"]}


def test_export_carries_every_row_and_asked_clusters(client):
    every = client.get("/api/scenarios", params={"limit": 1}).json()["total"]
    response = client.get("/api/scenarios/export", params={"heads": "L0H1,L1H2", "sort": "key"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == every and list(rows[0])[-2:] == ["L0H1", "L1H2"]
    assert [r["key"] for r in rows] == sorted(r["key"] for r in rows)
    detail = client.get(f"/api/scenarios/{rows[0]['key']}").json()
    labels = {(h["layer"], h["head"]): h["cluster"] for h in detail["heads"]}
    assert int(rows[0]["L0H1"]) == labels[(0, 1)] and int(rows[0]["L1H2"]) == labels[(1, 2)]
    heldout = [r for r in rows if r["split"] == "test" and r["task"] != "noise"]
    assert heldout and all(0 <= float(r["predicted_correct"]) <= 1 for r in heldout)
    assert all(r["predicted_correct"] == "" for r in rows if r not in heldout)
    scored = client.get("/api/scenarios", params={"sort": "predicted_correct", "order": "desc"}).json()
    assert scored["items"][0]["predicted_correct"] == max(float(r["predicted_correct"]) for r in heldout)
    task = rows[0]["task"]
    as_json = client.get("/api/scenarios/export", params={"format": "json", "task": task}).json()
    assert len(as_json) == sum(r["task"] == task for r in rows) and all(r["task"] == task for r in as_json)
    for heads, status in (("L9H9", 404), ("L1-H2", 422), (",".join(["L0H0"] * 65), 422)):
        assert client.get("/api/scenarios/export", params={"heads": heads}).status_code == status


def test_export_of_2000_filtered_scenarios_returns_them_all(tmp_path):
    """Scenario rows inserted straight into a fresh database: an export filtered to 2,000 of
    2,500 scenarios streams all 2,000, as CSV and as JSON."""
    url = f"sqlite:///{tmp_path / 'bulk.db'}"
    engine = migrated_engine(url)
    with session_scope(engine) as session:
        run = m.Run(name="bulk", model="x", tokenizer="x", window=64, layers=1, heads=1, settings={})
        session.add(run)
        session.flush()
        session.execute(m.Scenario.__table__.insert(), [
            {"run_id": run.id, "key": f"s{i:05d}", "task": "eol" if i % 5 else "identifiers",
             "path": f"p9/F{i}.java", "split": "test", "start": 0, "end": 1, "target": ";",
             "completion": ";" if i % 2 else "}", "correct_exact": bool(i % 2),
             "correct_first_token": bool(i % 2), "logprob_target_first": -0.1}
            for i in range(2500)])
    with TestClient(create_app(Settings(run="bulk", database_url=url))) as c:
        csv_rows = list(csv.DictReader(io.StringIO(
            c.get("/api/scenarios/export", params={"task": "eol", "q": "java"}).text)))
        assert len(csv_rows) == 2000 and len({r["key"] for r in csv_rows}) == 2000
        wrong = c.get("/api/scenarios/export", params={"format": "json", "correct": False,
                                                       "task": "eol"}).json()
        assert len(wrong) == sum(1 for i in range(2500) if i % 5 and not i % 2) == 1000
        assert c.get("/api/scenarios", params={"task": "eol"}).json()["total"] == 2000
