"""Drafts, their audit and their review, per campaign mode.

    draft_for_lead  drafting stage -> audit stage (model verdict AND deterministic rules)
                    audit failed  -> `audit_failed`  (never sent; approve is refused)
                    passed, review mode     -> `awaiting_review`
                    passed, autonomous mode -> `queued`, then SendQueue.queue_for_sending()
    approve         awaiting_review -> approved -> queued (+ hook)
    edit            new text from a person -> audited again -> awaiting_review | audit_failed
    reject          awaiting_review | audit_failed -> rejected
    outbound engine queued -> sent | failed (with send_error), see outbound/drafts.py: the
                    planner sends a queued draft as its step's message; the hook is optional

A draft row is written only after both stages finished: a failed or malformed call leaves its
stage run and no draft. Every decision by a person is in the audit log (ids only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from paitho_tenant import audit
from paitho_tenant.ai import runs, templates
from paitho_tenant.ai.runs import StageContext, StageResult, run_stage
from paitho_tenant.ai.service import (
    AIService,
    brand_in_scope,
    lead_facts_in_scope,
    load_lead_facts,
)
from paitho_tenant.ai.stages import (
    AuditVerdict,
    Draft,
    facts_block,
    parse,
    parse_draft,
    render,
    rule_check,
)
from paitho_tenant.crypto import COLUMN_OPTIONS, DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.errors import BadRequest, Conflict, NotFound

MODES = ("review", "autonomous")
_ENC = "pgp_sym_encrypt(%(VALUE)s, %(k)s, '" + COLUMN_OPTIONS + "')"


def _enc(name: str) -> str:
    return _ENC.replace("VALUE", name)


# -- campaign settings --------------------------------------------------------------------------
def set_campaign(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    actor: str,
    *,
    campaign_id: int,
    brand_id: int,
    mode: str,
    key_id: int,
    model: str,
    opt_out_line: str,
) -> None:
    if mode not in MODES:
        raise BadRequest("mode must be 'review' or 'autonomous'")
    if not opt_out_line.strip():
        raise BadRequest("an opt-out line is required: every draft must carry one")
    if not model.strip():
        raise BadRequest("a model name is required")
    with workspace_tx(conn, workspace_id):
        conn.execute(
            "INSERT INTO ai_campaign_settings (campaign_id, brand_id, mode, key_id, model,"
            " opt_out_line) VALUES (%(c)s, %(b)s, %(m)s, %(kid)s, %(model)s, "
            + _enc("o")
            + ") ON CONFLICT (campaign_id) DO UPDATE SET brand_id = excluded.brand_id,"
            " mode = excluded.mode, key_id = excluded.key_id, model = excluded.model,"
            " opt_out_line = excluded.opt_out_line, updated_at = now()",
            {
                "c": campaign_id,
                "b": brand_id,
                "m": mode,
                "kid": key_id,
                "model": model.strip(),
                "o": opt_out_line.strip(),
                "k": key.column_key,
            },
        )
        audit.record(
            conn,
            actor,
            "ai.campaign_settings",
            {"workspace_id": workspace_id, "campaign_id": campaign_id, "mode": mode},
        )


@dataclass(frozen=True)
class CampaignAI:
    campaign_id: int
    brand_id: int
    mode: str
    key_id: int | None
    model: str
    opt_out_line: str


def get_campaign(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int, campaign_id: int
) -> CampaignAI:
    with workspace_tx(conn, workspace_id):
        return _campaign_in_scope(conn, key, campaign_id)


def _campaign_in_scope(conn: psycopg.Connection[Any], key: DataKey, campaign_id: int) -> CampaignAI:
    row = conn.execute(
        "SELECT campaign_id, brand_id, mode, key_id, model, pgp_sym_decrypt(opt_out_line, %s)"
        " FROM ai_campaign_settings WHERE campaign_id = %s",
        (key.column_key, campaign_id),
    ).fetchone()
    if row is None:
        raise NotFound("this campaign has no AI settings: set its mode, key and model first")
    return CampaignAI(*row)


# -- drafting and audit ---------------------------------------------------------------------------
def _audit(
    ctx: StageContext,
    conn_facts: dict[str, str],
    campaign: CampaignAI,
    subject: str,
    body: str,
    step: int,
    lead_id: int,
) -> tuple[bool, list[str], int]:
    """Run the audit stage and the rules; (passed, reasons, audit run id)."""
    with ctx.connect() as conn, workspace_tx(conn, ctx.workspace_id):
        template = templates.current_in_scope(conn, ctx.key, campaign.brand_id, "audit")
        price = runs.preflight_in_scope(conn, ctx.clock(), ctx.provider_kind, ctx.model)
    prompt = render(
        template,
        {
            "lead_facts": facts_block(conn_facts),
            "opt_out_line": campaign.opt_out_line,
            "subject": subject,
            "body": body,
        },
    )
    result = run_stage(
        ctx, "audit", prompt, template.version, lambda t: parse(AuditVerdict, t), lead_id, price
    )
    reasons = list(result.value.reasons) if result.value.verdict == "fail" else []
    if result.value.verdict == "fail" and not reasons:
        reasons = ["the auditor failed the draft without a reason"]
    reasons += rule_check(subject, body, conn_facts, campaign.opt_out_line, step)
    return not reasons, reasons, result.run_ids[-1]


def draft_stage(
    service: AIService, workspace_id: int, campaign_id: int, lead_id: int, step: int = 1
) -> tuple[StageContext, CampaignAI, dict[str, str], StageResult[Draft]]:
    """The drafting stage alone: one validated draft (and its stage runs), nothing stored."""
    if step < 1:
        raise BadRequest("step starts at 1")
    key = service.data_key()
    with service.connect() as conn, conn.pipeline(), workspace_tx(conn, workspace_id):
        campaign = _campaign_in_scope(conn, key, campaign_id)
        if campaign.key_id is None:
            raise BadRequest("the campaign's provider key was removed: choose another key")
        facts = lead_facts_in_scope(conn, key, lead_id)
        brand = brand_in_scope(conn, key, campaign.brand_id)
        template = templates.current_in_scope(conn, key, campaign.brand_id, "draft")
        ctx = service.context(workspace_id, campaign.key_id, campaign.model, conn)
        price = runs.preflight_in_scope(conn, service.clock(), ctx.provider_kind, ctx.model)
    prompt = render(
        template,
        {
            "brand": brand["name"],
            "voice": brand["voice"] or "plain and friendly",
            "sender": brand["sending_identity"] or brand["name"],
            "opt_out_line": campaign.opt_out_line,
            "step": step,
            "lead_facts": facts_block(facts),
        },
    )
    drafted = run_stage(
        ctx, "draft", prompt, template.version, lambda t: parse_draft(t, facts), lead_id, price
    )
    return ctx, campaign, facts, drafted


def draft_for_lead(
    service: AIService, workspace_id: int, campaign_id: int, lead_id: int, step: int = 1
) -> dict[str, Any]:
    """Draft and audit one email for one lead; store the draft with its status."""
    ctx, campaign, facts, drafted = draft_stage(service, workspace_id, campaign_id, lead_id, step)
    key = ctx.key
    draft: Draft = drafted.value
    passed, reasons, audit_run = _audit(
        ctx, facts, campaign, draft.subject, draft.body, step, lead_id
    )
    status = "awaiting_review"
    if not passed:
        status = "audit_failed"
    elif campaign.mode == "autonomous":
        status = "queued"
    with service.connect() as conn, workspace_tx(conn, workspace_id):
        row = conn.execute(
            "INSERT INTO ai_drafts (campaign_id, lead_id, step, subject, body, status,"
            " audit_reasons, draft_run_id, audit_run_id) VALUES (%(c)s, %(l)s, %(s)s, "
            + ", ".join((_enc("subj"), _enc("body"), "%(st)s", _enc("reasons")))
            + ", %(dr)s, %(ar)s) RETURNING id",
            {
                "c": campaign_id,
                "l": lead_id,
                "s": step,
                "subj": draft.subject,
                "body": draft.body,
                "st": status,
                "reasons": json.dumps(reasons),
                "dr": drafted.run_ids[-1],
                "ar": audit_run,
                "k": key.column_key,
            },
        ).fetchone()
    assert row is not None
    draft_id = int(row[0])
    if status == "queued":
        service.queue.queue_for_sending(draft_id, workspace_id=workspace_id)
    return {
        "id": draft_id,
        "status": status,
        "subject": draft.subject,
        "body": draft.body,
        "audit_reasons": reasons,
        "run_ids": [*drafted.run_ids, audit_run],
    }


# -- review ---------------------------------------------------------------------------------------
def get_draft(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int, draft_id: int
) -> dict[str, Any]:
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        row = cur.execute(
            "SELECT id, campaign_id, lead_id, step, status, edited, decided_by, decided_at,"
            " created_at, draft_run_id, audit_run_id,"
            " pgp_sym_decrypt(subject, %(k)s) AS subject, pgp_sym_decrypt(body, %(k)s) AS body,"
            " pgp_sym_decrypt(audit_reasons, %(k)s) AS audit_reasons"
            " FROM ai_drafts WHERE id = %(id)s",
            {"k": key.column_key, "id": draft_id},
        ).fetchone()
    if row is None:
        raise NotFound("no such draft in this workspace")
    row["audit_reasons"] = json.loads(row["audit_reasons"] or "[]")
    return row


def list_drafts(
    conn: psycopg.Connection[Any], workspace_id: int, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Draft metadata (no text) for a review queue."""
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        return cur.execute(
            "SELECT id, campaign_id, lead_id, step, status, edited, created_at FROM ai_drafts"
            " WHERE %(s)s::text IS NULL OR status = %(s)s ORDER BY id LIMIT %(l)s",
            {"s": status, "l": limit},
        ).fetchall()


