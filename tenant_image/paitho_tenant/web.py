"""HTTP handlers: parse, call one domain function in a worker thread, answer.

The routes and their bodies are the contract in issue 3, point 8 (also served at
/openapi.json). Every /api route needs a logged-in session and an unsealed tenant.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import importlib.util
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg_pool import PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartParser
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

from paitho_tenant import (
    accounts,
    audit,
    dsar,
    export,
    keychain,
    leads,
    messages,
    pages,
    stage_runs,
    websec,
    workspaces,
)
from paitho_tenant.accounts import Session
from paitho_tenant.app import Components
from paitho_tenant.crypto import DataKey
from paitho_tenant.errors import (
    BadRequest,
    DatabaseUnavailable,
    Forbidden,
    ImportFailed,
    TooManyAttempts,
    Unauthorized,
    WrongPassphrase,
)
from paitho_tenant.ui.base import TEMPLATES
from paitho_tenant.ui.routes import routes as ui_routes

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_UNLOCK_WAIT = 30.0
MAX_UPLOAD_BYTES = 256 * 1024 * 1024
# Keep uploaded CSVs in memory: a lead file must never be spooled to a temporary file on disk.
MultiPartParser.spool_max_size = MAX_UPLOAD_BYTES


# -- plumbing -------------------------------------------------------------------------------
def _c(request: Request) -> Components:
    components: Components = request.app.state.components
    return components


async def _db(c: Components, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    def call() -> T:
        try:
            with c.pool.connection(timeout=10) as conn:
                return fn(conn, *args, **kwargs)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise DatabaseUnavailable("the tenant's database is unreachable") from exc

    return await run_in_threadpool(call)


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    raise TypeError(type(value).__name__)


def _json(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, default=_default, ensure_ascii=False)
    return Response(body, status_code=status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    """A JSON object body, or the form of a CSRF-token-checked HTML form post."""
    if request.scope.get("state", {}).get("csrf_form"):
        form = await request.form()
        if not websec.form_token_ok(
            request.cookies.get(websec.CSRF_COOKIE), str(form.get("csrf_token") or "")
        ):
            raise Forbidden("the form has expired: reload the page and try again")
        return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    try:
        data = await request.json()
    except ValueError as exc:
        raise BadRequest("the body must be a JSON object") from exc
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def _str(data: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


def _int(data: dict[str, Any], name: str, required: bool = True) -> int | None:
    value = data.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer")
    return value


def _origin(request: Request) -> str:
    return str(request.scope.get("state", {}).get("own_origin", ""))


def _session(request: Request) -> tuple[Components, Session, DataKey]:
    c = _c(request)
    key = c.vault.key()
    token = request.cookies.get(websec.session_cookie_name(_origin(request)))
    session = c.sessions.get(token)
    if session is None:
        raise Unauthorized("log in first: POST /login")
    return c, session, key


def _owner(request: Request) -> tuple[Components, Session, DataKey]:
    c, session, key = _session(request)
    if session.account.role != "owner":
        raise Forbidden("only the tenant's owner may do this")
    return c, session, key


def _actor(session: Session) -> str:
    return f"account:{session.account.id}"


def _csrf_page(request: Request, html: str, token: str, status: int = 200) -> Response:
    response = HTMLResponse(html, status_code=status)
    response.set_cookie(
        websec.CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=websec.is_https(_origin(request)),
        path="/",
    )
    return response


# -- sealed-state routes ---------------------------------------------------------------------
async def healthz(request: Request) -> Response:
    c = _c(request)

    def state(conn: psycopg.Connection[Any]) -> str:
        return c.vault.state(conn)

    try:
        current = await _db(c, state)
    except DatabaseUnavailable:
        return JSONResponse(
            {"state": "unavailable", "reason": "database unreachable"}, status_code=503
        )
    return JSONResponse({"state": current})


async def index(request: Request) -> Response:
    c = _c(request)
    current = await _db(c, c.vault.state)
    if current == "uninitialized":
        return RedirectResponse("/setup", status_code=303)
    if current == "sealed":
        return RedirectResponse("/unlock", status_code=303)
    return RedirectResponse("/app", status_code=303)


def _form_token(request: Request) -> str:
    """The double-submit token of this visitor's pre-login forms (reused while it lasts)."""
    current = request.cookies.get(websec.CSRF_COOKIE)
    return current if current and len(current) >= 32 else secrets.token_urlsafe(32)


