"""Plumbing of the web app's pages: templates, the page context, the guard that sends a visitor
to setup, unlock or login first, and the CSRF check of every posted form.

`page(get, post)` builds an endpoint: GET renders; POST checks the form's token against the
session's, runs `post`, and on a `TenantError` renders `get` again with the error's message
and status (Post/Redirect/Get on success).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import jinja2
import psycopg
from psycopg_pool import PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from paitho_tenant import websec, workspaces
from paitho_tenant.accounts import Session
from paitho_tenant.app import Components
from paitho_tenant.crypto import DataKey
from paitho_tenant.errors import DatabaseUnavailable, Forbidden, Sealed, TenantError
from paitho_tenant.licence import READ_ONLY_WRITES, Status

log = logging.getLogger(__name__)
T = TypeVar("T")

PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(PACKAGE / "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)

# Notices shown after a redirect (`?ok=<code>`): fixed texts, nothing reflected from the URL.
NOTICES = {
    "brand": "Brand created.",
    "key": "Key stored. It can no longer be read back.",
    "key_removed": "Key removed.",
    "workspace": "Workspace created.",
    "switched": "Workspace switched.",
    "settings": "Settings saved.",
    "mailbox": "Mailbox added.",
    "decided": "Decision recorded.",
    "saved": "Saved.",
    "drafted": "Drafts written and audited: they are waiting for your review.",
}


class Redirect(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def components(request: Request) -> Components:
    c: Components = request.app.state.components
    return c


def own_origin(request: Request) -> str:
    return str(request.scope.get("state", {}).get("own_origin", ""))


async def db(c: Components, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    def call() -> T:
        try:
            with c.pool.connection(timeout=10) as conn:
                return fn(conn, *args, **kwargs)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise DatabaseUnavailable("the tenant's database is unreachable") from exc

    return await run_in_threadpool(call)


def licence_status(c: Components) -> Status:
    return c.licence.status()


def render(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(**values)
    return HTMLResponse(html, status_code=status)


@dataclass
class Ctx:
    """Everything a page of the logged-in app needs."""

    request: Request
    c: Components
    session: Session
    key: DataKey
    workspace_id: int
    workspaces: list[dict[str, Any]]
    licence: Status
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadFile] = field(default_factory=dict)
    error: str | None = None
    note: str | None = None
    status: int = 200

    @property
    def actor(self) -> str:
        return f"account:{self.session.account.id}"

    @property
    def is_owner(self) -> bool:
        return self.session.account.role == "owner"

    def q(self, name: str, default: str = "") -> str:
        return str(self.request.query_params.get(name, default))

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await db(self.c, fn, *args, **kwargs)

    def render(self, template: str, nav: str, **values: Any) -> HTMLResponse:
        notice = NOTICES.get(self.q("ok"))
        current = next((w for w in self.workspaces if w["id"] == self.workspace_id), None)
        return render(
            template,
            self.status,
            csrf=self.session.csrf,
            nav=nav,
            error=self.error,
            notice=notice,
            licence=self.licence,
            workspaces=self.workspaces,
            workspace=current,
            is_owner=self.is_owner,
            **values,
        )

    def partial(self, template: str, **values: Any) -> HTMLResponse:
        return render(template, self.status, csrf=self.session.csrf, **values)


def _pick_workspace(conn: psycopg.Connection[Any], wanted: str | None) -> tuple[int, list[Any]]:
    rows = workspaces.list_all(conn)
    ids = {int(r["id"]) for r in rows}
    if wanted and wanted.isdigit() and int(wanted) in ids:
        return int(wanted), rows
    return int(rows[0]["id"]) if rows else 0, rows


async def context(request: Request) -> Ctx:
    c = components(request)
    if not c.vault.unsealed:
        state = await db(c, c.vault.state)
        raise Redirect("/setup" if state == "uninitialized" else "/unlock")
    try:
        key = c.vault.key()
    except Sealed as exc:
        raise Redirect("/unlock") from exc
    session = c.sessions.get(request.cookies.get(websec.session_cookie_name(own_origin(request))))
    if session is None:
        raise Redirect("/login")
    wanted = None if session.workspace_id is None else str(session.workspace_id)
    ws_id, rows = await db(c, _pick_workspace, wanted)
    return Ctx(request, c, session, key, ws_id, rows, licence_status(c))


async def _read_form(ctx: Ctx) -> None:
    form: FormData = await ctx.request.form(max_files=1, max_fields=200)
    token = form.get("csrf_token")
    if not websec.form_token_ok(ctx.session.csrf, token if isinstance(token, str) else None):
        raise Forbidden("the form has expired: reload the page and try again")
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            ctx.files[name] = value
        elif name != "csrf_token":
            ctx.form[name] = value


PageFn = Callable[[Ctx], Awaitable[Response]]


def page(
    get: PageFn, post: PageFn | None = None, reads_only: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """`reads_only`: the POST only reads (a search), so it works in read-only mode too."""

    async def endpoint(request: Request) -> Response:
        try:
            ctx = await context(request)
        except Redirect as redirect:
            if request.headers.get("hx-request"):
                return Response(status_code=204, headers={"HX-Redirect": redirect.url})
            return RedirectResponse(redirect.url, status_code=303)
        if request.method != "POST" or post is None:
            return await get(ctx)
        try:
            await _read_form(ctx)
        except Forbidden as exc:
            return render("error.html", 403, message=exc.message)
        if (
            ctx.licence.read_only
            and not reads_only
            and not request.url.path.startswith(READ_ONLY_WRITES)
        ):
            ctx.error, ctx.status = "The licence is not current: Paitho is read-only.", 402
            return await get(ctx)
        try:
            return await post(ctx)
        except TenantError as exc:
            ctx.error, ctx.status = exc.message, exc.status
            return await get(ctx)
        finally:
            for upload in ctx.files.values():
                await upload.close()

    return endpoint


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