def _decide(
    conn: psycopg.Connection[Any],
    workspace_id: int,
    draft_id: int,
    allowed: tuple[str, ...],
    status: str,
    actor: str,
) -> None:
    with workspace_tx(conn, workspace_id):
        row = conn.execute(
            "SELECT status FROM ai_drafts WHERE id = %s FOR UPDATE", (draft_id,)
        ).fetchone()
        if row is None:
            raise NotFound("no such draft in this workspace")
        if row[0] not in allowed:
            if row[0] == "audit_failed":
                raise Conflict("this draft failed its audit and can never be sent: edit it")
            raise Conflict(f"this draft is {row[0]}; it cannot become {status}")
        conn.execute(
            "UPDATE ai_drafts SET status = %s, decided_by = %s, decided_at = now() WHERE id = %s",
            (status, actor, draft_id),
        )
        audit.record(
            conn, actor, f"ai.draft_{status}", {"workspace_id": workspace_id, "draft_id": draft_id}
        )


def approve(service: AIService, workspace_id: int, draft_id: int, actor: str) -> None:
    with service.connect() as conn, workspace_tx(conn, workspace_id):
        _decide(conn, workspace_id, draft_id, ("awaiting_review",), "approved", actor)
        conn.execute("UPDATE ai_drafts SET status = 'queued' WHERE id = %s", (draft_id,))
    service.queue.queue_for_sending(draft_id, workspace_id=workspace_id)


