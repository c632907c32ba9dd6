"""Screenshots of every page of the explorer, small enough to keep in the repository.

    python tools/screenshots.py --run q200            # serves the run itself, writes docs/screenshots/
    python tools/screenshots.py --url http://127.0.0.1:8765 --out /tmp/shots overview try

Each page is opened in headless Chromium 1200 px wide, captured whole, and saved as a
palette PNG (128 colours, optimised): the charts and text stay sharp at a fraction of the size.
The Try page runs its example, ablates two heads and opens the second one's before/after
heatmaps. Console errors are printed and make the exit status 1. Needs Chromium at
/usr/bin/chromium (APMAE_CHROMIUM overrides) and the playwright package.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image
from playwright.sync_api import Page, sync_playwright

WIDTH = 1200
PAGES = ("overview", "head", "cluster", "scenarios", "scenario", "try", "sweep")


def _get(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=60) as r:
        return json.load(r)


@contextmanager
def serving(run: str) -> Iterator[str]:
    """``apmae serve --run RUN`` on a free loopback port until the block ends; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "apmae", "serve", "--run", run, "--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if _get(base, "/api/health")["ready"]:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the explorer for run {run} did not start")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


def _try(page: Page) -> None:
    """Run the example, ablate the second head and one of the last layer's, open the latter."""
    page.click("#run")
    page.wait_for_selector("#try-grid table", timeout=60_000)
    boxes = page.locator("#try-grid input[type=checkbox]")
    last = max(0, boxes.count() - 5)
    for i in (1, last):
        boxes.nth(i).check()
    page.click("#rerun")
    page.wait_for_selector("#compare", timeout=60_000)
    page.locator("#try-grid button.cell").nth(last).click()
    page.wait_for_selector("#head-panel-body .main-svg", timeout=60_000)


def load_all(page: Page) -> None:
    """Scroll down a screen at a time, so that every thumbnail comes into view and loads (they
    load only then), wait for every image, and go back to the top."""
    height = page.evaluate("document.documentElement.scrollHeight")
    for y in range(0, height, 600):
        page.evaluate(f"window.scrollTo(0, {y})")
        page.wait_for_timeout(30)
    page.wait_for_function("[...document.querySelectorAll('img[data-src]')].every((i) => i.getAttribute('src') && i.complete)",
                           timeout=60_000)
    page.evaluate("window.scrollTo(0, 0)")


def small_png(png: bytes) -> bytes:
    """The screenshot as an optimised 128-colour PNG."""
    img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def shoot(base: str, out: Path, only: set[str]) -> int:
    """Every page (or those in ``only``) of the explorer at ``base`` into ``out``; returns how
    many pages logged console errors."""
    out.mkdir(parents=True, exist_ok=True)
    first = _get(base, "/api/heads")[0]
    layer, head = first["layer"], first["head"]
    cluster = _get(base, f"/api/heads/{layer}/{head}")["clusters"][0]["id"]
    key = _get(base, "/api/scenarios?limit=1")["items"][0]["key"]
    paths: dict[str, tuple[str, Callable[[Page], None] | None]] = {
        "overview": ("/", None), "head": (f"/head?layer={layer}&head={head}", None),
        "cluster": (f"/cluster?id={cluster}", None), "scenarios": ("/scenarios", None),
        "scenario": (f"/scenario?key={key}&layer={layer}&head={head}", None),
        "try": ("/try", _try), "sweep": ("/sweep", None),
    }
    failed = 0
    chromium = os.environ.get("APMAE_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        for name in PAGES:
            if only and name not in only:
                continue
            path, action = paths[name]
            page = browser.new_page(viewport={"width": WIDTH, "height": 800})
            errors: list[str] = []
            page.on("console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda x, e=errors: e.append(str(x)))
            t0 = time.monotonic()
            page.goto(base + path)
            page.wait_for_selector("body[data-ready]", timeout=60_000)
            if action:
                action(page)
            load_all(page)
            png = small_png(page.screenshot(full_page=True))
            (out / f"{name}.png").write_bytes(png)
            shown = page.inner_text("#status") if page.is_visible("#status") else ""
            print(f"{name:10s} {time.monotonic() - t0:5.1f} s  {len(png) / 1024:6.0f} KB  errors: {errors or 'none'}  {shown}")
            failed += bool(errors)
            page.close()
        browser.close()
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", help="serve this run (under $APMAE_HOME/runs) for the screenshots")
    where.add_argument("--url", help="an explorer already running")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "screenshots")
    parser.add_argument("pages", nargs="*", help=f"some of {', '.join(PAGES)} (default: all)")
    args = parser.parse_args()
    if args.url:
        failed = shoot(args.url.rstrip("/"), args.out, set(args.pages))
    else:
        with serving(args.run) as base:
            failed = shoot(base, args.out, set(args.pages))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
