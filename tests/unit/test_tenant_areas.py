"""Other areas' routes are mounted lazily: imported on the first request that reaches them,
so a slow-to-import area does not slow the tenant's start (no I/O: in-process ASGI)."""

from __future__ import annotations

import asyncio
import sys

import httpx
from paitho_tenant import websec
from paitho_tenant.web import LazyArea
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"area {request.url.path}")


routes = [Route("/api/demo/hello", _hello)]


def test_lazy_area_imports_on_first_request_only() -> None:
    """The module is imported at the first request, and the full path is routed within it."""
    area = LazyArea(__name__)
    assert area._router is None

    async def go() -> tuple[int, str, int]:
        transport = httpx.ASGITransport(app=area)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = await client.get("/api/demo/hello")
            missing = await client.get("/api/demo/nope")
        return first.status_code, first.text, missing.status_code

    assert asyncio.run(go()) == (200, "area /api/demo/hello", 404)
    assert area._router is not None
    assert __name__ in sys.modules


def test_one_click_unsubscribe_is_exempt_from_csrf() -> None:
    """RFC 8058 one-click POSTs to /u/{token} come without Origin and are let through."""
    assert websec.csrf_verdict("POST", "/u/abc123", {}, "https://acme.paitho.ai") == "ok"
    assert websec.csrf_verdict("POST", "/unlock", {}, "https://acme.paitho.ai") == "refuse"
