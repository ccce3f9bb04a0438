"""Pages over the outbound engine and the AI stages: mailboxes (added only after a connection
test), campaigns (schedule, sequence steps with A/B variants, AI mode, enrolment), the review
queue (drafts with their audit results: approve, edit, reject), the inbox (replies by thread,
with their classification) and stage runs (tokens, cost; prompt and response while their period
key exists). They call the outbound and AI packages' own functions."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import psycopg
from psycopg.rows import dict_row
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paitho_tenant import audit, keychain, stage_runs, workspaces
from paitho_tenant.crypto import DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.errors import BadRequest, NotFound
from paitho_tenant.ui.base import Ctx, page, see_other

STAGE_RUN_VIEW_DAYS = 90
WEEKDAYS = ((1, "Mon"), (2, "Tue"), (3, "Wed"), (4, "Thu"), (5, "Fri"), (6, "Sat"), (7, "Sun"))


def _ai(request: Request) -> Any:
    """The app's AI service (the one `paitho_tenant.ai.web` uses), built the same way if the
    composition root did not install one."""
    from paitho_tenant.ai.providers import ProviderRegistry
    from paitho_tenant.ai.service import AIService

    state = request.app.state
    if getattr(state, "ai", None) is None:
        c = state.components
        state.ai = AIService(
            connect=lambda: c.pool.connection(timeout=10),
            data_key=c.vault.key,
            registry=ProviderRegistry(),
        )
    return state.ai


def _int(value: str | None, name: str, low: int = 0, high: int = 10**9) -> int:
    if value is None or not value.strip().lstrip("-").isdigit():
        raise BadRequest(f"{name} must be a whole number")
    number = int(value)
    if not low <= number <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return number


# -- mailboxes ------------------------------------------------------------------------------
def _mailboxes(conn: psycopg.Connection[Any], key: DataKey, ws: int) -> list[dict[str, Any]]:
    with workspace_tx(conn, ws):
        cur = conn.cursor(row_factory=dict_row)
        return cur.execute(
            "SELECT id, label, pgp_sym_decrypt(from_address, %s) AS from_address, smtp_host,"
            " smtp_port, imap_host, imap_port, daily_cap, status, stop_reason, sent_folder"
            " FROM mailboxes ORDER BY id",
            (key.column_key,),
        ).fetchall()


async def mailboxes_page(ctx: Ctx) -> Response:
    rows = await ctx.db(_mailboxes, ctx.key, ctx.workspace_id)
    return ctx.render("mailboxes.html", "mailboxes", mailboxes=rows, checked=ctx.note, f=ctx.form)


async def mailboxes_post(ctx: Ctx) -> Response:
    from paitho_tenant.outbound import mailbox, store
    from paitho_tenant.outbound.errors import MailboxCheckFailed
    from paitho_tenant.outbound.web import parse_mailbox

    if ctx.form.get("action") == "retest":
        mailbox_id = _int(ctx.form.get("mailbox_id"), "mailbox", 1)
        config = await ctx.db(store.load_mailbox, ctx.key, ctx.workspace_id, mailbox_id)
        try:
            result = await run_in_threadpool(mailbox.check, config.spec, config.secret)
        except MailboxCheckFailed as exc:
            ctx.error, ctx.status = (
                f"{config.spec.label}: connection test failed at {exc.check}: {exc.message}",
                422,
            )
            return await mailboxes_page(ctx)
        ctx.note = (
            f"{config.spec.label}: SMTP and IMAP both answered; sent folder {result.sent_folder}."
        )
        return await mailboxes_page(ctx)
    data: dict[str, Any] = dict(ctx.form)
    for name in ("smtp_port", "imap_port", "daily_cap"):
        data[name] = _int(ctx.form.get(name), name, 0, 65535)
    spec, secret = parse_mailbox(data)
    try:
        result = await run_in_threadpool(mailbox.check, spec, secret)
    except MailboxCheckFailed as exc:
        ctx.error, ctx.status = f"Connection test failed at {exc.check}: {exc.message}", 422
        return await mailboxes_page(ctx)
    if ctx.form.get("action") == "test":
        ctx.form.pop("password", None)
        ctx.note = f"SMTP and IMAP both answered; sent folder {result.sent_folder}."
        return await mailboxes_page(ctx)

    def save(conn: psycopg.Connection[Any]) -> None:
        mailbox_id = store.create_mailbox(
            conn, ctx.key, ctx.workspace_id, spec, secret, result.sent_folder
        )
        audit.record(conn, ctx.actor, "mailbox.added", {"mailbox_id": mailbox_id})

    await ctx.db(save)
    return see_other("/app/mailboxes?ok=mailbox")


# -- campaigns ------------------------------------------------------------------------------
def _campaigns(conn: psycopg.Connection[Any], ws: int) -> list[dict[str, Any]]:
    with workspace_tx(conn, ws):
        cur = conn.cursor(row_factory=dict_row)
        return cur.execute(
            "SELECT c.id, c.name, c.status, c.timezone, c.window_start, c.window_end,"
            " b.name AS brand,"
            " (SELECT count(*) FROM campaign_steps s WHERE s.campaign_id = c.id) AS steps,"
            " (SELECT count(*) FROM enrollments e WHERE e.campaign_id = c.id) AS enrolled,"
            " (SELECT count(*) FROM enrollments e WHERE e.campaign_id = c.id"
            "   AND e.status = 'replied') AS replied"
            " FROM campaigns c JOIN brands b ON b.id = c.brand_id ORDER BY c.id DESC"
        ).fetchall()


async def campaigns_page(ctx: Ctx) -> Response:
    rows = await ctx.db(_campaigns, ctx.workspace_id)
    brands = await ctx.db(workspaces.list_brands, ctx.key, ctx.workspace_id)
    return ctx.render(
        "campaigns.html", "campaigns", campaigns=rows, brands=brands, weekdays=WEEKDAYS
    )


def _time(value: str | None, name: str) -> dt.time:
    try:
        return dt.time.fromisoformat(value or "")
    except ValueError as exc:
        raise BadRequest(f"{name} must be a time such as 09:00") from exc


async def campaigns_post(ctx: Ctx) -> Response:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from paitho_tenant.outbound import store

    f = ctx.form
    name = f.get("name", "").strip()
    if not name:
        raise BadRequest("a campaign needs a name")
    tz = f.get("timezone", "UTC") or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadRequest("the time zone must be an IANA name such as Europe/Berlin") from exc
    days = [d for d, _ in WEEKDAYS if f.get(f"day-{d}")]
    if not days:
        raise BadRequest("choose at least one sending day")
    window = (_time(f.get("window_start"), "start"), _time(f.get("window_end"), "end"))
    brand_id = _int(f.get("brand_id"), "brand", 1)

    def run(conn: psycopg.Connection[Any]) -> int:
        campaign_id = store.create_campaign(
            conn, ctx.workspace_id, brand_id, name, tz, window, days
        )
        audit.record(conn, ctx.actor, "campaign.created", {"campaign_id": campaign_id})
        return campaign_id

    campaign_id = await ctx.db(run)
    return see_other(f"/app/campaigns/{campaign_id}")


def _campaign(
    conn: psycopg.Connection[Any], key: DataKey, ws: int, campaign_id: int
) -> dict[str, Any]:
    with workspace_tx(conn, ws):
        cur = conn.cursor(row_factory=dict_row)
        row = cur.execute(
            "SELECT c.*, b.name AS brand FROM campaigns c JOIN brands b ON b.id = c.brand_id"
            " WHERE c.id = %s",
            (campaign_id,),
        ).fetchone()
        if row is None:
            raise NotFound("no such campaign in this workspace")
        steps = cur.execute(
            "SELECT s.id, s.position, s.delay_days, s.business_days, v.label,"
            " pgp_sym_decrypt(v.subject, %(k)s) AS subject, pgp_sym_decrypt(v.body, %(k)s) AS body"
            " FROM campaign_steps s LEFT JOIN step_variants v ON v.step_id = s.id"
            " WHERE s.campaign_id = %(c)s ORDER BY s.position, v.label",
            {"k": key.column_key, "c": campaign_id},
        ).fetchall()
        states = cur.execute(
            "SELECT status, count(*) AS n FROM enrollments WHERE campaign_id = %s"
            " GROUP BY status ORDER BY status",
            (campaign_id,),
        ).fetchall()
    grouped: dict[int, dict[str, Any]] = {}
    for s in steps:
        step = grouped.setdefault(
            s["position"], {**{k: s[k] for k in ("position", "delay_days", "business_days")}}
        )
        step.setdefault("variants", [])
        if s["label"] is not None:
            step["variants"].append({k: s[k] for k in ("label", "subject", "body")})
    row["steps"] = [grouped[p] for p in sorted(grouped)]
    row["states"] = states
    return row


def _ai_settings(
    conn: psycopg.Connection[Any], key: DataKey, ws: int, campaign_id: int
) -> Any | None:
    from paitho_tenant.ai import review

    try:
        return review.get_campaign(conn, key, ws, campaign_id)
    except NotFound:
        return None


def _qualifications(
    conn: psycopg.Connection[Any], key: DataKey, ws: int, campaign_id: int
) -> list[dict[str, Any]]:
    """The latest qualification of each enrolled lead for the campaign's brand."""
    with workspace_tx(conn, ws):
        cur = conn.cursor(row_factory=dict_row)
        return cur.execute(
            "SELECT DISTINCT ON (q.lead_id) q.lead_id, q.verdict, q.score, q.created_at,"
            " pgp_sym_decrypt(q.reason, %(k)s) AS reason,"
            " pgp_sym_decrypt(l.email, %(k)s) AS email"
            " FROM ai_qualifications q JOIN campaigns c ON c.brand_id = q.brand_id"
            " JOIN enrollments e ON e.campaign_id = c.id AND e.lead_id = q.lead_id"
            " JOIN leads l ON l.id = q.lead_id WHERE c.id = %(c)s"
            " ORDER BY q.lead_id, q.id DESC LIMIT 200",
            {"k": key.column_key, "c": campaign_id},
        ).fetchall()