def _public(request: Request, template: str, status: int = 200, **values: Any) -> Response:
    token = _form_token(request)
    html = TEMPLATES.get_template(template).render(csrf=token, **values)
    return _csrf_page(request, html, token, status)


async def setup_form(request: Request) -> Response:
    c = _c(request)
    if await _db(c, c.vault.state) != "uninitialized":
        return RedirectResponse("/", status_code=303)
    return _public(request, "setup.html")


async def unlock_form(request: Request) -> Response:
    if _c(request).vault.unsealed:
        return RedirectResponse("/", status_code=303)
    return _public(request, "unlock.html", message="")


async def login_form(request: Request) -> Response:
    c = _c(request)
    if not c.vault.unsealed:
        return RedirectResponse("/", status_code=303)
    return _public(request, "login.html", message="")


def _do_setup(
    conn: psycopg.Connection[Any],
    c: Components,
    email: str,
    password: str,
    passphrase: str | None,
    region: str,
) -> str | None:
    if "@" not in email or len(password) < accounts.MIN_PASSWORD_LENGTH:
        raise BadRequest(
            "owner_email must be an email address and owner_password at least "
            f"{accounts.MIN_PASSWORD_LENGTH} characters"
        )
    with conn.transaction():
        key, generated = c.vault.initialise(conn, passphrase)
        account_id = accounts.create_owner(conn, key, email, password)
        workspaces.create(conn, workspaces.DEFAULT_NAME, region)
        audit.record(conn, f"account:{account_id}", "vault.setup")
    c.vault.adopt(key)
    return generated


async def setup(request: Request) -> Response:
    c = _c(request)
    data = await _body(request)
    email = _str(data, "owner_email") or ""
    password = _str(data, "owner_password") or ""
    passphrase = _str(data, "passphrase", required=False)
    region = _str(data, "region", required=False) or "eu"
    generated = await _db(c, _do_setup, c, email, password, passphrase, region)
    log.info("tenant set up")
    if request.scope["state"].get("csrf_form"):
        if generated:
            return _public(request, "passphrase.html", 201, passphrase=generated)
        return RedirectResponse("/login", status_code=303)
    return _json({"passphrase": generated} if generated else {"state": "unsealed"}, 201)


async def _unlock(c: Components, passphrase: str) -> None:
    async with c.unlock_lock:
        wait = c.throttle.wait_time()
        if wait > MAX_UNLOCK_WAIT:
            raise TooManyAttempts("too many wrong passphrases: wait a minute and try again")
        if wait:
            await asyncio.sleep(wait)
        try:
            await _db(c, c.vault.unlock, passphrase)
        except WrongPassphrase:
            c.throttle.failed()
            raise
        c.throttle.succeeded()


async def unlock(request: Request) -> Response:
    c = _c(request)
    data = await _body(request)
    passphrase = _str(data, "passphrase") or ""
    form = bool(request.scope["state"].get("csrf_form"))
    try:
        await _unlock(c, passphrase)
    except WrongPassphrase:
        if form:
            return _public(request, "unlock.html", 401, message="Wrong passphrase.")
        raise
    if form:
        return RedirectResponse("/", status_code=303)
    return Response(status_code=204)


async def setup_confirm(request: Request) -> Response:
    """The passphrase page's confirmation step: the owner types the passphrase back; it must
    unwrap the data key (same throttle and audit as an unlock)."""
    c = _c(request)
    data = await _body(request)
    try:
        await _unlock(c, _str(data, "passphrase") or "")
    except WrongPassphrase:
        return _public(
            request,
            "passphrase_retry.html",
            401,
            message="That is not the passphrase. Check what you saved and type it again.",
        )
    return RedirectResponse("/login", status_code=303)


async def unlock_from_file(c: Components, path: Path) -> None:
    """Self-hosted opt-in: unseal at start from a file the deployment names."""
    try:
        passphrase = path.read_text(encoding="utf-8").strip()
    except OSError:
        log.error("unlock file %s is not readable; staying sealed", path)
        return
    if path.stat().st_mode & 0o077:
        log.warning("unlock file %s is readable by group or others; restrict it to 0600", path)
    try:
        await _unlock(c, passphrase)
    except Exception as exc:
        log.error("unlock from file failed (%s); staying sealed", type(exc).__name__)
        return
    log.info("unsealed from the unlock file")


