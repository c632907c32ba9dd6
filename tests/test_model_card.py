"""The default model's card as facts (/api/model-card/facts): what the shipped JSON files
beside the weights say, and a clear 404 where a model has none."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from apmae.paths import DEFAULT_MODEL_DIR
from server.app import create_app
from server.settings import Settings


def _client(tmp_path) -> TestClient:
    return TestClient(create_app(Settings(run="none", database_url=f"sqlite:///{tmp_path / 'x.db'}")))


def test_the_card_facts_are_the_shipped_files(tmp_path):
    heldout = json.loads((DEFAULT_MODEL_DIR / "heldout.json").read_text())
    stages = json.loads((DEFAULT_MODEL_DIR / "train_config.json").read_text())
    with _client(tmp_path) as client:
        card = client.get("/api/model-card/facts").json()
    assert card["heldout"]["overall_non_noise"] == heldout["final"]["overall_non_noise"]
    assert set(card["heldout"]["by_task"]) == set(heldout["final"]["by_task"])
    assert sorted(card["curve"], key=int) == sorted(heldout["curve"], key=int)
    assert [s["seed"] for s in card["stages"]] == [s["seed"] for s in stages]
    assert card["architecture"]["num_hidden_layers"] == stages[-1]["layers"]
    assert card["data"]["sha256"] == json.loads((DEFAULT_MODEL_DIR / "data.json").read_text())["sha256"]


def test_no_card_is_a_404(tmp_path, monkeypatch):
    monkeypatch.setattr("apmae.paths.DEFAULT_MODEL_DIR", tmp_path)
    with _client(tmp_path) as client:
        response = client.get("/api/model-card/facts")
    assert response.status_code == 404 and "no card" in response.json()["detail"]
