"""HTTP routes of the AI stages (`routes`, to be mounted by the tenant app). Every route needs a
logged-in session and an unsealed tenant; handlers parse, call one function in a worker thread,
answer. Errors are TenantError subclasses, answered by the app's handler with their status.

The service is `app.state.ai` when the composition root set one (`install(app, service)`);
otherwise one is built on first use from the app's pool and vault with the SDKs' default
endpoints.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from paitho_tenant import audit, websec, workspaces
from paitho_tenant.ai import enrichment, review, runs, templates
from paitho_tenant.ai.providers import ProviderRegistry
from paitho_tenant.ai.service import AIService
from paitho_tenant.errors import BadRequest, Unauthorized

T = TypeVar("T")
_build_lock = threading.Lock()


def install(app: Starlette, service: AIService) -> None:
    app.state.ai = service


def _service(request: Request) -> AIService:
    state = request.app.state
    with _build_lock:
        if getattr(state, "ai", None) is None:
            c = state.components
            state.ai = AIService(
                connect=lambda: c.pool.connection(timeout=10),
                data_key=c.vault.key,
                registry=ProviderRegistry(),
            )
    service: AIService = state.ai
    return service


def _actor(request: Request) -> str:
    c = request.app.state.components
    if not c.vault.unsealed:
        ai = getattr(request.app.state, "ai", None)
        if ai is not None:
            ai.registry.clear()  # the SDK clients hold plaintext keys: not while sealed
    c.vault.key()  # Sealed (423) before anything else
    origin = str(request.scope.get("state", {}).get("own_origin", ""))
    session = c.sessions.get(request.cookies.get(websec.session_cookie_name(origin)))
    if session is None:
        raise Unauthorized("log in first: POST /login")
    return f"account:{session.account.id}"


async def _run(fn: Callable[[], T]) -> T:
    return await run_in_threadpool(fn)


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, default=_default, ensure_ascii=False),
        status_code=status,
        media_type="application/json",
    )


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def _int(data: dict[str, Any], name: str, required: bool = True) -> int | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer")
    return value


def _need_int(data: dict[str, Any], name: str) -> int:
    value = _int(data, name)
    assert value is not None
    return value


def _str(data: dict[str, Any], name: str, required: bool = True) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadRequest(f"{name} must be a non-empty string")
    return value


def _money(data: dict[str, Any], name: str) -> Decimal:
    try:
        value = Decimal(str(data.get(name)))
    except InvalidOperation:
        raise BadRequest(f"{name} must be a number") from None
    if not value.is_finite():
        raise BadRequest(f"{name} must be a number")
    return value


def _ws(svc: AIService, request: Request, data: dict[str, Any] | None = None) -> int:
    value = (data or {}).get("workspace") or request.query_params.get("workspace")
    with svc.connect() as conn:
        return workspaces.resolve(conn, value)


def _conn_call(svc: AIService, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
    with svc.connect() as conn:
        return fn(conn)


# -- stages -------------------------------------------------------------------------------------
async def qualify(request: Request) -> Response:
    _actor(request)
    svc, data = _service(request), await _body(request)

    def go() -> dict[str, Any]:
        return svc.qualify(
            _ws(svc, request, data),
            _need_int(data, "lead_id"),
            _need_int(data, "brand_id"),
            _need_int(data, "key_id"),
            _str(data, "model"),
        )

    return _json(await _run(go), 201)


async def create_draft(request: Request) -> Response:
    _actor(request)
    svc, data = _service(request), await _body(request)
    step = _int(data, "step", required=False) or 1

    def go() -> dict[str, Any]:
        return review.draft_for_lead(
            svc,
            _ws(svc, request, data),
            _need_int(data, "campaign_id"),
            _need_int(data, "lead_id"),
            step,
        )

    return _json(await _run(go), 201)


async def list_drafts(request: Request) -> Response:
    _actor(request)
    svc = _service(request)
    status = request.query_params.get("status") or None
    return _json(
        await _run(
            lambda: _conn_call(svc, lambda c: review.list_drafts(c, _ws(svc, request), status))
        )
    )


async def get_draft(request: Request) -> Response:
    _actor(request)
    svc = _service(request)
    draft_id = int(request.path_params["draft_id"])
    key = svc.data_key()
    return _json(
        await _run(
            lambda: _conn_call(svc, lambda c: review.get_draft(c, key, _ws(svc, request), draft_id))
        )
    )


async def decide_draft(request: Request) -> Response:
    actor = _actor(request)
    svc = _service(request)
    draft_id = int(request.path_params["draft_id"])
    action = request.path_params["action"]
    data = await _body(request) if action == "edit" else {}
    ws = await _run(lambda: _ws(svc, request, data))
    if action == "approve":
        await _run(lambda: review.approve(svc, ws, draft_id, actor))
        return _json({"id": draft_id, "status": "queued"})
    if action == "reject":
        await _run(lambda: review.reject(svc, ws, draft_id, actor))
        return _json({"id": draft_id, "status": "rejected"})
    if action == "edit":
        subject, body = _str(data, "subject"), _str(data, "body")
        return _json(await _run(lambda: review.edit(svc, ws, draft_id, actor, subject, body)))
    raise BadRequest("the action must be approve, reject or edit")


async def campaign_settings(request: Request) -> Response:
    actor = _actor(request)
    svc, data = _service(request), await _body(request)
    campaign_id = int(request.path_params["campaign_id"])

    def go() -> None:
        ws = _ws(svc, request, data)
        with svc.connect() as conn:
            review.set_campaign(
                conn,
                svc.data_key(),
                ws,
                actor,
                campaign_id=campaign_id,
                brand_id=_need_int(data, "brand_id"),
                mode=_str(data, "mode"),
                key_id=_need_int(data, "key_id"),
                model=_str(data, "model"),
                opt_out_line=_str(data, "opt_out_line"),
            )

    await _run(go)
    return Response(status_code=204)


# -- runs, prices, budget, templates, endpoints ----------------------------------------------
async def list_runs(request: Request) -> Response:
    _actor(request)
    svc = _service(request)
    return _json(
        await _run(lambda: _conn_call(svc, lambda c: runs.list_runs(c, _ws(svc, request))))
    )


async def prices(request: Request) -> Response:
    actor = _actor(request)
    svc = _service(request)
    if request.method == "GET":
        return _json(
            await _run(lambda: _conn_call(svc, lambda c: runs.price_table(c, _ws(svc, request))))
        )
    data = await _body(request)

    def go() -> None:
        ws = _ws(svc, request, data)
        with svc.connect() as conn:
            runs.set_price(
                conn,
                ws,
                _str(data, "provider"),
                _str(data, "model"),
                _money(data, "input_usd_per_mtok"),
                _money(data, "output_usd_per_mtok"),
            )
            audit.record(conn, actor, "ai.price_set", {"workspace_id": ws})

    await _run(go)
    return Response(status_code=204)


async def budget(request: Request) -> Response:
    actor = _actor(request)
    svc = _service(request)
    if request.method == "GET":
        return _json(
            await _run(
                lambda: _conn_call(
                    svc, lambda c: runs.budget_status(c, _ws(svc, request), svc.clock())
                )
            )
        )
    data = await _body(request)

    def go() -> None:
        ws = _ws(svc, request, data)
        with svc.connect() as conn:
            runs.set_budget(conn, ws, _money(data, "monthly_usd"))
            audit.record(conn, actor, "ai.budget_set", {"workspace_id": ws})

    await _run(go)
    return Response(status_code=204)


async def prompt_templates(request: Request) -> Response:
    actor = _actor(request)
    svc = _service(request)
    if request.method == "GET":
        brand_id = int(request.query_params.get("brand_id", "0") or 0)
        return _json(
            await _run(
                lambda: _conn_call(
                    svc, lambda c: templates.versions(c, _ws(svc, request), brand_id)
                )
            )
        )
    data = await _body(request)

    def go() -> int:
        ws = _ws(svc, request, data)
        with svc.connect() as conn:
            version = templates.add(
                conn,
                svc.data_key(),
                ws,
                _need_int(data, "brand_id"),
                _str(data, "stage"),
                _str(data, "system"),
                _str(data, "user_template"),
            )
            audit.record(conn, actor, "ai.template_added", {"workspace_id": ws})
            return version

    return _json({"version": await _run(go)}, 201)


async def endpoint(request: Request) -> Response:
    _actor(request)
    svc, data = _service(request), await _body(request)
    key_id = int(request.path_params["key_id"])
    await _run(lambda: svc.set_endpoint(_ws(svc, request, data), key_id, _str(data, "base_url")))
    return Response(status_code=204)


# -- enrichment -----------------------------------------------------------------------------------
def _enrichment_factory(request: Request) -> enrichment.ProviderFactory:
    factory: enrichment.ProviderFactory | None = getattr(
        request.app.state, "enrichment_factory", None
    )
    return factory or enrichment.default_factory()


async def enrichment_settings(request: Request) -> Response:
    _actor(request)
    svc = _service(request)
    return _json(
        await _run(lambda: _conn_call(svc, lambda c: enrichment.settings(c, _ws(svc, request))))
    )


async def enrichment_opt(request: Request) -> Response:
    actor = _actor(request)
    svc = _service(request)
    if request.path_params["action"] not in ("opt-in", "opt-out"):
        raise BadRequest("the action must be opt-in or opt-out")
    data = await _body(request) if request.path_params["action"] == "opt-in" else {}

    def go() -> None:
        ws = _ws(svc, request, data)
        with svc.connect() as conn:
            if request.path_params["action"] == "opt-in":
                enrichment.opt_in(
                    conn,
                    ws,
                    actor,
                    _str(data, "provider"),
                    _int(data, "key_id", required=False),
                    _str(data, "directory_path", required=False) or None,
                )
            else:
                enrichment.opt_out(conn, ws, actor)

    await _run(go)
    return Response(status_code=204)


async def enrich_lead(request: Request) -> Response:
    actor = _actor(request)
    svc = _service(request)
    lead_id = int(request.path_params["lead_id"])
    factory = _enrichment_factory(request)

    def go() -> dict[str, Any]:
        ws = _ws(svc, request)
        with svc.connect() as conn:
            return enrichment.enrich_lead(conn, svc.data_key(), ws, lead_id, actor, factory)

    return _json(await _run(go))


routes: list[BaseRoute] = [
    Route("/api/ai/qualify", qualify, methods=["POST"]),
    Route("/api/ai/drafts", create_draft, methods=["POST"]),
    Route("/api/ai/drafts", list_drafts, methods=["GET"]),
    Route("/api/ai/drafts/{draft_id:int}", get_draft, methods=["GET"]),
    Route("/api/ai/drafts/{draft_id:int}/{action}", decide_draft, methods=["POST"]),
    Route("/api/ai/campaigns/{campaign_id:int}", campaign_settings, methods=["PUT"]),
    Route("/api/ai/runs", list_runs, methods=["GET"]),
    Route("/api/ai/prices", prices, methods=["GET", "PUT"]),
    Route("/api/ai/budget", budget, methods=["GET", "PUT"]),
    Route("/api/ai/templates", prompt_templates, methods=["GET", "POST"]),
    Route("/api/ai/endpoints/{key_id:int}", endpoint, methods=["PUT"]),
    Route("/api/ai/enrichment", enrichment_settings, methods=["GET"]),
    Route("/api/ai/enrichment/{action:str}", enrichment_opt, methods=["POST"]),
    Route("/api/ai/enrichment/leads/{lead_id:int}", enrich_lead, methods=["POST"]),
]