async def login(request: Request) -> Response:
    c = _c(request)
    data = await _body(request)
    email = _str(data, "email") or ""
    password = _str(data, "password") or ""
    key = c.vault.key()

    def check(conn: psycopg.Connection[Any]) -> accounts.Account:
        try:
            account = accounts.authenticate(conn, key, email, password)
        except Unauthorized:
            audit.record(conn, "anonymous", "auth.login_failed")
            raise
        audit.record(conn, f"account:{account.id}", "auth.login")
        return account

    form = bool(request.scope["state"].get("csrf_form"))
    try:
        account = await _db(c, check)
    except Unauthorized:
        if form:
            return _public(request, "login.html", 401, message="Wrong email or password.")
        raise
    token = c.sessions.create(account)
    origin = _origin(request)
    response: Response = (
        RedirectResponse("/app", status_code=303) if form else Response(status_code=204)
    )
    response.set_cookie(
        websec.session_cookie_name(origin),
        token,
        httponly=True,
        samesite="strict",
        secure=websec.is_https(origin),
        path="/",
    )
    return response


async def logout(request: Request) -> Response:
    c = _c(request)
    name = websec.session_cookie_name(_origin(request))
    token = request.cookies.get(name)
    form = bool(request.scope["state"].get("csrf_form"))
    if form:
        # The app's pages post the session's own token (websec.py).
        session = c.sessions.get(token)
        sent = (await request.form()).get("csrf_token")
        if session is not None and not websec.form_token_ok(
            session.csrf, sent if isinstance(sent, str) else None
        ):
            raise Forbidden("the form has expired: reload the page and try again")
    c.sessions.drop(token)
    response: Response = (
        RedirectResponse("/login", status_code=303) if form else Response(status_code=204)
    )
    response.delete_cookie(name, path="/")
    return response


async def seal(request: Request) -> Response:
    c, session, _ = _owner(request)
    await _db(c, audit.record, _actor(session), "vault.sealed")
    c.vault.seal()
    c.sessions.clear()
    return Response(status_code=204)


# -- API ------------------------------------------------------------------------------------
async def list_workspaces(request: Request) -> Response:
    c, _, _ = _session(request)
    return _json(await _db(c, workspaces.list_all))


async def create_workspace(request: Request) -> Response:
    c, session, _ = _session(request)
    data = await _body(request)

    def run(conn: psycopg.Connection[Any]) -> dict[str, Any]:
        row = workspaces.create(conn, _str(data, "name") or "", _str(data, "region") or "")
        audit.record(conn, _actor(session), "workspace.created", {"workspace_id": row["id"]})
        return row

    return _json(await _db(c, run), 201)


def _ws(request: Request, data: dict[str, Any] | None = None) -> str | None:
    value = (data or {}).get("workspace") or request.query_params.get("workspace")
    return None if value is None else str(value)


async def brands(request: Request) -> Response:
    c, session, key = _session(request)
    if request.method == "GET":
        ws = _ws(request)
        return _json(
            await _db(
                c, lambda conn: workspaces.list_brands(conn, key, workspaces.resolve(conn, ws))
            )
        )
    data = await _body(request)

    def run(conn: psycopg.Connection[Any]) -> int:
        brand_id = workspaces.create_brand(
            conn,
            key,
            workspaces.resolve(conn, _ws(request, data)),
            _str(data, "name") or "",
            _str(data, "sending_identity", False),
            _str(data, "voice", False),
            _str(data, "icp", False),
        )
        audit.record(conn, _actor(session), "brand.created", {"brand_id": brand_id})
        return brand_id

    return _json({"id": await _db(c, run)}, 201)


async def list_leads(request: Request) -> Response:
    c, _, key = _session(request)
    ws = _ws(request)
    limit = min(int(request.query_params.get("limit", "100")), 1000)
    offset = int(request.query_params.get("offset", "0"))
    return _json(
        await _db(
            c, lambda conn: leads.list_leads(conn, key, workspaces.resolve(conn, ws), limit, offset)
        )
    )


