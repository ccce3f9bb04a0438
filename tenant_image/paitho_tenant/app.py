"""ASGI app factory for the tenant (minimal: health only, until the vault lands)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def create_app(conninfo: str, slug: str) -> Starlette:
    pool = AsyncConnectionPool(conninfo, min_size=1, max_size=4, open=False)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await pool.open(wait=False)
        try:
            yield
        finally:
            await pool.close()

    async def healthz(request: Request) -> JSONResponse:
        try:
            async with pool.connection(timeout=5) as conn:
                cur = await conn.execute("SELECT pg_backend_pid()")
                await cur.fetchone()
        except Exception:
            return JSONResponse({"state": "unavailable", "slug": slug}, status_code=503)
        return JSONResponse({"state": "uninitialized", "slug": slug, "pid": os.getpid()})

    return Starlette(routes=[Route("/healthz", healthz)], lifespan=lifespan)
