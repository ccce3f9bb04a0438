"""The send queue in Postgres (no broker): planning due steps into `outbound_messages` rows,
claiming them with `SELECT … FOR UPDATE SKIP LOCKED`, and the state transitions after SMTP.

    queued ──claim──> sending ──250──> sent
      ^                  │ 4xx / connection ──> retry (backoff) ──claim──> sending
      │                  │ 5xx ──> bounced        suppressed just before DATA ──> suppressed
      └──(settle: not in Sent, provider mode)──┘  lease expired, in Sent ──> sent
                                                   lease expired, unknowable ──> uncertain

A row and its Message-ID exist before any SMTP traffic; `(enrollment, position)` is unique,
so a step is planned at most once, and settlement decides what a crash left behind.
In a campaign with AI settings a step's text is its queued AI draft (see `drafts`), planned
into the same row and sent the same way; the row's outcome is written back to the draft.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from paitho_tenant.crypto import COLUMN_OPTIONS, DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.outbound import compose, drafts, schedule, templating
from paitho_tenant.outbound.errors import TemplateError
from paitho_tenant.outbound.tokens import UnsubscribeSigner, new_token

IN_FLIGHT = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)  # due_at of a lead whose step is queued
_ENQUEUE = (
    "WITH m AS (INSERT INTO messages (lead_id, direction, headers, body) VALUES (%(lead)s,"
    " 'sent', pgp_sym_encrypt(%(h)s, %(k)s, '" + COLUMN_OPTIONS + "'),"
    " pgp_sym_encrypt(%(b)s, %(k)s, '" + COLUMN_OPTIONS + "')) RETURNING id),"
    " o AS (INSERT INTO outbound_messages (enrollment_id, position, variant_id, mailbox_id,"
    " token, not_before, queued_on, message_row, raw) SELECT %(e)s, %(pos)s, %(v)s, %(mb)s,"
    " %(tok)s, %(now)s, %(day)s, m.id,"
    " pgp_sym_encrypt(%(raw)s, %(k)s, '" + COLUMN_OPTIONS + "') FROM m RETURNING id),"
    " d AS (UPDATE ai_drafts SET outbound_id = (SELECT id FROM o) WHERE id = %(draft)s)"
    " UPDATE enrollments SET mailbox_id = %(mb)s, next_position = next_position + 1,"
    " thread_tokens = thread_tokens || %(tok)s::text, thread_root = coalesce(thread_root,"
    " %(tok)s), due_at = %(inflight)s, status_reason = nullif(status_reason, %(waiting)s)"
    " WHERE id = %(e)s"
)
MAX_ATTEMPTS = 8


@dataclass
class PlanResult:
    queued: int = 0
    deferred: int = 0  # outside the window or no mailbox room today
    blocked: int = 0  # template gaps
    completed: int = 0
    suppressed: int = 0


@dataclass(frozen=True)
class Job:
    id: int
    enrollment_id: int
    mailbox_id: int
    token: str
    attempts: int
    raw: bytes = field(repr=False)  # the exact message planned, headers and body
    recipient: str = field(repr=False)
    email_bidx: bytes = field(repr=False)
    active: bool = True


def _steps(conn: psycopg.Connection[Any], key: DataKey, campaign_id: int) -> dict[int, Any]:
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(
        "SELECT s.position, s.delay_days, s.business_days, v.id AS variant_id, v.label,"
        " pgp_sym_decrypt(v.subject, %(k)s) AS subject, pgp_sym_decrypt(v.body, %(k)s) AS body"
        " FROM campaign_steps s LEFT JOIN step_variants v ON v.step_id = s.id"
        " WHERE s.campaign_id = %(c)s ORDER BY s.position, v.label",
        {"k": key.column_key, "c": campaign_id},
    ).fetchall()
    steps: dict[int, Any] = {}
    for r in rows:
        steps.setdefault(r["position"], []).append(r)
    return steps


def _campaign(conn: psycopg.Connection[Any], key: DataKey, campaign_id: int) -> dict[str, Any]:
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(
        "SELECT c.*, pgp_sym_decrypt(b.sending_identity, %(k)s) AS from_name,"
        " pgp_sym_decrypt(f.postal_address, %(k)s) AS postal,"
        " EXISTS (SELECT 1 FROM ai_campaign_settings a WHERE a.campaign_id = c.id) AS ai"
        " FROM campaigns c JOIN brands b ON b.id = c.brand_id"
        " LEFT JOIN brand_footers f ON f.brand_id = c.brand_id WHERE c.id = %(c)s",
        {"k": key.column_key, "c": campaign_id},
    ).fetchone()
    assert row is not None
    row["steps"] = _steps(conn, key, campaign_id)
    return row


def mailbox_loads(
    conn: psycopg.Connection[Any], today: dt.date, caps: bool
) -> dict[int, schedule.MailboxLoad]:
    rows = conn.execute(
        "SELECT m.id, m.daily_cap, m.ramp_start, m.ramp_step, m.started_on,"
        " (SELECT count(*) FROM outbound_messages o WHERE o.mailbox_id = m.id"
        "  AND o.queued_on = %s) FROM mailboxes m WHERE m.status = 'active' ORDER BY m.id",
        (today,),
    ).fetchall()
    return {
        int(r[0]): schedule.MailboxLoad(
            int(r[0]),
            int(r[5]),
            schedule.cap_for_day(r[1], r[2], r[3], r[4], today) if caps else None,
        )
        for r in rows
    }


def _from_addresses(conn: psycopg.Connection[Any], key: DataKey) -> dict[int, str]:
    rows = conn.execute(
        "SELECT id, pgp_sym_decrypt(from_address, %s) FROM mailboxes", (key.column_key,)
    ).fetchall()
    return {int(r[0]): str(r[1]) for r in rows}


def plan(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    now: dt.datetime,
    origin: str,
    caps: bool = True,
    limit: int = 500,
) -> PlanResult:
    """Queue the due steps of active enrolments (one transaction per call)."""
    result = PlanResult()
    signer = UnsubscribeSigner(key)
    today = schedule.utc_day(now)
    with workspace_tx(conn, workspace_id):
        drafts.sweep(conn, key, now)
        conn.execute(
            "UPDATE enrollments SET status = 'active', due_at = greatest(due_at, paused_until),"
            " paused_until = NULL WHERE status = 'paused' AND paused_until <= %s",
            (now,),
        )
        cur = conn.cursor(row_factory=dict_row)
        due = cur.execute(
            "SELECT e.id, e.lead_id, e.campaign_id, e.mailbox_id, e.timezone, e.next_position,"
            " e.thread_tokens, l.email_bidx, pgp_sym_decrypt(l.email, %(k)s) AS email,"
            " pgp_sym_decrypt(l.profile, %(k)s) AS profile,"
            " EXISTS (SELECT 1 FROM suppression s WHERE s.email_bidx = l.email_bidx) AS suppressed"
            " FROM enrollments e JOIN leads l ON l.id = e.lead_id"
            " JOIN campaigns c ON c.id = e.campaign_id AND c.status = 'active'"
            " WHERE e.status = 'active' AND e.due_at <= %(now)s"
            " ORDER BY e.due_at, e.id LIMIT %(n)s FOR UPDATE OF e SKIP LOCKED",
            {"k": key.column_key, "now": now, "n": limit},
        ).fetchall()
        if not due:
            return result
        loads = mailbox_loads(conn, today, caps)
        senders = _from_addresses(conn, key)
        campaigns: dict[int, dict[str, Any]] = {}
        for e in due:
            camp = campaigns.get(e["campaign_id"])
            if camp is None:
                camp = campaigns[e["campaign_id"]] = _campaign(conn, key, e["campaign_id"])
            _plan_one(conn, key, e, camp, loads, senders, signer, now, origin, result)
    return result


def _leave(conn: psycopg.Connection[Any], enrollment_id: int, status: str, reason: str) -> None:
    conn.execute(
        "UPDATE enrollments SET status = %s, status_reason = %s WHERE id = %s",
        (status, reason, enrollment_id),
    )


def _defer(conn: psycopg.Connection[Any], enrollment_id: int, until: dt.datetime) -> None:
    conn.execute("UPDATE enrollments SET due_at = %s WHERE id = %s", (until, enrollment_id))


def _plan_one(
    conn: psycopg.Connection[Any],
    key: DataKey,
    e: dict[str, Any],
    camp: dict[str, Any],
    loads: dict[int, schedule.MailboxLoad],
    senders: dict[int, str],
    signer: UnsubscribeSigner,
    now: dt.datetime,
    origin: str,
    result: PlanResult,
) -> None:
    steps = camp["steps"]
    variants = [v for v in steps.get(e["next_position"], []) if v["variant_id"] is not None]
    if e["next_position"] not in steps or not (variants or camp["ai"]):
        _leave(conn, e["id"], "completed", "every step sent")
        result.completed += 1
        return
    if e["suppressed"]:
        _leave(conn, e["id"], "unsubscribed", "on the suppression list")
        result.suppressed += 1
        return
    tz = schedule.zone(e["timezone"], camp["timezone"])
    window = schedule.SendWindow(
        tz, camp["window_start"], camp["window_end"], frozenset(camp["send_days"])
    )
    opens = window.next_open(now)
    if opens > now:
        _defer(conn, e["id"], opens)
        result.deferred += 1
        return
    mailbox_id = schedule.pick_mailbox(list(loads.values()), e["mailbox_id"])
    if mailbox_id is None:
        tomorrow = dt.datetime.combine(schedule.utc_day(now), dt.time(0), tzinfo=dt.UTC)
        _defer(conn, e["id"], tomorrow + dt.timedelta(days=1))
        result.deferred += 1
        return
    if not camp["postal"]:
        _leave(conn, e["id"], "blocked", "the brand has no postal address for the footer")
        result.blocked += 1
        return
    draft_id: int | None = None
    variant_id: int | None = None
    if camp["ai"]:
        found = drafts.queued(conn, key, e["campaign_id"], e["lead_id"], e["next_position"])
        if found is None:
            drafts.wait(conn, e["id"], now)
            result.deferred += 1
            return
        draft_id, subject, body = found  # as approved (or edited and re-audited): verbatim
    else:
        profile = json.loads(e["profile"]) if e["profile"] else {}
        values = templating.lead_values(e["email"], profile, {})
        variant = variants[e["id"] % len(variants)]
        variant_id = variant["variant_id"]
        try:
            subject = templating.render(variant["subject"], values)
            if not subject.strip():
                first = steps[1][e["id"] % len(steps[1])]
                subject = "Re: " + templating.render(first["subject"], values)
            body = templating.render(variant["body"], values)
        except TemplateError as exc:
            _leave(conn, e["id"], "blocked", exc.message)
            result.blocked += 1
            return
    token = new_token()
    draft = compose.Draft(
        from_address=senders[mailbox_id],
        from_name=camp["from_name"],
        to_address=e["email"],
        subject=subject,
        body=body,
        token=token,
        thread_tokens=tuple(e["thread_tokens"]),
        unsubscribe_url=f"{origin.rstrip('/')}/u/{signer.sign(camp['workspace_id'], e['id'])}",
        postal_address=camp["postal"],
    )
    msg = compose.build(draft, now)
    headers = compose.stored_headers(msg)
    headers["List-Unsubscribe"] = str(msg["List-Unsubscribe"])
    headers["List-Unsubscribe-Post"] = str(msg["List-Unsubscribe-Post"])
    # One round trip: the readable copy in `messages`, the queue row with the exact bytes,
    # and the lead's thread, all encrypted under the data key (a bind parameter).
    conn.execute(_ENQUEUE, {
        "lead": e["lead_id"],
        "h": json.dumps(headers, ensure_ascii=False),
        "b": msg.get_content(),
        "k": key.column_key,
        "e": e["id"],
        "pos": e["next_position"],
        "v": variant_id,
        "draft": draft_id,
        "waiting": drafts.WAITING,
        "mb": mailbox_id,
        "tok": token,
        "now": now,
        "day": schedule.utc_day(now),
        # Text, not bytea, so export decrypts it like every other column: a composed
        # message is ASCII headers and a UTF-8 body.
        "raw": msg.as_bytes().decode("utf-8"),
        "inflight": IN_FLIGHT,
    })  # fmt: skip
    load = loads[mailbox_id]
    loads[mailbox_id] = schedule.MailboxLoad(load.id, load.sent_today + 1, load.cap)
    result.queued += 1


def claim(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    now: dt.datetime,
    lease: dt.timedelta,
    limit: int = 100,
    mailbox_id: int | None = None,
) -> list[Job]:
    """Lease up to `limit` ready rows (state 'sending') and return them with their content."""
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        rows = cur.execute(
            "WITH picked AS (SELECT id FROM outbound_messages"
            " WHERE state IN ('queued', 'retry') AND not_before <= %(now)s"
            " AND (%(mb)s::bigint IS NULL OR mailbox_id = %(mb)s)"
            " ORDER BY id LIMIT %(n)s FOR UPDATE SKIP LOCKED),"
            " leased AS (UPDATE outbound_messages o SET state = 'sending',"
            " attempts = o.attempts + 1, lease_until = %(lease)s"
            " FROM picked WHERE o.id = picked.id RETURNING o.*)"
            " SELECT leased.id, leased.enrollment_id, leased.mailbox_id, leased.token,"
            " leased.attempts, pgp_sym_decrypt(leased.raw, %(k)s) AS raw,"
            " pgp_sym_decrypt(l.email, %(k)s) AS recipient, l.email_bidx, e.status"
            " FROM leased JOIN enrollments e ON e.id = leased.enrollment_id"
            " JOIN leads l ON l.id = e.lead_id ORDER BY leased.id",
            {"now": now, "n": limit, "lease": now + lease, "k": key.column_key, "mb": mailbox_id},
        ).fetchall()
    return [
        Job(
            r["id"],
            r["enrollment_id"],
            r["mailbox_id"],
            r["token"],
            r["attempts"],
            str(r["raw"]).encode("utf-8"),
            r["recipient"],
            bytes(r["email_bidx"]),
            r["status"] in ("active", "paused"),
        )
        for r in rows
    ]


def is_suppressed(conn: psycopg.Connection[Any], email_bidx: bytes) -> bool:
    row = conn.execute("SELECT 1 FROM suppression WHERE email_bidx = %s", (email_bidx,)).fetchone()
    return row is not None


def mark_data(
    conn: psycopg.Connection[Any], workspace_id: int, job_id: int, now: dt.datetime
) -> None:
    with workspace_tx(conn, workspace_id):
        conn.execute("UPDATE outbound_messages SET data_at = %s WHERE id = %s", (now, job_id))


def mark_sent(
    conn: psycopg.Connection[Any], workspace_id: int, job_id: int, now: dt.datetime
) -> None:
    """The server accepted the message: the row is sent and the lead's next step is due."""
    mark_sent_many(conn, workspace_id, [job_id], now)


