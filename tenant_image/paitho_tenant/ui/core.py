"""Pages over the trust core: dashboard, workspaces, brands, keychain, audit log, export and
DSAR, licence. Each handler calls the same domain functions as the JSON API."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from paitho_tenant import audit, dsar, keychain, workspaces
from paitho_tenant.db import owner_conninfo, workspace_tx
from paitho_tenant.errors import BadRequest, Forbidden
from paitho_tenant.ui.base import Ctx, see_other
from paitho_tenant.ui.charts import Bar, bar_chart

DAYS = 14


# -- dashboard ------------------------------------------------------------------------------
def _daily(rows: list[tuple[Any, Any]], today: dt.date) -> list[Bar]:
    by_day = {r[0]: float(r[1] or 0) for r in rows}
    days = [today - dt.timedelta(days=i) for i in range(DAYS - 1, -1, -1)]
    return [Bar(d.strftime("%d %b"), by_day.get(d, 0.0)) for d in days]


def dashboard_figures(conn: psycopg.Connection[Any], workspace_id: int) -> dict[str, Any]:
    """Counts and daily series of one workspace (metadata only: nothing is decrypted)."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=DAYS)
    with workspace_tx(conn, workspace_id):
        one = conn.execute(
            "SELECT (SELECT count(*) FROM leads),"
            " (SELECT count(*) FROM campaigns),"
            " (SELECT count(*) FROM campaigns WHERE status = 'active'),"
            " (SELECT count(*) FROM inbound_messages WHERE kind = 'reply'),"
            " (SELECT coalesce(sum(cost_usd), 0) FROM ai_run_meta"
            "   WHERE started_at >= date_trunc('month', now()))"
        ).fetchone()
        leads_daily = conn.execute(
            "SELECT (created_at AT TIME ZONE 'UTC')::date, count(*) FROM leads"
            " WHERE created_at >= %s GROUP BY 1",
            (since,),
        ).fetchall()
        replies_daily = conn.execute(
            "SELECT (received_at AT TIME ZONE 'UTC')::date, count(*) FROM inbound_messages"
            " WHERE kind = 'reply' AND received_at >= %s GROUP BY 1",
            (since,),
        ).fetchall()
        spend_daily = conn.execute(
            "SELECT (started_at AT TIME ZONE 'UTC')::date, sum(cost_usd) FROM ai_run_meta"
            " WHERE started_at >= %s GROUP BY 1",
            (since,),
        ).fetchall()
    assert one is not None
    today = dt.datetime.now(dt.UTC).date()
    return {
        "leads": int(one[0]),
        "campaigns": int(one[1]),
        "active_campaigns": int(one[2]),
        "replies": int(one[3]),
        "spend": Decimal(one[4]).quantize(Decimal("0.01")),
        "leads_daily": _daily(leads_daily, today),
        "replies_daily": _daily(replies_daily, today),
        "spend_daily": _daily(spend_daily, today),
    }


async def dashboard(ctx: Ctx) -> Response:
    figures = await ctx.db(dashboard_figures, ctx.workspace_id)
    charts = {
        "leads": bar_chart(
            "chart-leads", f"Leads imported, last {DAYS} days", figures["leads_daily"]
        ),
        "replies": bar_chart(
            "chart-replies", f"Replies, last {DAYS} days", figures["replies_daily"]
        ),
        "spend": bar_chart(
            "chart-spend", f"LLM spend (USD), last {DAYS} days", figures["spend_daily"], " USD"
        ),
    }
    return ctx.render("dashboard.html", "dashboard", f=figures, charts=charts)


# -- workspaces -----------------------------------------------------------------------------
async def workspaces_page(ctx: Ctx) -> Response:
    return ctx.render("workspaces.html", "workspaces", regions=workspaces.REGIONS)


async def workspaces_post(ctx: Ctx) -> Response:
    if not ctx.is_owner:
        raise Forbidden("only the owner may create workspaces")
    name, region = ctx.form.get("name", ""), ctx.form.get("region", "")

    def run(conn: psycopg.Connection[Any]) -> dict[str, Any]:
        row = workspaces.create(conn, name, region)
        audit.record(conn, ctx.actor, "workspace.created", {"workspace_id": row["id"]})
        return row

    row = await ctx.db(run)
    ctx.session.workspace_id = int(row["id"])
    return see_other("/app/workspaces?ok=workspace")


async def switch_post(ctx: Ctx) -> Response:
    wanted = ctx.form.get("workspace", "")
    ids = {int(w["id"]) for w in ctx.workspaces}
    if not wanted.isdigit() or int(wanted) not in ids:
        raise BadRequest("no such workspace")
    ctx.session.workspace_id = int(wanted)
    return see_other("/app?ok=switched")


# -- brands ---------------------------------------------------------------------------------
async def brands_page(ctx: Ctx) -> Response:
    rows = await ctx.db(workspaces.list_brands, ctx.key, ctx.workspace_id)
    return ctx.render("brands.html", "brands", brands=rows)


async def brands_post(ctx: Ctx) -> Response:
    f = ctx.form

    def run(conn: psycopg.Connection[Any]) -> None:
        brand_id = workspaces.create_brand(
            conn,
            ctx.key,
            ctx.workspace_id,
            f.get("name", ""),
            f.get("sending_identity") or None,
            f.get("voice") or None,
            f.get("icp") or None,
        )
        postal = f.get("postal_address", "").strip()
        if postal:
            from paitho_tenant.outbound import store

            store.set_brand_footer(conn, ctx.key, ctx.workspace_id, brand_id, postal)
        audit.record(conn, ctx.actor, "brand.created", {"brand_id": brand_id})

    await ctx.db(run)
    return see_other("/app/brands?ok=brand")


