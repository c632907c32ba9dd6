"""Manual check (not a test): screenshot every page of a running explorer, report console errors.

    apmae serve --run demo2 --port 8765 &
    .venv/bin/python frontend/screenshots.py [http://127.0.0.1:8765] [out-folder] [page ...]

Needs Chromium at /usr/bin/chromium (APMAE_CHROMIUM overrides) and the playwright package. The
Try page runs the example, ablates L0 H1 and the last layer's H3 where they exist, and opens
the second one's before/after heatmaps.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright


def _get(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=60) as r:
        return json.load(r)


def _try(page) -> None:
    page.click("#run")
    page.wait_for_selector("#try-grid table", timeout=60_000)
    boxes = page.locator("#try-grid input[type=checkbox]")
    for i in (1, boxes.count() - 5):
        boxes.nth(max(0, i)).check()
    page.click("#rerun")
    page.wait_for_selector("#compare", timeout=60_000)
    page.locator("#try-grid button.cell").nth(max(0, boxes.count() - 5)).click()
    page.wait_for_selector("#head-panel-body .main-svg", timeout=60_000)


def main() -> None:
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8765"
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "screenshots")
    only = set(sys.argv[3:])
    out.mkdir(parents=True, exist_ok=True)
    first = _get(base, "/api/heads")[0]
    layer, head = first["layer"], first["head"]
    cluster = _get(base, f"/api/heads/{layer}/{head}")["clusters"][0]["id"]
    key = _get(base, "/api/scenarios?limit=1")["items"][0]["key"]
    pages = [("overview", "/", None), ("head", f"/head?layer={layer}&head={head}", None),
             ("cluster", f"/cluster?id={cluster}", None), ("scenarios", "/scenarios", None),
             ("scenario", f"/scenario?key={key}&layer={layer}&head={head}", None),
             ("try", "/try", _try), ("sweep", "/sweep", None)]
    chromium = os.environ.get("APMAE_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        for name, path, action in pages:
            if only and name not in only:
                continue
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda x, e=errors: e.append(str(x)))
            t0 = time.monotonic()
            page.goto(base + path)
            page.wait_for_selector("body[data-ready]", timeout=60_000)
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # lazy thumbnails
            page.wait_for_load_state("networkidle")
            page.evaluate("window.scrollTo(0, 0)")
            if action:
                action(page)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            shown = page.inner_text("#status") if page.is_visible("#status") else ""
            print(f"{name:10s} {time.monotonic() - t0:5.1f} s  errors: {errors or 'none'}  {shown}")
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