async def campaign_page(ctx: Ctx) -> Response:
    campaign_id = int(ctx.request.path_params["campaign_id"])
    campaign = await ctx.db(_campaign, ctx.key, ctx.workspace_id, campaign_id)
    keys = await ctx.db(keychain.list_keys, ctx.key, ctx.workspace_id)
    ai = await ctx.db(_ai_settings, ctx.key, ctx.workspace_id, campaign_id)
    qualified = await ctx.db(_qualifications, ctx.key, ctx.workspace_id, campaign_id)
    return ctx.render(
        "campaign.html",
        "campaigns",
        c=campaign,
        qualified=qualified,
        keys=[k for k in keys if k["kind"] not in ("smtp", "imap", "enrichment")],
        ai=ai,
        weekdays=dict(WEEKDAYS),
    )


def _enroll_all(
    conn: psycopg.Connection[Any], key: DataKey, ws: int, campaign_id: int, limit: int
) -> int:
    from paitho_tenant.outbound import store

    with workspace_tx(conn, ws):
        ids = [
            int(r[0])
            for r in conn.execute(
                "SELECT id FROM leads WHERE id NOT IN (SELECT lead_id FROM enrollments"
                " WHERE campaign_id = %s) ORDER BY id LIMIT %s",
                (campaign_id, limit),
            ).fetchall()
        ]
    return store.enroll(conn, key, ws, campaign_id, ids, dt.datetime.now(dt.UTC)) if ids else 0


