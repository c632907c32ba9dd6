"""/docs (Swagger UI) and /redoc work with no network: their pages reference only assets the
app serves itself, and they render in headless Chromium with every off-host request aborted.

Needs no built run: the app starts over a missing one (its pages say so; the docs do not care).
Screenshots go to ``$APMAE_SCREENSHOTS`` (default: a temporary folder). Without
``/usr/bin/chromium`` (or Playwright) the browser test is skipped, unless
``APMAE_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import CHROMIUM, REQUIRE_BROWSER, browser_missing, serve_in_thread
from fastapi.testclient import TestClient

from server.app import create_app
from server.settings import Settings

#: every URL a page loads: script and link targets, Swagger UI's ``url:`` and ReDoc's spec-url
REFERENCE = re.compile(r"""(?:src|href|spec-url)="([^"]*)"|\burl: '([^']*)'""")


def _settings(folder: Path) -> Settings:
    return Settings(run="none", database_url=f"sqlite:///{folder / 'docs.db'}")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(create_app(_settings(tmp_path_factory.mktemp("docs")))) as c:
        yield c


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_reference_only_local_assets(client, path):
    page = client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "://" not in page.text, "an absolute URL: the page would need the network"
    urls = {a or b for a, b in REFERENCE.findall(page.text)}
    assert "/openapi.json" in urls and any(u.endswith(".js") for u in urls), urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url  # the favicon, the smallest, is ~5 kB


def test_openapi_json_is_unchanged(client):
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "apmae explorer" and "/api/health" in spec["paths"]
    assert not any(p in spec["paths"] for p in ("/docs", "/redoc"))


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    """The app served in-process on a free loopback port, as a browser sees it."""
    yield from serve_in_thread(create_app(_settings(tmp_path_factory.mktemp("docs_browser"))),
                               probe="/openapi.json")


@pytest.mark.parametrize("path, title, part", [
    ("/docs", "#swagger-ui .info .title", "#swagger-ui .opblock"),
    ("/redoc", ".api-content h1", "[role=search]"),
])
def test_docs_render_offline(base_url, tmp_path_factory, path, title, part):
    missing = browser_missing()
    if missing is not None:
        if REQUIRE_BROWSER:
            pytest.fail(f"{missing} (APMAE_REQUIRE_BROWSER=1)")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("APMAE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    blocked: list[str] = []
    errors: list[str] = []

    def offline(route) -> None:
        """Let loopback requests through; abort the rest as if there were no network."""
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(f"{route.request.resource_type} {route.request.url}")
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/*", offline)
            page.goto(base_url + path)
            page.locator(part).first.wait_for(state="visible")
            assert "apmae explorer" in page.locator(title).first.inner_text()
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(shots / f"{path.strip('/')}_offline.png"))
        finally:
            browser.close()
    assert not errors, errors
    assert not [b for b in blocked if b.split()[0] in ("script", "stylesheet", "font")], blocked
