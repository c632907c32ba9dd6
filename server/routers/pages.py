"""The explorer's HTML pages: each is a template that the page's script fills from the JSON
API, with its state (head, cluster, filters, code) in the URL so a link reproduces the view."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ..deps import ExplorerDep

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
templates = Jinja2Templates(directory=FRONTEND / "templates")

router = APIRouter(include_in_schema=False)

PAGES = {
    "/": ("overview.html", "Overview"),
    "/head": ("head.html", "Head"),
    "/cluster": ("cluster.html", "Cluster"),
    "/scenarios": ("scenarios.html", "Scenarios"),
    "/scenario": ("scenario.html", "Scenario"),
    "/try": ("try.html", "Try"),
    "/sweep": ("sweep.html", "Sweep"),
}


def _page(template: str, title: str):
    def page(request: Request, state: ExplorerDep) -> HTMLResponse:
        return templates.TemplateResponse(request, template, {
            "title": title, "run": state.run.name, "problem": state.problem})
    return page


for path, (template, title) in PAGES.items():
    router.add_api_route(path, _page(template, title), methods=["GET"], response_class=HTMLResponse,
                         name=f"page_{template.removesuffix('.html')}")