def mark_sent_many(
    conn: psycopg.Connection[Any], workspace_id: int, job_ids: list[int], now: dt.datetime
) -> None:
    """`mark_sent` for a batch, in one transaction committed without waiting for the flush
    to disk: if PostgreSQL itself crashes before the flush, the rows are back in 'sending'
    (the lease was committed durably) and settlement finds them in the Sent folder."""
    if not job_ids:
        return
    with workspace_tx(conn, workspace_id):
        conn.execute("SET LOCAL synchronous_commit = off")
        enrollments = [
            int(r[0])
            for r in conn.execute(
                "UPDATE outbound_messages SET state = 'sent', sent_at = %s, lease_until = NULL,"
                " smtp_code = 250 WHERE id = ANY(%s) AND state IN ('sending', 'retry', 'queued')"
                " RETURNING enrollment_id",
                (now, job_ids),
            ).fetchall()
        ]
        if not enrollments:
            return
        drafts.mark_sent(conn, job_ids, now)
        rows = conn.execute(
            "SELECT e.id, e.timezone, c.timezone, s.delay_days, s.business_days"
            " FROM enrollments e JOIN campaigns c ON c.id = e.campaign_id"
            " LEFT JOIN campaign_steps s ON s.campaign_id = e.campaign_id"
            "  AND s.position = e.next_position WHERE e.id = ANY(%s)",
            (enrollments,),
        ).fetchall()
        done = [int(r[0]) for r in rows if r[3] is None]
        due = [
            (
                schedule.add_delay(now, int(r[3]), bool(r[4]), schedule.zone(r[1], r[2])),
                int(r[0]),
            )
            for r in rows
            if r[3] is not None
        ]
        if done:
            conn.execute(
                "UPDATE enrollments SET status = 'completed', status_reason = 'every step sent'"
                " WHERE id = ANY(%s) AND status = 'active'",
                (done,),
            )
        if due:
            conn.cursor().executemany(
                "UPDATE enrollments SET due_at = %s WHERE id = %s"
                " AND status IN ('active', 'paused')",
                due,
            )