async def campaign_post(ctx: Ctx) -> Response:
    from paitho_tenant.ai import review
    from paitho_tenant.outbound import store

    campaign_id = int(ctx.request.path_params["campaign_id"])
    f, ws, back = ctx.form, ctx.workspace_id, f"/app/campaigns/{campaign_id}"
    action = f.get("action")
    current = await ctx.db(_campaign, ctx.key, ws, campaign_id)
    if action == "step":
        variants = [
            store.Variant(label, f.get(f"subject-{label}", ""), f.get(f"body-{label}", ""))
            for label in ("A", "B")
            if f.get(f"body-{label}", "").strip()
        ]
        if not variants:
            raise BadRequest("a step needs the body of variant A")
        position = len(current["steps"]) + 1
        if position == 1 and any(not v.subject.strip() for v in variants):
            raise BadRequest("the first step's variants need a subject")
        delay = _int(f.get("delay_days", "0"), "delay", 0, 365)
        await ctx.db(
            store.add_step,
            ctx.key,
            ws,
            campaign_id,
            position,
            delay,
            bool(f.get("business_days")),
            variants,
        )
    elif action == "status":
        status = f.get("status", "")
        if status not in ("active", "paused", "stopped"):
            raise BadRequest("unknown status")
        await ctx.db(store.set_campaign_status, ws, campaign_id, status)
        await ctx.db(audit.record, ctx.actor, f"campaign.{status}", {"campaign_id": campaign_id})
    elif action == "enroll":
        limit = _int(f.get("limit", "100"), "how many", 1, 100_000)
        await ctx.db(_enroll_all, ctx.key, ws, campaign_id, limit)
    elif action == "ai":

        def run(conn: psycopg.Connection[Any]) -> None:
            review.set_campaign(
                conn,
                ctx.key,
                ws,
                ctx.actor,
                campaign_id=campaign_id,
                brand_id=int(current["brand_id"]),
                mode=f.get("mode", ""),
                key_id=_int(f.get("key_id"), "key", 1),
                model=f.get("model", "").strip(),
                opt_out_line=f.get("opt_out_line", ""),
            )

        await ctx.db(run)
    elif action == "qualify":
        settings = await ctx.db(_ai_settings, ctx.key, ws, campaign_id)
        if settings is None or settings.key_id is None:
            raise BadRequest("save the campaign's AI settings first")
        svc = _ai(ctx.request)
        limit = _int(f.get("limit", "10"), "how many", 1, 50)

        def to_qualify(conn: psycopg.Connection[Any]) -> list[int]:
            with workspace_tx(conn, ws):
                return [
                    int(r[0])
                    for r in conn.execute(
                        "SELECT lead_id FROM enrollments WHERE campaign_id = %s AND lead_id NOT IN"
                        " (SELECT lead_id FROM ai_qualifications WHERE brand_id = %s)"
                        " ORDER BY lead_id LIMIT %s",
                        (campaign_id, settings.brand_id, limit),
                    ).fetchall()
                ]

        for lead_id in await ctx.db(to_qualify):
            await run_in_threadpool(
                svc.qualify, ws, lead_id, settings.brand_id, settings.key_id, settings.model
            )
    elif action == "draft":
        svc = _ai(ctx.request)
        limit = _int(f.get("limit", "10"), "how many", 1, 50)

        def leads_to_draft(conn: psycopg.Connection[Any]) -> list[int]:
            with workspace_tx(conn, ws):
                return [
                    int(r[0])
                    for r in conn.execute(
                        "SELECT lead_id FROM enrollments WHERE campaign_id = %s"
                        " AND status = 'active' AND lead_id NOT IN (SELECT lead_id FROM"
                        " ai_drafts WHERE campaign_id = %s) ORDER BY lead_id LIMIT %s",
                        (campaign_id, campaign_id, limit),
                    ).fetchall()
                ]

        for lead_id in await ctx.db(leads_to_draft):
            await run_in_threadpool(review.draft_for_lead, svc, ws, campaign_id, lead_id, 1)
        return see_other("/app/review?ok=drafted")
    else:
        raise BadRequest("unknown action")
    return see_other(back + "?ok=saved")