def reject(service: AIService, workspace_id: int, draft_id: int, actor: str) -> None:
    with service.connect() as conn:
        _decide(
            conn, workspace_id, draft_id, ("awaiting_review", "audit_failed"), "rejected", actor
        )


def edit(
    service: AIService, workspace_id: int, draft_id: int, actor: str, subject: str, body: str
) -> dict[str, Any]:
    """A person's new text, audited again before anyone may approve it."""
    try:
        Draft(subject=subject, body=body)
    except ValueError as exc:
        raise BadRequest("subject and body must be non-empty and within the length limits") from (
            exc
        )
    key = service.data_key()
    with service.connect() as conn:
        current = get_draft(conn, key, workspace_id, draft_id)
        if current["status"] not in ("awaiting_review", "audit_failed"):
            raise Conflict(f"this draft is {current['status']}; it can no longer be edited")
        campaign = get_campaign(conn, key, workspace_id, current["campaign_id"])
        facts = load_lead_facts(conn, key, workspace_id, current["lead_id"])
    if campaign.key_id is None:
        raise BadRequest("the campaign's provider key was removed: choose another key")
    ctx = service.context(workspace_id, campaign.key_id, campaign.model)
    passed, reasons, audit_run = _audit(
        ctx, facts, campaign, subject, body, current["step"], current["lead_id"]
    )
    status = "awaiting_review" if passed else "audit_failed"
    with service.connect() as conn, workspace_tx(conn, workspace_id):
        conn.execute(
            "UPDATE ai_drafts SET subject = "
            + _enc("subj")
            + ", body = "
            + _enc("body")
            + ", audit_reasons = "
            + _enc("reasons")
            + ", status = %(st)s, audit_run_id = %(ar)s, edited = true, decided_by = %(a)s,"
            " decided_at = now() WHERE id = %(id)s",
            {
                "subj": subject,
                "body": body,
                "reasons": json.dumps(reasons),
                "st": status,
                "ar": audit_run,
                "a": actor,
                "id": draft_id,
                "k": key.column_key,
            },
        )
        audit.record(
            conn, actor, "ai.draft_edited", {"workspace_id": workspace_id, "draft_id": draft_id}
        )
    return {"id": draft_id, "status": status, "audit_reasons": reasons}
