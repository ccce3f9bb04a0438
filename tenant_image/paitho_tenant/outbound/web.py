"""HTTP edge of the outbound engine (issue 6, point 7). Mount with
`app.router.routes.extend(outbound.web.routes)` (or `make_routes(config)` to inject the TLS
context factory the mailbox check uses).

    POST /api/mailboxes   session + CSRF like every /api route; tests SMTP and IMAP, stores
                          the password in the keychain; 201 {"id"} or 422 {"check", "message"}
    GET  /u/{token}       confirmation page with one button (no session)
    POST /u/{token}       RFC 8058 one-click: unsubscribes at once; the token is the authority
                          (no session, no CSRF token). While sealed the token is kept and
                          applied at the next unlock (202).
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from paitho_tenant import audit, websec, workspaces
from paitho_tenant.app import Components
from paitho_tenant.errors import BadRequest, DatabaseUnavailable, Sealed, Unauthorized
from paitho_tenant.outbound import mailbox, store, unsubscribe
from paitho_tenant.outbound.errors import MailboxCheckFailed, TokenInvalid

log = logging.getLogger(__name__)

_STRINGS = ("label", "from_address", "smtp_host", "imap_host", "username", "password")
_PORTS = ("smtp_port", "imap_port")
_SECURITY = ("smtp_security", "imap_security")


@dataclass(frozen=True)
class OutboundConfig:
    ssl_factory: mailbox.SslFactory = mailbox.default_ssl


def _components(request: Request) -> Components:
    components: Components = request.app.state.components
    return components


def parse_mailbox(data: dict[str, Any]) -> tuple[store.MailboxSpec, str]:
    """The request body as a MailboxSpec and the password; BadRequest names the bad field."""
    for name in _STRINGS:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise BadRequest(f"{name} is required and must be a non-empty string")
    for name in _PORTS:
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise BadRequest(f"{name} must be a port number (1-65535)")
    for name in _SECURITY:
        if data.get(name) not in store.SECURITIES:
            raise BadRequest(f"{name} must be one of: " + ", ".join(store.SECURITIES))
    if "@" not in data["from_address"]:
        raise BadRequest("from_address must be an email address")
    auth = data.get("auth", "password")
    if auth not in ("password", "xoauth2"):
        raise BadRequest("auth must be 'password' or 'xoauth2'")
    cap = data.get("daily_cap", 50)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
        raise BadRequest("daily_cap must be a non-negative integer")
    spec = store.MailboxSpec(
        label=data["label"].strip()[:200],
        from_address=data["from_address"].strip(),
        smtp_host=data["smtp_host"].strip(),
        smtp_port=data["smtp_port"],
        smtp_security=data["smtp_security"],
        imap_host=data["imap_host"].strip(),
        imap_port=data["imap_port"],
        imap_security=data["imap_security"],
        username=data["username"].strip(),
        auth=auth,
        daily_cap=cap,
    )
    return spec, data["password"]


def make_routes(config: OutboundConfig | None = None) -> list[BaseRoute]:
    cfg = config or OutboundConfig()

    async def add_mailbox(request: Request) -> Response:
        c = _components(request)
        key = c.vault.key()
        origin = str(request.scope.get("state", {}).get("own_origin", ""))
        session = c.sessions.get(request.cookies.get(websec.session_cookie_name(origin)))
        if session is None:
            raise Unauthorized("log in first: POST /login")
        try:
            data = await request.json()
        except ValueError as exc:
            raise BadRequest("the body must be a JSON object") from exc
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        spec, secret = parse_mailbox(data)
        try:
            # a deployment (or a test) may trust a private CA by setting this on app.state
            factory = getattr(request.app.state, "outbound_ssl_factory", None) or cfg.ssl_factory
            checked = await run_in_threadpool(mailbox.check, spec, secret, factory)
        except MailboxCheckFailed as exc:
            log.info("mailbox check failed at %s", exc.check)
            return JSONResponse(
                {"error": exc.code, "check": exc.check, "message": exc.message}, status_code=422
            )
        ws = data.get("workspace")

        def save(conn: psycopg.Connection[Any]) -> int:
            workspace_id = workspaces.resolve(conn, None if ws is None else str(ws))
            mailbox_id = store.create_mailbox(
                conn, key, workspace_id, spec, secret, checked.sent_folder
            )
            audit.record(
                conn, f"account:{session.account.id}", "mailbox.added", {"mailbox_id": mailbox_id}
            )
            return mailbox_id

        mailbox_id = await _db(c, save)
        return JSONResponse(
            {"id": mailbox_id, "sent_folder": checked.sent_folder, "idle": checked.idle},
            status_code=201,
        )

    return [
        Route("/api/mailboxes", add_mailbox, methods=["POST"]),
        Route("/u/{token}", unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", unsubscribe_post, methods=["POST"]),
    ]


async def _db(c: Components, fn: Any, *args: Any) -> Any:
    def call() -> Any:
        try:
            with c.pool.connection(timeout=10) as conn:
                return fn(conn, *args)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable("the tenant's database is unreachable") from exc

    return await run_in_threadpool(call)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>{title}</h1>{content}</main></body></html>"""


def _page(title: str, content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), content=content), status)


async def unsubscribe_page(request: Request) -> Response:
    token = request.path_params["token"]
    action = html.escape("/u/" + token, quote=True)
    return _page(
        "Unsubscribe",
        "<p>Stop receiving these emails? One click and no further message goes to you.</p>"
        f'<form method="post" action="{action}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>',
    )


async def unsubscribe_post(request: Request) -> Response:
    c = _components(request)
    token = str(request.path_params["token"])
    try:
        key = c.vault.key()
    except Sealed:
        try:
            await _db(c, unsubscribe.keep_for_later, token)
        except TokenInvalid:
            return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
        return _page("Unsubscribed", "<p>Your request is recorded.</p>", 202)
    try:
        await _db(c, unsubscribe.by_token, key, token)
    except TokenInvalid:
        return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
    return _page("Unsubscribed", "<p>You are unsubscribed. No further message will follow.</p>")


routes: list[BaseRoute] = make_routes()
