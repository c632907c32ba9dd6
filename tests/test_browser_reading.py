"""Reading a head, a cluster and an ablation in a real browser (headless Chromium through
Playwright) over the tiny fully built run: the head page's filters recount its cluster cards,
its map tells many clusters apart and labels them, its similar-heads panel links to heads; the
cluster page sets its cluster against the head; /try's ablation shows the top-k next tokens
before and after with the target's log-probability change and per-head patterns. No console
errors (the ``page`` fixture). Skipped without Chromium, like tests/test_browser.py."""

from __future__ import annotations

import re

import pytest
from conftest import REQUIRE_BROWSER, browser_missing
from test_browser import _get, _open, _shoot

MISSING = browser_missing()
pytestmark = pytest.mark.skipif(MISSING is not None and not REQUIRE_BROWSER, reason=MISSING or "")


def _token(t: str) -> str:
    """A token as /try writes it: control tokens as they are, others quoted, whitespace shown."""
    if re.fullmatch(r"<(fim_(prefix|suffix|middle|pad)|\|endoftext\|)>", t):
        return t
    return '"' + t.replace("\n", "↵").replace("\t", "⇥").replace(" ", "·") + '"'


def _card_counts(page) -> dict[int, str]:
    return {int(c.get_attribute("data-label")): c.locator(".card-head .count").inner_text()
            for c in page.locator("#cluster-cards a.card").all()}


def test_head_filter_recounts_the_cards(page, base_url, shots):
    layer, head = 1, 1
    info = _get(base_url, f"/api/heads/{layer}/{head}")
    total = sum(c["size"] for c in info["clusters"])
    _open(page, base_url, f"/head?layer={layer}&head={head}")
    page.wait_for_selector("#map-plot .main-svg")
    assert page.inner_text("#cards-count") == f"{total} scenarios"
    assert page.inner_text("#head-description") == f"Pattern: {info['description']}."
    assert page.locator("#head-metrics-table tbody tr").count() == 1
    first = page.locator("#cluster-cards a.card").first
    assert first.locator(".description").inner_text() == info["clusters"][0]["description"]
    assert first.locator("table.enrichment tr.correct-row").count() == 1

    page.select_option("#f-correct", "true")
    page.wait_for_function("() => document.querySelector('#cards-count').textContent.includes('match')")
    counts = _get(base_url, f"/api/heads/{layer}/{head}/map?correct=true")["counts"]
    matching = sum(c["matching"] for c in counts)
    assert 0 < matching < total  # the tiny run's labels alternate: the filter must change the counts
    assert page.inner_text("#cards-count") == f"{matching} of {total} scenarios match the filter"
    assert _card_counts(page) == {c["label"]: f"{c['matching']} of {c['size']} match" for c in counts}
    filtered = _get(base_url, f"/api/heads/{layer}/{head}?correct=true&metrics=false")
    assert filtered["matching_total"] == matching
    _shoot(page, shots, "head-filtered")

    page.select_option("#f-correct", "")  # back to all: the sizes again
    page.wait_for_function("() => !document.querySelector('#cards-count').textContent.includes('match')")
    assert "match" not in " ".join(_card_counts(page).values())