def mark_outcome(
    conn: psycopg.Connection[Any],
    workspace_id: int,
    job: Job,
    state: str,
    code: int | None,
    reason: str,
    not_before: dt.datetime | None = None,
) -> None:
    """retry (with not_before), bounced, suppressed or failed; the lead leaves on the latter."""
    with workspace_tx(conn, workspace_id):
        conn.execute(
            "UPDATE outbound_messages SET state = %s, smtp_code = %s, last_error = %s,"
            " lease_until = NULL, not_before = coalesce(%s, not_before) WHERE id = %s",
            (state, code, reason[:300], not_before, job.id),
        )
        lead_status = {"bounced": "bounced", "suppressed": "unsubscribed", "failed": "stopped"}
        if state in lead_status:
            drafts.mark_failed(conn, job.id, reason)
            conn.execute(
                "UPDATE enrollments SET status = %s, status_reason = %s"
                " WHERE id = %s AND status IN ('active', 'paused')",
                (lead_status[state], reason[:300], job.enrollment_id),
            )


def backoff(attempts: int, now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(minutes=min(2 ** max(0, attempts - 1), 240))


@dataclass(frozen=True)
class Unsettled:
    id: int
    mailbox_id: int
    token: str
    data_started: bool


def lease_expired(
    conn: psycopg.Connection[Any],
    workspace_id: int,
    now: dt.datetime,
    lease: dt.timedelta,
    limit: int = 500,
) -> list[Unsettled]:
    """Rows left in 'sending' by a worker that died: re-leased to the caller for settlement."""
    with workspace_tx(conn, workspace_id):
        rows = conn.execute(
            "WITH picked AS (SELECT id FROM outbound_messages WHERE state = 'sending'"
            " AND lease_until < %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE outbound_messages o SET lease_until = %s FROM picked"
            " WHERE o.id = picked.id RETURNING o.id, o.mailbox_id, o.token, o.data_at IS NOT NULL",
            (now, limit, now + lease),
        ).fetchall()
    return [Unsettled(int(r[0]), int(r[1]), str(r[2]), bool(r[3])) for r in rows]


def requeue(conn: psycopg.Connection[Any], workspace_id: int, job_id: int, state: str) -> None:
    """After settlement: back to 'retry' (not sent) or 'uncertain' (cannot know; never resent)."""
    with workspace_tx(conn, workspace_id):
        conn.execute(
            "UPDATE outbound_messages SET state = %s, lease_until = NULL, data_at = NULL"
            " WHERE id = %s AND state = 'sending'",
            (state, job_id),
        )
        if state == "uncertain":
            drafts.mark_failed(conn, job_id, drafts.UNCERTAIN)


Clock = Callable[[], dt.datetime]