async def import_leads(request: Request) -> Response:
    c, session, key = _session(request)
    if int(request.headers.get("content-length", "0")) > MAX_UPLOAD_BYTES:
        raise BadRequest("the file is larger than 256 MB: split it")
    form = await request.form(max_files=1, max_fields=10)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise BadRequest("send the CSV as the multipart field 'file'")
    ws_value = form.get("workspace")
    mapping_text = form.get("mapping")
    mapping = None
    if isinstance(mapping_text, str) and mapping_text:
        try:
            mapping = json.loads(mapping_text)
        except ValueError as exc:
            raise BadRequest("mapping must be a JSON object of CSV header to field") from exc
        if not isinstance(mapping, dict):
            raise BadRequest("mapping must be a JSON object of CSV header to field")

    def run(conn: psycopg.Connection[Any]) -> dict[str, Any]:
        from paitho_tenant.csvimport import CsvFormatError, LeadCsvReader

        workspace_id = workspaces.resolve(conn, ws_value if isinstance(ws_value, str) else None)
        try:
            reader = LeadCsvReader(upload.file, mapping)
            result = leads.import_rows(conn, key, workspace_id, reader.rows())
        except CsvFormatError as exc:
            audit.record(
                conn, _actor(session), "leads.import_failed", {"workspace_id": workspace_id}
            )
            raise ImportFailed(exc.message) from exc
        audit.record(
            conn,
            _actor(session),
            "leads.imported",
            {
                "workspace_id": workspace_id,
                "imported": result.imported,
                "duplicates": result.duplicates,
                "errors": result.error_count,
            },
        )
        return {
            **result.as_json(),
            "encoding": reader.encoding,
            "delimiter": reader.delimiter,
            "column_map": reader.column_map,
        }

    try:
        return _json(await _db(c, run))
    finally:
        await upload.close()


async def keychain_root(request: Request) -> Response:
    c, session, key = _session(request)
    if request.method == "GET":
        ws = _ws(request)
        return _json(
            await _db(c, lambda conn: keychain.list_keys(conn, key, workspaces.resolve(conn, ws)))
        )
    data = await _body(request)

    def run(conn: psycopg.Connection[Any]) -> dict[str, Any]:
        row = keychain.add(
            conn,
            key,
            workspaces.resolve(conn, _ws(request, data)),
            _str(data, "kind") or "",
            _str(data, "label") or "",
            _str(data, "secret") or "",
        )
        audit.record(
            conn, _actor(session), "keychain.added", {"key_id": row["id"], "kind": row["kind"]}
        )
        return row

    return _json(await _db(c, run), 201)


async def keychain_item(request: Request) -> Response:
    c, session, _ = _session(request)
    key_id = int(request.path_params["key_id"])

    def run(conn: psycopg.Connection[Any]) -> None:
        keychain.remove(conn, workspaces.resolve(conn, _ws(request)), key_id)
        audit.record(conn, _actor(session), "keychain.removed", {"key_id": key_id})

    await _db(c, run)
    return Response(status_code=204)


async def create_message(request: Request) -> Response:
    c, _, key = _session(request)
    data = await _body(request)
    headers = data.get("headers", {})

    def run(conn: psycopg.Connection[Any]) -> int:
        return messages.add(
            conn,
            key,
            workspaces.resolve(conn, _ws(request, data)),
            _str(data, "direction") or "",
            headers,
            _str(data, "body") or "",
            _int(data, "lead_id", False),
        )

    return _json({"id": await _db(c, run)}, 201)


async def get_message(request: Request) -> Response:
    c, _, key = _session(request)
    message_id = int(request.path_params["message_id"])
    ws = _ws(request)
    return _json(
        await _db(c, lambda conn: messages.get(conn, key, workspaces.resolve(conn, ws), message_id))
    )


async def create_stage_run(request: Request) -> Response:
    c, _, key = _session(request)
    data = await _body(request)

    def run(conn: psycopg.Connection[Any]) -> int:
        return stage_runs.record(
            conn,
            key,
            workspaces.resolve(conn, _ws(request, data)),
            stage=_str(data, "stage") or "",
            model=_str(data, "model") or "",
            prompt=_str(data, "prompt") or "",
            response=_str(data, "response") or "",
            input_tokens=_int(data, "input_tokens") or 0,
            output_tokens=_int(data, "output_tokens") or 0,
            duration_ms=_int(data, "duration_ms") or 0,
            started_at=dt.datetime.now(dt.UTC),
            lead_id=_int(data, "lead_id", False),
        )

    return _json({"id": await _db(c, run)}, 201)