def _many_clusters(info: dict, points: list[dict], n: int) -> tuple[dict, dict]:
    """A head of ``n`` clusters and noise, its map's points dealt among them in groups."""
    base = info["clusters"][0]
    clusters = [{**base, "id": 1000 + g, "label": g, "size": 2, "medoid": None} for g in range(n)]
    clusters.append({**base, "id": 999, "label": -1, "size": 2, "medoid": None})
    pts = [{**points[i % len(points)], "cluster": g, "x": float(g % 6) + 0.1 * j, "y": float(g // 6) + 0.1 * j}
           for i, (g, j) in enumerate((g, j) for g in [*range(n), -1] for j in range(2))]
    counts = [{"label": c["label"], "size": 2, "matching": 2} for c in clusters]
    return {**info, "n_clusters": n, "clusters": clusters}, {"layer": info["layer"], "head": info["head"], "points": pts, "counts": counts}


def test_map_tells_thirty_clusters_apart_and_labels_them(page, base_url, shots):
    n = 30
    info = _get(base_url, "/api/heads/0/0")
    made_up, made_map = _many_clusters(info, _get(base_url, "/api/heads/0/0/map")["points"], n)
    page.route(re.compile(r".*/api/heads/0/0(\?.*)?$"), lambda route: route.fulfill(json=made_up))
    page.route(re.compile(r".*/api/heads/0/0/map(\?.*)?$"), lambda route: route.fulfill(json=made_map))
    _open(page, base_url, "/head?layer=0&head=0")
    page.wait_for_selector("#map-plot .main-svg")
    looks = page.evaluate("() => document.getElementById('map-plot').data.map((t) => t.marker.color + ' ' + t.marker.symbol)")
    assert len(looks) == n + 1 and len(set(looks)) == n + 1, looks  # noise included, no two alike
    labels = page.evaluate("() => document.getElementById('map-plot').layout.annotations.map((a) => a.text)")
    assert sorted(labels) == sorted(f"<b>c{g}</b>" for g in range(n))
    assert page.locator("#map-plot .annotation-text").count() == n  # drawn on the map
    assert page.locator("#cluster-cards a.card").count() == n + 1
    _shoot(page, shots, "head-thirty-clusters")


def test_similar_heads_link_to_heads(page, base_url, shots):
    similar = _get(base_url, "/api/heads/0/2/similar?k=8")
    _open(page, base_url, "/head?layer=0&head=2")
    page.wait_for_selector("#similar ol.similar a")
    links = page.locator("#similar ol.similar a")
    assert links.count() == len(similar["items"]) > 0
    assert [links.nth(i).get_attribute("href") for i in range(links.count())] == [
        f"/head?layer={x['layer']}&head={x['head']}" for x in similar["items"]]
    assert page.input_value("#sim-by") == similar["by"]

    with page.expect_response(lambda r: "/similar" in r.url and "by=profile" in r.url) as answer:
        page.select_option("#sim-by", "profile")
    profile = answer.value.json()
    page.wait_for_function("() => (document.querySelector('#similar-note') || {}).textContent?.includes('profiles')")
    first = profile["items"][0]
    assert "by=profile" in page.url
    page.locator("#similar ol.similar a").first.click()
    page.wait_for_url(re.compile(rf"/head\?layer={first['layer']}&head={first['head']}$"))
    page.wait_for_selector("body[data-ready]")
    assert re.fullmatch(rf"Head L{first['layer']} ?H{first['head']}", page.inner_text("#head-title"))

    # another run: a name the server has no run of answers its message, not a list
    page.fill("#sim-run", "no-such-run")
    page.press("#sim-run", "Enter")
    page.wait_for_selector("#similar .error")
    assert "no extracted run named 'no-such-run'" in page.inner_text("#similar .error")
    assert "in=no-such-run" in page.url
    # the browser logs the expected 404 itself: that one, and nothing else
    assert page.errors == ["console: Failed to load resource: the server responded with a status of 404 (Not Found)"]
    page.errors.clear()


def test_cluster_page_sets_the_cluster_against_its_head(page, base_url, shots):
    info = _get(base_url, "/api/heads/1/1")
    c = next(x for x in info["clusters"] if x["label"] >= 0)
    detail = _get(base_url, f"/api/clusters/{c['id']}")
    _open(page, base_url, f"/cluster?id={c['id']}")
    page.wait_for_selector("#metrics-table")
    assert page.inner_text("#cluster-description") == f"Pattern: {detail['description']}."
    assert page.locator("#metrics-table tbody tr").count() == 2  # the cluster and its head
    rows = page.locator("#enrichment-table tbody tr")
    assert rows.count() == 1 + len(detail["enrichment"]["tasks"])
    assert rows.first.locator("td").first.inner_text() == str(detail["enrichment"]["correct"]["count"])
    page.wait_for_function("""() => {  // mean, medoid, difference, each drawn
        const plots = document.querySelectorAll('#against-head .plot-pattern');
        return plots.length === 3 && [...plots].every((p) => p.querySelector('.main-svg'));
    }""")
    _shoot(page, shots, "cluster-against-head")

    noise = next(x for x in info["clusters"] if x["label"] < 0)
    _open(page, base_url, f"/cluster?id={noise['id']}")
    page.wait_for_selector("#against-head .main-svg")  # the head's mean; no medoid to set beside it
    assert page.locator("#against-head .plot-pattern").count() == 1
    assert "no medoid" in page.inner_text("#against-head")


def test_try_ablation_shows_topk_before_and_after(page, base_url, shots):
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    _open(page, base_url, "/try")
    page.click("#run")
    page.wait_for_selector("#try-grid table")
    page.check("#try-grid input[data-head='0.1']")
    with page.expect_response("**/api/intervene") as answer:
        page.click("#rerun")
    iv = answer.value.json()
    page.wait_for_selector("#topk")
    rows = page.locator("#topk tbody tr")
    assert rows.count() == len(iv["baseline"]["top_k"]) == len(iv["ablated"]["top_k"]) > 0
    for i, (before, after) in enumerate(zip(iv["baseline"]["top_k"], iv["ablated"]["top_k"])):
        cells = rows.nth(i).locator("td")
        assert cells.nth(1).inner_text() == _token(before["token"]) and cells.nth(3).inner_text() == _token(after["token"])
        assert float(cells.nth(2).inner_text()) == pytest.approx(before["prob"], rel=5e-3)
        assert float(cells.nth(4).inner_text()) == pytest.approx(after["prob"], rel=5e-3)
    said = re.search(r"\(([+−])([0-9.e−-]+) nats\)", page.inner_text("#logprob-change"))
    value = float(said.group(2).replace("−", "-")) * (-1 if said.group(1) == "−" else 1)
    assert value == pytest.approx(iv["target_logprob_change"], rel=5e-3, abs=1e-9)

    # the ablated head's patterns: fetched only when opened, baseline, ablated and difference
    assert not any("which=difference" in u for u in asked)
    page.click("#ablation-patterns details[data-head='0.1'] summary")
    # each heatmap drawn (a plotly figure holds several .main-svg layers: count figures, not layers)
    page.wait_for_function("""() => {
        const plots = document.querySelectorAll('#ablation-patterns details[open] .plot-pattern');
        return plots.length === 3 && [...plots].every((p) => p.querySelector('.main-svg'));
    }""")
    assert any(u.endswith("/heads/0/1/pattern?which=difference") for u in asked)
    assert any(u.endswith("/heads/0/1/pattern?which=ablated") for u in asked)
    _shoot(page, shots, "try-ablation-explained")

    # the head panel needs only cluster ids: it skips the slow pattern metrics
    page.click("#try-grid td[data-layer='0'][data-head='0'] button.cell")
    page.wait_for_selector("#head-panel-body .exemplars h3")
    page.wait_for_load_state("networkidle")
    heads = [u for u in asked if re.search(r"/api/heads/\d+/\d+(\?|$)", u)]
    assert heads and all(u.endswith("?metrics=false") for u in heads), heads
