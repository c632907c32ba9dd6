"""The app factory: routes, static assets (plotly.js from the installed plotly package, and
Swagger UI / ReDoc from fastapi-offline, so the explorer and its API docs work offline), limits,
and errors that say what to change."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import unquote

import fastapi_offline
import plotly
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from .routers import card, heads, live, pages, run, scenarios
from .settings import Settings
from .state import Busy, Explorer

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
#: swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png, served under
#: DOCS_STATIC: FastAPI's default /docs and /redoc load them from a CDN, blank offline.
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOCS_STATIC = "/static/docs"


def create_app(settings: Settings | None = None, state: Explorer | None = None) -> FastAPI:
    """The explorer over ``settings.run``; ``state`` replaces loading it (tests)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.explorer = state or Explorer.load(settings)
        yield
        app.state.explorer.pool.shutdown()

    app = FastAPI(title="apmae explorer", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Attention patterns of a code LM, clustered with AP-MAE: browse "
                              "them, complete pasted Java, predict correctness, ablate heads.")
    app.add_middleware(GZipMiddleware, minimum_size=2048)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            return JSONResponse({"detail": f"request body over {settings.max_body_bytes} bytes"}, 413)
        if "\x00" in unquote(request.url.path) or "\x00" in unquote(request.url.query):
            # PostgreSQL refuses NUL in text: say so rather than fail in the query
            return JSONResponse({"detail": "NUL characters are not allowed in the URL"}, 422)
        return await call_next(request)

    @app.exception_handler(Busy)
    async def busy(_request: Request, _exc: Busy) -> JSONResponse:
        return JSONResponse({"detail": "the model is busy with other requests; retry shortly"},
                            503, headers={"Retry-After": "2"})

    @app.exception_handler(TimeoutError)
    async def timeout(_request: Request, _exc: TimeoutError) -> JSONResponse:
        return JSONResponse({"detail": f"no answer within {settings.timeout_s} s"}, 504)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            if err.get("type") == "json_invalid":
                parts.append(f"malformed JSON: {err.get('ctx', {}).get('error', 'cannot parse the body')}")
                continue
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, 422)

    app.include_router(run.router)
    app.include_router(heads.router)
    app.include_router(scenarios.router)
    app.include_router(card.router)
    app.include_router(live.router)
    app.include_router(pages.router)

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        """FastAPI's Swagger UI page, its assets served here rather than from a CDN."""
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        """FastAPI's ReDoc page, served offline: local script, no Google Fonts."""
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_STATIC}/favicon.png", with_google_fonts=False)

    # before /static, which would otherwise take /static/docs/... to frontend/static
    app.mount(DOCS_STATIC, StaticFiles(directory=DOCS_ASSETS), name="docs-static")
    app.mount("/static", StaticFiles(directory=pages.FRONTEND / "static"), name="static")
    return app