async def get_stage_run(request: Request) -> Response:
    c, _, key = _session(request)
    run_id = int(request.path_params["run_id"])
    ws = _ws(request)
    return _json(
        await _db(c, lambda conn: stage_runs.get(conn, key, workspaces.resolve(conn, ws), run_id))
    )


async def rotate(request: Request) -> Response:
    c, session, _ = _owner(request)
    data = await _body(request)
    current = _str(data, "current_passphrase") or ""
    new = _str(data, "new_passphrase", required=False)
    generated = await _db(c, c.vault.rotate, current, new, _actor(session))
    return _json({"passphrase": generated} if generated else {"rotated": True})


async def dsar_request(request: Request) -> Response:
    c, session, key = _owner(request)
    data = await _body(request)
    kind = _str(data, "kind") or ""
    email = _str(data, "email") or ""
    return _json(await _db(c, dsar.handle, key, kind, email, _actor(session)))


async def export_zip(request: Request) -> Response:
    c, session, key = _owner(request)
    await _db(c, audit.record, _actor(session), "export.downloaded")

    def chunks() -> Iterator[bytes]:
        with c.pool.connection(timeout=10) as conn:
            yield from export.stream_zip(conn, key)

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        chunks(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="paitho-export-{stamp}.zip"'},
    )


async def trust(request: Request) -> Response:
    return HTMLResponse(pages.trust_page())


async def openapi(request: Request) -> Response:
    return JSONResponse(pages.openapi())


async def security_txt(request: Request) -> Response:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=180)).strftime("%Y-%m-%dT00:00:00Z")
    return Response(
        f"Contact: mailto:security@paitho.ai\nExpires: {expires}\nPreferred-Languages: en\n",
        media_type="text/plain; charset=utf-8",
    )


class LazyArea:
    """The routes of another area (a module with a module-level `routes` list), imported on the
    first request that reaches them: some areas take seconds to import (provider SDKs) and the
    tenant must start in well under a second."""

    def __init__(self, module: str) -> None:
        self.module = module
        self._router: Router | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._router is None:
            module = await run_in_threadpool(importlib.import_module, self.module)
            self._router = Router(routes=list(module.routes))
        await self._router(scope, receive, send)


# Other areas' HTTP edges: module, then the paths (full, as in the module) routed to it.
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("paitho_tenant.ai.web", ("/api/ai/{rest:path}",)),
    ("paitho_tenant.outbound.web", ("/api/mailboxes", "/u/{rest:path}")),
    ("paitho_tenant.jobs", ("/internal/jobs/{job}",)),
)


def _area_routes() -> list[Route]:
    mounted = []
    for module, paths in AREAS:
        if importlib.util.find_spec(module) is None:
            continue
        area = LazyArea(module)
        mounted += [Route(path, area) for path in paths]
    return mounted


def routes() -> list[Route]:
    return [
        *_area_routes(),
        Route("/healthz", healthz),
        Route("/", index),
        Route("/setup", setup_form, methods=["GET"]),
        Route("/setup", setup, methods=["POST"]),
        Route("/unlock", unlock_form, methods=["GET"]),
        Route("/unlock", unlock, methods=["POST"]),
        Route("/setup/confirm", setup_confirm, methods=["POST"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/seal", seal, methods=["POST"]),
        Route("/api/workspaces", list_workspaces, methods=["GET"]),
        Route("/api/workspaces", create_workspace, methods=["POST"]),
        Route("/api/brands", brands, methods=["GET", "POST"]),
        Route("/api/leads", list_leads, methods=["GET"]),
        Route("/api/leads/import", import_leads, methods=["POST"]),
        Route("/api/keychain", keychain_root, methods=["GET", "POST"]),
        Route("/api/keychain/{key_id:int}", keychain_item, methods=["DELETE"]),
        Route("/api/messages", create_message, methods=["POST"]),
        Route("/api/messages/{message_id:int}", get_message, methods=["GET"]),
        Route("/api/stage-runs", create_stage_run, methods=["POST"]),
        Route("/api/stage-runs/{run_id:int}", get_stage_run, methods=["GET"]),
        Route("/api/vault/rotate", rotate, methods=["POST"]),
        Route("/api/dsar", dsar_request, methods=["POST"]),
        Route("/api/export", export_zip, methods=["GET"]),
        Route("/trust", trust, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/.well-known/security.txt", security_txt, methods=["GET"]),
        *ui_routes(),
    ]
