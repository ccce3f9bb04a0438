"""ASGI app factory for the tenant. The app owns its connection pool (opened in the lifespan,
without waiting, so the process starts fast) and its vault; every process starts sealed.

Handlers parse the request, call one domain function in a worker thread, and map errors to
responses; `web.py` holds them, this module wires them up.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paitho_tenant import websec
from paitho_tenant.accounts import SessionStore
from paitho_tenant.db import app_conninfo
from paitho_tenant.errors import TenantError
from paitho_tenant.licence import READ_ONLY_WRITES, LicenceCheck
from paitho_tenant.vault import UnlockThrottle, Vault

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """Resolved once at the edge (cli.py)."""

    admin_conninfo: str
    slug: str = "tenant"
    origin: str | None = None
    outbound_interval: float = 30.0
    unlock_file: Path | None = None
    pool_max: int = 8
    # The control plane's licence token file and its trusted Ed25519 public keys (key id, raw
    # 32 bytes). No keys: the licence check is off (self-hosted).
    licence_file: Path | None = None
    licence_keys: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Components:
    settings: Settings
    pool: ConnectionPool
    vault: Vault = field(default_factory=Vault)
    throttle: UnlockThrottle = field(default_factory=UnlockThrottle)
    sessions: SessionStore = field(default_factory=SessionStore)
    unlock_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    licence: LicenceCheck = field(default_factory=lambda: LicenceCheck("tenant", None, {}))


class SecurityMiddleware:
    """Security headers on every response; CSRF refusal of mutating requests (websec.py)."""

    def __init__(self, app: ASGIApp, configured_origin: str | None) -> None:
        self.app = app
        self.configured_origin = configured_origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        origin = websec.own_origin(
            self.configured_origin, request.url.scheme, request.headers.get("host")
        )
        scope.setdefault("state", {})["own_origin"] = origin
        verdict = websec.csrf_verdict(
            request.method, request.url.path, dict(request.headers), origin
        )
        scope["state"]["csrf_form"] = verdict == "form"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                for name, value in websec.SECURITY_HEADERS.items():
                    headers.append((name.lower().encode(), value.encode()))
                if websec.is_https(origin):
                    headers.append((b"strict-transport-security", websec.HSTS.encode()))
            await send(message)

        if (
            verdict != "refuse"
            and request.method in websec.MUTATING
            and not websec.is_form_path(request.url.path)
            and not request.url.path.startswith(READ_ONLY_WRITES)
            and _read_only(scope)
        ):
            response = JSONResponse(
                {
                    "error": "licence_read_only",
                    "message": "the licence is not current: this tenant is read-only "
                    "(export and data-subject requests still work)",
                },
                status_code=402,
            )
            await response(scope, receive, send_with_headers)
            return
        if verdict == "refuse":
            response = JSONResponse(
                {
                    "error": "csrf",
                    "message": "cross-site request refused: send Origin equal to this "
                    "tenant's origin and X-Requested-With: XMLHttpRequest",
                },
                status_code=403,
            )
            await response(scope, receive, send_with_headers)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send_with_headers(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            # The message of an unexpected exception may quote input: log the type and the
            # frames, never the text, and do not let the server log it either.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error(
                "unhandled %s on %s %s\n%s",
                type(exc).__name__,
                request.method,
                request.url.path,
                frames,
            )
            if not started:
                response = JSONResponse(
                    {"error": "internal_error", "message": "internal error"}, status_code=500
                )
                await response(scope, receive, send_with_headers)


def _read_only(scope: Scope) -> bool:
    app = scope.get("app")
    components = getattr(getattr(app, "state", None), "components", None)
    return isinstance(components, Components) and components.licence.status().read_only


async def tenant_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TenantError)
    headers = {"Retry-After": "60"} if exc.status == 429 else None
    return JSONResponse(
        {"error": exc.code, "message": exc.message}, status_code=exc.status, headers=headers
    )


def create_app(settings: Settings) -> Starlette:
    from paitho_tenant import web

    pool = ConnectionPool(
        app_conninfo(settings.admin_conninfo),
        min_size=1,
        max_size=settings.pool_max,
        open=False,
        kwargs={"autocommit": True},
        name="tenant",
        # A restarted PostgreSQL leaves dead connections in the pool: check each one on
        # checkout so requests never see a stale one (the platform restarts clusters).
        check=ConnectionPool.check_connection,
        reconnect_timeout=3600,
    )
    components = Components(settings, pool)
    components.licence = LicenceCheck(
        settings.slug, settings.licence_file, dict(settings.licence_keys)
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool.open(wait=False)
        components.unlock_lock = asyncio.Lock()
        if settings.unlock_file is not None:
            await web.unlock_from_file(components, settings.unlock_file)
        engines: list[Any] = []
        if settings.origin:  # unsubscribe links need the tenant's public origin

            def start_engine() -> None:
                # imported off the startup path: the tenant answers /healthz first
                from paitho_tenant.outbound.engine import OutboundEngine

                engine = OutboundEngine(
                    app_conninfo(settings.admin_conninfo),
                    components.vault,
                    settings.origin or "",
                    interval=settings.outbound_interval,
                )
                engines.append(engine)
                engine.start()

            threading.Thread(target=start_engine, name="outbound-start", daemon=True).start()
        try:
            yield
        finally:
            for engine in engines:
                await run_in_threadpool(engine.stop)
            components.vault.seal()
            components.sessions.clear()
            await run_in_threadpool(pool.close)

    app = Starlette(
        routes=web.routes(),
        lifespan=lifespan,
        middleware=[Middleware(SecurityMiddleware, configured_origin=settings.origin)],
        exception_handlers={TenantError: tenant_error},
    )
    app.state.components = components
    return app