# -- keychain -------------------------------------------------------------------------------
async def keychain_page(ctx: Ctx) -> Response:
    rows = await ctx.db(keychain.list_keys, ctx.key, ctx.workspace_id)
    return ctx.render("keychain.html", "keychain", keys=rows, kinds=keychain.KINDS)


async def keychain_post(ctx: Ctx) -> Response:
    f = ctx.form
    if f.get("action") == "remove":
        key_id = int(f.get("key_id", "0") or 0)

        def remove(conn: psycopg.Connection[Any]) -> None:
            keychain.remove(conn, ctx.workspace_id, key_id)
            audit.record(conn, ctx.actor, "keychain.removed", {"key_id": key_id})

        await ctx.db(remove)
        return see_other("/app/keychain?ok=key_removed")

    def add(conn: psycopg.Connection[Any]) -> None:
        row = keychain.add(
            conn,
            ctx.key,
            ctx.workspace_id,
            f.get("kind", ""),
            f.get("label", ""),
            f.get("secret", ""),
        )
        audit.record(conn, ctx.actor, "keychain.added", {"key_id": row["id"], "kind": row["kind"]})

    await ctx.db(add)
    return see_other("/app/keychain?ok=key")


# -- audit ----------------------------------------------------------------------------------
AUDIT_PAGE = 100


def _audit_rows(conn: psycopg.Connection[Any], before: int | None) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        "SELECT seq, at, actor, action, detail FROM audit_entries()"
        " WHERE %(b)s::bigint IS NULL OR seq < %(b)s ORDER BY seq DESC LIMIT %(l)s",
        {"b": before, "l": AUDIT_PAGE},
    ).fetchall()


def _verify(admin_conninfo: str) -> audit.Verification:
    with psycopg.connect(owner_conninfo(admin_conninfo), autocommit=True) as conn:
        return audit.verify(conn)


async def audit_page(ctx: Ctx) -> Response:
    before_text = ctx.q("before")
    before = int(before_text) if before_text.isdigit() else None
    rows = await ctx.db(_audit_rows, before)
    for row in rows:
        row["detail_text"] = json.dumps(row["detail"], sort_keys=True) if row["detail"] else ""
    verification = await run_in_threadpool(_verify, ctx.c.settings.admin_conninfo)
    older = rows[-1]["seq"] if len(rows) == AUDIT_PAGE else None
    return ctx.render("audit.html", "audit", rows=rows, verification=verification, older=older)


# -- export and DSAR ------------------------------------------------------------------------
async def export_page(ctx: Ctx) -> Response:
    return ctx.render("export.html", "export", result=None, result_json="")


async def dsar_post(ctx: Ctx) -> Response:
    if not ctx.is_owner:
        raise Forbidden("only the owner may answer data-subject requests")
    kind, email = ctx.form.get("kind", ""), ctx.form.get("email", "")
    result = await ctx.db(dsar.handle, ctx.key, kind, email, ctx.actor)
    text = json.dumps(result, default=str, ensure_ascii=False, indent=2)
    return ctx.render("export.html", "export", result=result, result_json=text, kind=kind)


# -- licence --------------------------------------------------------------------------------
async def licence_page(ctx: Ctx) -> Response:
    lic = ctx.licence.licence
    expires = dt.datetime.fromtimestamp(lic.expires_at, dt.UTC) if lic else None
    return ctx.render("licence.html", "licence", lic=lic, expires=expires)


# -- settings -------------------------------------------------------------------------------
def _backup_facts() -> dict[str, str | None]:
    """Where backups go, as the deployment configured it (shown without any credential)."""
    import os
    from urllib.parse import urlsplit

    to = os.environ.get("PAITHO_BACKUP_TO")
    where = None
    if to:
        parts = urlsplit(to)
        where = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"
    recipient = os.environ.get("PAITHO_BACKUP_RECIPIENT")
    return {"destination": where, "recipient": "configured" if recipient else None}


async def settings_page(ctx: Ctx) -> Response:
    from paitho_tenant.retention import STAGE_RUN_DAYS

    return ctx.render(
        "settings.html",
        "settings",
        backup=_backup_facts(),
        stage_run_days=STAGE_RUN_DAYS,
        generated=None,
    )


async def settings_post(ctx: Ctx) -> Response:
    if not ctx.is_owner:
        raise Forbidden("only the owner may change these settings")
    action = ctx.form.get("action")
    if action == "seal":
        await ctx.db(audit.record, ctx.actor, "vault.sealed")
        ctx.c.vault.seal()
        ctx.c.sessions.clear()
        return see_other("/unlock")
    if action == "rotate":
        current = ctx.form.get("current_passphrase", "")
        new = ctx.form.get("new_passphrase") or None
        generated = await ctx.db(ctx.c.vault.rotate, current, new, ctx.actor)
        from paitho_tenant.retention import STAGE_RUN_DAYS

        ctx.status = 200
        return ctx.render(
            "settings.html",
            "settings",
            backup=_backup_facts(),
            stage_run_days=STAGE_RUN_DAYS,
            generated=generated,
            rotated=True,
        )
    raise BadRequest("unknown action")