# -- review queue ---------------------------------------------------------------------------
def _queue(conn: psycopg.Connection[Any], key: DataKey, ws: int, status: str | None) -> list[Any]:
    from paitho_tenant.ai import review

    rows = review.list_drafts(conn, ws, status, limit=50)
    drafts = [review.get_draft(conn, key, ws, int(r["id"])) for r in rows]
    with workspace_tx(conn, ws):
        emails = dict(
            conn.execute(
                "SELECT id, pgp_sym_decrypt(email, %s) FROM leads WHERE id = ANY(%s)",
                (key.column_key, [d["lead_id"] for d in drafts]),
            ).fetchall()
        )
    for d in drafts:
        d["lead_email"] = emails.get(d["lead_id"], f"lead {d['lead_id']}")
    return drafts


async def review_page(ctx: Ctx) -> Response:
    wanted = ctx.q("status", "awaiting_review")
    shown = ("awaiting_review", "audit_failed", "queued", "rejected", "sent", "failed")
    status = wanted if wanted in shown else None
    drafts = await ctx.db(_queue, ctx.key, ctx.workspace_id, status)
    return ctx.render("review.html", "review", drafts=drafts, shown=status or "all")


async def review_post(ctx: Ctx) -> Response:
    from paitho_tenant.ai import review

    svc = _ai(ctx.request)
    draft_id = _int(ctx.form.get("draft_id"), "draft", 1)
    action = ctx.form.get("action")
    if action == "approve":
        await run_in_threadpool(review.approve, svc, ctx.workspace_id, draft_id, ctx.actor)
    elif action == "reject":
        await run_in_threadpool(review.reject, svc, ctx.workspace_id, draft_id, ctx.actor)
    elif action == "edit":
        await run_in_threadpool(
            review.edit,
            svc,
            ctx.workspace_id,
            draft_id,
            ctx.actor,
            ctx.form.get("subject", ""),
            ctx.form.get("body", ""),
        )
    else:
        raise BadRequest("the action must be approve, edit or reject")
    return see_other("/app/review?ok=decided")


