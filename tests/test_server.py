"""The explorer's JSON API on a tiny built run: every resource, predict and intervene, and a
clear 4xx for every kind of bad input."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from apmae.configs import STRATEGIES
from fastapi.testclient import TestClient

from apmae.store.format import unpack_lower_triangle
from server.app import create_app
from server.settings import Settings
from server.state import Busy, Explorer, InferencePool

CODE = (Path(__file__).parent / "fixtures" / "snippets" / "Totals.java").read_text()


@pytest.fixture(scope="module")
def client(explorer_run):
    run, url = explorer_run
    settings = Settings(run=run.name, database_url=url, max_code_bytes=4096, max_body_bytes=16384)
    with TestClient(create_app(settings, Explorer.load(settings, run=run))) as c:
        yield c


def test_health_and_overview(client, explorer_run):
    run, _ = explorer_run
    assert client.get("/api/health").json() == {"status": "ok", "run": run.name, "ready": True,
                                                 "problem": None, "queue": 0}
    body = client.get("/api/run").json()
    assert body["missing"] == [] and body["layers"] == 2 and body["heads"] == 4
    assert body["window"] == 64
    report = body["report"]
    assert {"scenarios", "clusters", "predictor", "sweep"} <= set(report)
    assert set(body["tasks"]) == {r["task"] for r in run.results()}


def test_grid_head_map_and_cluster(client, explorer_run):
    run, _ = explorer_run
    n = len(list(run.results()))
    grid = client.get("/api/heads").json()
    assert [(h["layer"], h["head"]) for h in grid] == [(l, h) for l in range(2) for h in range(4)]
    assert all(h["importance"] is not None for h in grid)
    head = client.get("/api/heads/1/2").json()
    assert sum(c["size"] for c in head["clusters"]) == n
    points = client.get("/api/heads/1/2/map").json()["points"]
    assert len(points) == n and {"x", "y", "cluster", "key", "task", "correct"} <= set(points[0])
    task = next(p["task"] for p in points if p["correct"] is False)
    only = client.get("/api/heads/1/2/map", params={"task": task, "correct": False}).json()["points"]
    assert only and all(p["task"] == task and p["correct"] is False for p in only)
    assert len(only) == sum(p["task"] == task and p["correct"] is False for p in points)
    cluster = head["clusters"][0]
    detail = client.get(f"/api/clusters/{cluster['id']}", params={"limit": 3}).json()
    assert (detail["layer"], detail["head"], detail["size"]) == (1, 2, cluster["size"])
    assert len(detail["members"]) == min(3, cluster["size"])
    assert client.get("/api/heads/7/0").status_code == 404
    assert client.get("/api/clusters/999999").status_code == 404


def test_scenarios_filters_and_patterns(client, explorer_run):
    run, _ = explorer_run
    rows = list(run.results())
    page = client.get("/api/scenarios", params={"limit": 5}).json()
    assert page["total"] == len(rows) and len(page["items"]) == 5
    task = rows[0]["task"]
    by_task = client.get("/api/scenarios", params={"task": task, "limit": 500}).json()
    assert by_task["total"] == sum(r["task"] == task for r in rows)
    key = rows[0]["id"]
    cluster = client.get("/api/heads/0/1").json()["clusters"][0]
    member = client.get("/api/scenarios", params={"layer": 0, "head": 1, "cluster": cluster["label"],
                                                  "limit": 500}).json()
    assert member["total"] == cluster["size"] == len(member["items"])
    assert client.get("/api/scenarios", params={"cluster": 0}).status_code == 422
    detail = client.get(f"/api/scenarios/{key}").json()
    assert detail["key"] == key and len(detail["heads"]) == 8 and detail["prefix"] is not None
    pattern = client.get(f"/api/scenarios/{key}/heads/1/3/pattern").json()
    z = pattern["z"]
    assert len(z) == 64 == len(pattern["tokens"]) and z[0][1] is None and z[63][0] is not None
    stored = unpack_lower_triangle(np.asarray(run.pattern_store().get(key))[1, 3])
    expected = np.clip(stored[1, :2].astype(np.float64) / np.log(10), -6, 0)  # row 1, keys 0 and 1
    assert z[1][:2] == pytest.approx(expected, abs=0.006)
    png = client.get(f"/api/scenarios/{key}/heads/1/3/thumb.png")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    assert client.get("/api/scenarios/nope/heads/0/0/pattern").status_code == 404
    assert client.get(f"/api/scenarios/{key}/heads/0/9/pattern").status_code == 404


def test_sweep(client):
    body = client.get("/api/sweep").json()
    strategies = {p["strategy"] for p in body["points"]}
    assert strategies >= {"none", "causal", "random"}
    assert set(body["collapse"]) == set(STRATEGIES)
    only = client.get("/api/sweep", params={"strategy": "random"}).json()["points"]
    assert {p["strategy"] for p in only} == {"none", "random"}


def test_head_effects_and_interventions(client):
    grid = client.get("/api/heads").json()
    assert all({"causal_accuracy", "causal_accuracy_ci", "suggested_ablation"} <= set(h) for h in grid)
    assert all(h["suggested_ablation"] == (h["causal_accuracy_ci"][0] > 0) for h in grid)
    body = client.get("/api/head-effects").json()
    assert body["task"] == "all" and "all" in body["tasks"]
    assert set(body["measures"]) == {"shap_abs", "shap", "causal_accuracy", "causal_logprob"}
    for rows in body["measures"].values():
        assert len(rows) == len(grid)
        assert all(r["ci"][0] <= r["value"] <= r["ci"][1] and r["n"] > 0 for r in rows)
    task = next(t for t in body["tasks"] if t != "all")
    assert client.get("/api/head-effects", params={"task": task}).json()["task"] == task
    missing = client.get("/api/head-effects", params={"task": "nope"})
    assert missing.status_code == 404 and "tasks:" in missing.json()["detail"]
    section = client.get("/api/interventions").json()
    assert section["verdict"]["paper_claim"] and isinstance(section["verdict"]["reproduced"], bool)
    assert set(section["all"]) >= {"causal", "greedy"}
    some = next(iter(section["by_task"].values()))
    assert set(some["random"]) == {"1", "3"} and all(h.startswith("L") for h in some["causal"]["1"]["heads"])


def test_predict_by_offsets_task_and_cursor(client):
    start = CODE.index("total +=") + len("total ")
    body = client.post("/api/predict", json={"code": CODE, "start": start, "end": start + 2}).json()
    assert body["target"] == "+=" and (body["start"], body["end"]) == (start, start + 2)
    assert isinstance(body["completion"], str) and body["correct_first_token"] in (True, False)
    assert 0 <= body["target_first_prob"] <= 1 and 0 <= body["predicted_correct"] <= 1
    assert len(body["heads"]) == 8 and len(body["tokens"]) == body["window"]
    assert all(h["cluster"] is not None for h in body["heads"])
    pattern = client.get(body["heads"][3]["pattern_url"]).json()
    assert len(pattern["z"]) == body["window"]
    assert client.get(body["heads"][3]["thumb_url"]).content[:4] == b"\x89PNG"

    by_task = client.post("/api/predict", json={"code": CODE, "task": "boolean_operators"}).json()
    assert by_task["task"] == "boolean_operators" and by_task["target"] in ("<", "==", "||")
    assert CODE[by_task["start"]:by_task["end"]] == by_task["target"]

    open_ = client.post("/api/predict", json={"code": CODE, "cursor": start}).json()
    assert open_["target"] is None and open_["correct_exact"] is None
    assert open_["correct_first_token"] is None and open_["target_first_prob"] is None
    assert open_["predicted_correct"] is not None


def test_predict_names_its_predictor_and_withholds_on_prose(client):
    """The answer says which attention-only predictor spoke (with held-out figures), reads the
    span as its mining task, gives the model's own confidence beside it, and withholds the
    probability for input unlike the training prompts, saying why."""
    start = CODE.index("total +=") + len("total ")
    body = client.post("/api/predict", json={"code": CODE, "start": start, "end": start + 2}).json()
    assert body["out_of_distribution"] == [] and body["predicted_correct"] is not None
    assert body["predictor"]["task"] == "assignment_operators"
    assert body["predictor"]["name"] in ("pattern_stats", "row_stats", "clusters", "embeddings",
                                         "rows+clusters", "rows+embeddings")
    assert 0 < body["lm_confidence"]["top1_prob"] <= 1 and body["lm_confidence"]["entropy"] >= 0
    prose = ("The quick brown fox jumps over the lazy dog, and then it runs away into the woods "
             "where nobody can find it again. ") * 4
    body = client.post("/api/predict", json={"code": prose, "start": 4, "end": 9}).json()
    assert body["predicted_correct"] is None
    assert any("does not parse as Java" in r for r in body["out_of_distribution"])
    short = client.post("/api/predict", json={"code": "int x = 1;", "start": 8, "end": 9}).json()
    assert any("far shorter" in r for r in short["out_of_distribution"])


def test_intervene_compares_baseline_and_ablated(client):
    start = CODE.index("total +=") + len("total ")
    request = {"code": CODE, "start": start, "end": start + 2}
    plain = client.post("/api/predict", json=request).json()
    body = client.post("/api/intervene", json={**request, "ablate": [[0, 1], [1, 2]]}).json()
    assert body["ablate"] == [[0, 1], [1, 2]]
    assert body["baseline"]["completion"] == plain["completion"]
    assert body["baseline"]["target_first_prob"] == pytest.approx(plain["target_first_prob"])
    every = [[l, h] for l in range(2) for h in range(4)]
    off = client.post("/api/intervene", json={**request, "ablate": every}).json()
    assert off["ablated"]["target_first_prob"] != pytest.approx(off["baseline"]["target_first_prob"])
    for change in off["ablated"]["changed_heads"]:
        assert change["before"] != change["after"]
    rid = off["id"]
    ablated = client.get(f"/api/live/{rid}/heads/0/0/pattern", params={"which": "ablated"})
    assert ablated.status_code == 200
    assert client.get("/api/live/nope/heads/0/0/pattern").status_code == 404


@pytest.mark.parametrize(("url", "body", "status", "message"), [
    ("/api/predict", {"code": "", "cursor": 0}, 422, "empty"),
    ("/api/predict", {"code": "x" * 5000, "cursor": 0}, 413, "limit is 4096"),
    ("/api/predict", {"code": CODE, "start": 10, "end": 5}, 422, "non-empty range"),
    ("/api/predict", {"code": CODE, "start": 0, "end": 99999}, 422, "inside the code"),
    ("/api/predict", {"code": CODE, "start": 3}, 422, "start and end go together"),
    ("/api/predict", {"code": CODE, "task": "nope"}, 422, "unknown task"),
    ("/api/predict", {"code": CODE, "task": "noise"}, 422, "control"),
    ("/api/predict", {"code": "class A { }", "task": "string_literals"}, 422, "no string_literals span"),
    ("/api/predict", {"code": "class A { int x = ", "task": "eol"}, 422, "does not parse"),
    ("/api/predict", {"code": CODE, "task": "eol", "cursor": 3}, 422, "exactly one"),
    ("/api/predict", {"code": CODE}, 422, "exactly one"),
    ("/api/predict", {"code": CODE, "cursor": -1}, 422, "outside the code"),
    ("/api/predict", {"code": CODE, "cursor": 1, "extra": 1}, 422, "extra"),
    ("/api/predict", {"code": 5, "cursor": 1}, 422, "code"),
    ("/api/intervene", {"code": CODE, "cursor": 1, "ablate": []}, 422, "ablate is empty"),
    ("/api/intervene", {"code": CODE, "cursor": 1, "ablate": [[2, 0]]}, 422, "does not exist"),
    ("/api/intervene", {"code": CODE, "cursor": 1, "ablate": [[0, 4]]}, 422, "does not exist"),
    ("/api/intervene", {"code": CODE, "cursor": 1, "ablate": [[0, 1], [0, 1]]}, 422, "twice"),
    ("/api/intervene", {"code": CODE, "cursor": 1, "ablate": [[0]]}, 422, "[layer, head]"),
    ("/api/intervene", {"code": CODE, "cursor": 1, "ablate": [[0, 0]] * 9}, 422, "only 8"),
])
def test_bad_input_gets_a_clear_4xx(client, url, body, status, message):
    response = client.post(url, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_nul_in_the_url_is_refused(client):
    response = client.get("/api/scenarios", params={"q": "a\x00b"})
    assert response.status_code == 422 and "NUL" in response.json()["detail"]


def test_malformed_and_oversized_bodies(client):
    bad = client.post("/api/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and "malformed JSON" in bad.json()["detail"]
    big = client.post("/api/predict", content=b"x" * 20000, headers={"content-type": "application/json"})
    assert big.status_code == 413


def test_pool_refuses_beyond_its_queue_and_times_out():
    asyncio.run(_pool_bounds())


async def _pool_bounds() -> None:
    pool, gate = InferencePool(workers=1, queue=1, timeout_s=5), threading.Event()
    first = asyncio.ensure_future(pool.run(gate.wait))
    second = asyncio.ensure_future(pool.run(gate.wait))
    await asyncio.sleep(0.05)
    with pytest.raises(Busy):
        await pool.run(gate.wait)
    gate.set()
    assert await first and await second and pool.pending == 0
    slow = InferencePool(workers=1, queue=0, timeout_s=0.05)
    with pytest.raises(TimeoutError):
        await slow.run(threading.Event().wait, 0.5)
    pool.shutdown()
    slow.shutdown()


def test_unbuilt_run_says_what_to_run(tmp_path):
    settings = Settings(run="nothing", database_url=f"sqlite:///{tmp_path / 'x.db'}")
    with TestClient(create_app(settings)) as c:
        health = c.get("/api/health").json()
        assert health["ready"] is False and "apmae demo" in health["problem"]
        response = c.post("/api/predict", json={"code": CODE, "cursor": 3})
        assert response.status_code == 503 and "apmae demo" in response.json()["detail"]
        assert c.get("/api/heads").status_code == 404


def _copy_database(url: str, dest: Path) -> None:
    """A consistent copy of a SQLite database in WAL mode (the backup API, not a file copy)."""
    import sqlite3

    with sqlite3.connect(url[len("sqlite:///"):]) as src, sqlite3.connect(dest) as out:
        src.backup(out)


def test_reads_never_write_or_migrate_the_database(explorer_run, tmp_path):
    from apmae.db.session import current_revision, downgrade
    from apmae.report import atlas_sections

    run, url = explorer_run
    _copy_database(url, tmp_path / "ro.db")
    read_only = f"sqlite:///file:{tmp_path / 'ro.db'}?mode=ro&uri=true"  # any write would raise
    assert {"clusters", "predictor", "sweep", "intervention"} <= set(atlas_sections(run, read_only))
    settings = Settings(run=run.name, database_url=read_only)
    with TestClient(create_app(settings, Explorer.load(settings, run=run))) as c:
        for path in ("/api/run", "/api/heads", "/api/sweep", "/api/interventions", "/api/heads/0/0"):
            assert c.get(path).status_code == 200, path

    behind = tmp_path / "behind.db"
    _copy_database(url, behind)
    assert downgrade(f"sqlite:///{behind}", "0002") == "0002"
    with pytest.raises(ValueError, match="apmae db upgrade"):  # refused, not migrated on a read
        atlas_sections(run, f"sqlite:///{behind}")
    assert current_revision(f"sqlite:///{behind}") == "0002"  # still where it was
