"""A wide model's 720 heads (30 layers × 24) in a real browser: /try's per-head thumbnails are
asked for as they come into view, never all at once, and the overview's grid draws a cell per
head that opens it. The model is random and tiny (head_dim 2), its run a few 32-token windows
with no atlas (live predictions need none); the overview's head summaries are the run's real
shape fed through the page's route, since clustering 720 heads is too slow for a test."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import JAVA_DIR, REQUIRE_BROWSER, browser_missing, serve_in_thread
from test_browser import _get, _open

MISSING = browser_missing()

pytestmark = pytest.mark.skipif(MISSING is not None and not REQUIRE_BROWSER, reason=MISSING or "")

LAYERS, HEADS = 30, 24


@pytest.fixture(scope="module")
def wide_url(tmp_path_factory, tiny_tokenizer):
    """The explorer over a run of a random 30 × 24 Starcoder2 (hidden size 48)."""
    from apmae.configs import ExtractConfig, LMTrainConfig
    from apmae.extract import extract
    from apmae.lm.load import load_target
    from apmae.lm.train import model_config
    from apmae.run import Run
    from apmae.scenarios import mine, write_scenarios
    from server.app import create_app
    from server.settings import Settings
    from server.state import Explorer
    from transformers import Starcoder2ForCausalLM

    root = tmp_path_factory.mktemp("wide")
    cfg = LMTrainConfig(source="-", hidden_size=48, layers=LAYERS, heads=HEADS, kv_heads=HEADS, mlp=64)
    torch.manual_seed(0)
    Starcoder2ForCausalLM(model_config(cfg, tiny_tokenizer)).save_pretrained(root / "model")
    tiny_tokenizer.save_pretrained(root / "model")
    target = load_target(str(root / "model"))
    run = Run("wide", path=root / "wide")
    write_scenarios(mine(str(JAVA_DIR), target.tokenizer, tasks=("identifiers",), per_task=2, seed=0, window=32),
                    run.scenarios_path)
    extract(run, run.scenarios_path, target, ExtractConfig(batch_size=8))
    settings = Settings(run=run.name, database_url=f"sqlite:///{root / 'wide.db'}")
    yield from serve_in_thread(create_app(settings, state=Explorer.load(settings, run=run)))


def test_try_loads_thumbnails_of_720_heads_as_they_come_into_view(page, wide_url, shots):
    thumbs: list[str] = []
    page.on("request", lambda r: thumbs.append(r.url) if r.url.endswith("/thumb.png") else None)
    patterns: list[str] = []
    page.on("request", lambda r: patterns.append(r.url) if "/pattern" in r.url else None)
    _open(page, wide_url, "/try")
    page.click("#run")
    page.wait_for_selector("#try-grid table")
    page.wait_for_load_state("networkidle")
    cells = page.locator("#try-grid td")
    assert cells.count() == LAYERS * HEADS
    assert page.locator("#try-grid td img").count() == LAYERS * HEADS
    # only the rows in view (and a margin) asked for their image; no head's full pattern
    first = len(set(thumbs))
    assert HEADS <= first < LAYERS * HEADS / 2, first
    assert not patterns
    # (every row in view or within the margin below it)
    in_view = page.evaluate("""() => [...document.querySelectorAll('#try-grid td img')]
        .filter((i) => i.getBoundingClientRect().top < innerHeight + 150 && i.getBoundingClientRect().bottom > -150).length""")
    assert first <= in_view + HEADS, (first, in_view)
    # scrolling down asks for the rows that come into view, down to the last layer
    last = page.locator(f"#try-grid td[data-layer='{LAYERS - 1}'][data-head='{HEADS - 1}'] img")
    last.scroll_into_view_if_needed()
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=last.element_handle())
    assert len(set(thumbs)) > first
    page.screenshot(path=str(shots / "try-720-heads.png"))
    assert any(re.search(rf"/heads/{LAYERS - 1}/{HEADS - 1}/thumb\.png$", u) for u in thumbs)
    # a head opens from its thumbnail: its heatmap, asked for alone
    page.locator(f"#try-grid td[data-layer='{LAYERS - 1}'][data-head='{HEADS - 1}'] button.cell").click()
    page.wait_for_selector("#head-panel-body .main-svg")
    assert page.inner_text("#head-panel-title").startswith(f"Head L{LAYERS - 1}H{HEADS - 1}")
    assert len(patterns) == 1, patterns


def test_overview_grid_draws_every_head_and_opens_the_last(page, wide_url, shots):
    heads = [{"layer": l, "head": h, "n_clusters": 1 + (l + h) % 5, "noise_share": 0.1, "importance": None,
              "causal_accuracy": None, "causal_accuracy_ci": None, "suggested_ablation": False}
             for l in range(LAYERS) for h in range(HEADS)]
    run = _get(wide_url, "/api/run")
    assert (run["layers"], run["heads"]) == (LAYERS, HEADS)
    run["report"]["clusters"] = {"heads": LAYERS * HEADS}
    page.route("**/api/run", lambda route: route.fulfill(json=run))
    page.route("**/api/heads", lambda route: route.fulfill(json=heads))
    _open(page, wide_url, "/")
    page.wait_for_selector("#grid-plot .main-svg")
    z = page.evaluate("() => document.getElementById('grid-plot').data[0].z")
    assert len(z) == LAYERS and all(len(row) == HEADS and None not in row for row in z)
    page.screenshot(path=str(shots / "overview-720-heads.png"))
    # clicking the last cell opens that head's page (served blank: this run has no atlas in SQL,
    # so the real page's requests would 404 whenever they beat the test's end)
    page.route("**/head?*", lambda route: route.fulfill(content_type="text/html", body="<html></html>"))
    box = page.locator("#grid-plot .nsewdrag").first.bounding_box()
    with page.expect_navigation():
        page.mouse.click(box["x"] + box["width"] * (HEADS - 0.5) / HEADS, box["y"] + box["height"] * (LAYERS - 0.5) / LAYERS)
    assert page.url.endswith(f"/head?layer={LAYERS - 1}&head={HEADS - 1}")