# -- inbox ----------------------------------------------------------------------------------
def _inbox(conn: psycopg.Connection[Any], key: DataKey, ws: int) -> list[dict[str, Any]]:
    """Threads: per enrollment, the messages sent and received, newest thread first."""
    with workspace_tx(conn, ws):
        cur = conn.cursor(row_factory=dict_row)
        received = cur.execute(
            "SELECT i.id, i.kind, i.received_at AS at, i.enrollment_id, e.status AS lead_status,"
            " e.lead_id, c.name AS campaign, pgp_sym_decrypt(l.email, %(k)s) AS lead_email,"
            " pgp_sym_decrypt(m.body, %(k)s) AS body"
            " FROM inbound_messages i LEFT JOIN enrollments e ON e.id = i.enrollment_id"
            " LEFT JOIN campaigns c ON c.id = e.campaign_id LEFT JOIN leads l ON l.id = e.lead_id"
            " LEFT JOIN messages m ON m.id = i.message_row"
            " ORDER BY i.received_at DESC LIMIT 100",
            {"k": key.column_key},
        ).fetchall()
        enrollment_ids = [r["enrollment_id"] for r in received if r["enrollment_id"]]
        sent = cur.execute(
            "SELECT o.enrollment_id, o.position, o.sent_at AS at,"
            " pgp_sym_decrypt(m.body, %(k)s) AS body"
            " FROM outbound_messages o LEFT JOIN messages m ON m.id = o.message_row"
            " WHERE o.enrollment_id = ANY(%(e)s) AND o.state = 'sent' ORDER BY o.position",
            {"k": key.column_key, "e": enrollment_ids},
        ).fetchall()
    threads: dict[Any, dict[str, Any]] = {}
    for r in received:
        t = threads.setdefault(
            r["enrollment_id"] or f"loose-{r['id']}",
            {
                "lead_email": r["lead_email"],
                "campaign": r["campaign"],
                "lead_status": r["lead_status"],
                "messages": [],
            },
        )
        t["messages"].append(
            {"direction": "received", "kind": r["kind"], "at": r["at"], "body": r["body"]}
        )
    for s in sent:
        if s["enrollment_id"] in threads:
            threads[s["enrollment_id"]]["messages"].append(
                {
                    "direction": "sent",
                    "kind": f"step {s['position']}",
                    "at": s["at"],
                    "body": s["body"],
                }
            )
    for t in threads.values():
        t["messages"].sort(key=lambda m: m["at"] or dt.datetime.min.replace(tzinfo=dt.UTC))
    return list(threads.values())


async def inbox_page(ctx: Ctx) -> Response:
    threads = await ctx.db(_inbox, ctx.key, ctx.workspace_id)
    return ctx.render("inbox.html", "inbox", threads=threads)


# -- stage runs -----------------------------------------------------------------------------
async def runs_page(ctx: Ctx) -> Response:
    from paitho_tenant.ai import runs

    rows = await ctx.db(runs.list_runs, ctx.workspace_id)
    return ctx.render("runs.html", "runs", runs=rows)


async def run_page(ctx: Ctx) -> Response:
    run_id = int(ctx.request.path_params["run_id"])
    run = await ctx.db(stage_runs.get, ctx.key, ctx.workspace_id, run_id)
    age = dt.datetime.now(dt.UTC) - run["started_at"]
    viewable = age <= dt.timedelta(days=STAGE_RUN_VIEW_DAYS) and run["prompt"] is not None
    if not viewable:
        run["prompt"] = run["response"] = None
    pretty = None
    if viewable and run["response"]:
        try:
            pretty = json.dumps(json.loads(run["response"]), indent=2, ensure_ascii=False)
        except ValueError:
            pretty = run["response"]
    return ctx.render("run.html", "runs", run=run, viewable=viewable, response=pretty)


def routes() -> list[Route]:
    both = ["GET", "POST"]
    return [
        Route("/app/mailboxes", page(mailboxes_page, mailboxes_post), methods=both),
        Route("/app/campaigns", page(campaigns_page, campaigns_post), methods=both),
        Route("/app/campaigns/{campaign_id:int}", page(campaign_page, campaign_post), methods=both),
        Route("/app/review", page(review_page, review_post), methods=both),
        Route("/app/inbox", page(inbox_page), methods=["GET"]),
        Route("/app/runs", page(runs_page), methods=["GET"]),
        Route("/app/runs/{run_id:int}", page(run_page), methods=["GET"]),
    ]
