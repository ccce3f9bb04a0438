"""AI drafts (issue 7) as the text of a sequence step.

A campaign with AI settings (`ai_campaign_settings`) sends, for each step, the draft a person
approved (review mode) or whose audit passed (autonomous mode): status `queued`. The draft's
status is the hand-over; the planner polls it, so nothing is lost when no hook is wired.

    queued ──planner──> queued + outbound_id ──250 (or found in Sent)──> sent
                                             └─bounced / suppressed / failed / uncertain──> failed
    queued, lead left the sequence or step already planned ──> failed (with the reason)

The planner enrols the lead of a queued draft in its (active) campaign, plans the draft for
the enrolment's current step in the same row (`UNIQUE (enrollment_id, position)`) with the
same caps, window, rotation, headers and footer as a template step, and an enrolment whose
step has no queued draft yet waits (re-polled every DRAFT_POLL, woken as soon as one is
queued). Drafts whose audit failed are never `queued`, so they are never read here.
Every function runs inside the caller's workspace-scoped transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from paitho_tenant.crypto import DataKey

WAITING = "awaiting its AI draft"
DRAFT_POLL = dt.timedelta(minutes=5)
UNCERTAIN = "the send could not be confirmed after a crash; it is not sent again"


def sweep(conn: psycopg.Connection[Any], key: DataKey, now: dt.datetime) -> None:
    """Before planning: fail drafts that can no longer go out, enrol the leads of queued
    drafts, and wake enrolments that were waiting for the draft now queued. Rows another
    planner holds are skipped (SKIP LOCKED): concurrent planners never wait on each other."""
    conn.execute(
        "WITH stale AS (SELECT d.id, e.status, e.next_position > d.step AS planned"
        " FROM ai_drafts d JOIN enrollments e"
        " ON e.campaign_id = d.campaign_id AND e.lead_id = d.lead_id"
        " WHERE d.status = 'queued' AND d.outbound_id IS NULL"
        " AND (e.status NOT IN ('active', 'paused') OR e.next_position > d.step)"
        " FOR UPDATE OF d SKIP LOCKED)"
        " UPDATE ai_drafts d SET status = 'failed', send_error = CASE"
        " WHEN stale.planned THEN 'this step of the sequence was already planned'"
        " ELSE 'the lead left the sequence (' || stale.status || ')' END"
        " FROM stale WHERE d.id = stale.id"
    )
    conn.execute(
        "INSERT INTO enrollments (campaign_id, lead_id, timezone, due_at)"
        " SELECT DISTINCT ON (d.campaign_id, d.lead_id) d.campaign_id, d.lead_id,"
        " nullif(coalesce(p.profile ->> 'timezone', p.profile ->> 'time_zone'), ''), %(now)s"
        " FROM ai_drafts d JOIN campaigns c ON c.id = d.campaign_id AND c.status = 'active'"
        " JOIN leads l ON l.id = d.lead_id"
        " CROSS JOIN LATERAL (SELECT pgp_sym_decrypt(l.profile, %(k)s)::jsonb AS profile) p"
        " WHERE d.status = 'queued' AND d.outbound_id IS NULL"
        " ORDER BY d.campaign_id, d.lead_id ON CONFLICT (campaign_id, lead_id) DO NOTHING",
        {"now": now, "k": key.column_key},
    )
    conn.execute(
        "WITH woken AS (SELECT e.id FROM enrollments e JOIN ai_drafts d"
        " ON d.campaign_id = e.campaign_id AND d.lead_id = e.lead_id"
        " AND d.step = e.next_position WHERE d.status = 'queued' AND d.outbound_id IS NULL"
        " AND e.status = 'active' AND e.status_reason = %(w)s AND e.due_at > %(now)s"
        " FOR UPDATE OF e SKIP LOCKED)"
        " UPDATE enrollments e SET due_at = %(now)s, status_reason = NULL"
        " FROM woken WHERE e.id = woken.id",
        {"now": now, "w": WAITING},
    )


def queued(
    conn: psycopg.Connection[Any], key: DataKey, campaign_id: int, lead_id: int, step: int
) -> tuple[int, str, str] | None:
    """The newest queued, not yet planned draft for this step: (id, subject, body)."""
    row = conn.execute(
        "SELECT id, pgp_sym_decrypt(subject, %(k)s), pgp_sym_decrypt(body, %(k)s)"
        " FROM ai_drafts WHERE campaign_id = %(c)s AND lead_id = %(l)s AND step = %(s)s"
        " AND status = 'queued' AND outbound_id IS NULL ORDER BY id DESC LIMIT 1 FOR UPDATE",
        {"k": key.column_key, "c": campaign_id, "l": lead_id, "s": step},
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


def wait(conn: psycopg.Connection[Any], enrollment_id: int, now: dt.datetime) -> None:
    """No queued draft for the due step yet: look again later (or when one is queued)."""
    conn.execute(
        "UPDATE enrollments SET due_at = %s, status_reason = %s WHERE id = %s",
        (now + DRAFT_POLL, WAITING, enrollment_id),
    )


def mark_sent(conn: psycopg.Connection[Any], job_ids: list[int], now: dt.datetime) -> None:
    conn.execute(
        "UPDATE ai_drafts SET status = 'sent', sent_at = %s, send_error = NULL"
        " WHERE outbound_id = ANY(%s) AND status = 'queued'",
        (now, job_ids),
    )


def mark_failed(conn: psycopg.Connection[Any], job_id: int, reason: str) -> None:
    conn.execute(
        "UPDATE ai_drafts SET status = 'failed', send_error = %s"
        " WHERE outbound_id = %s AND status = 'queued'",
        (reason[:300], job_id),
    )
