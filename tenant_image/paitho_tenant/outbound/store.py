"""Outbound records in the tenant database: mailboxes, brand footers, campaigns, steps and
their A/B variants, enrolments. Encrypted columns take the data key as a bind parameter.

The core's `leads`, `brands`, `keychain` and `messages` tables are used as they are; lead
values are read here with the same decrypt expressions the core uses (see `lead_for_send`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.rows import dict_row

from paitho_tenant import keychain
from paitho_tenant.crypto import COLUMN_OPTIONS, DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.errors import BadRequest, NotFound

ENC = "pgp_sym_encrypt(%s, %s, '" + COLUMN_OPTIONS + "')"
SECURITIES = ("ssl", "starttls", "none")


@dataclass(frozen=True)
class MailboxSpec:
    """What a customer gives to connect a mailbox (the password goes to the keychain)."""

    label: str
    from_address: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    imap_host: str
    imap_port: int
    imap_security: str
    username: str
    auth: str = "password"  # or "xoauth2" (the secret is then an OAuth access token)
    sent_copy: str = "provider"
    daily_cap: int = 50
    ramp_start: int = 10
    ramp_step: int = 5


@dataclass(frozen=True)
class MailboxConfig:
    """A stored mailbox with its secret, for the engine's own connections (never over HTTP)."""

    id: int
    workspace_id: int
    spec: MailboxSpec
    secret: str
    sent_folder: str
    status: str
    started_on: dt.date

    def __repr__(self) -> str:
        return f"MailboxConfig(id={self.id}, label={self.spec.label!r}, secret=<redacted>)"


def create_mailbox(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    spec: MailboxSpec,
    secret: str,
    sent_folder: str = "Sent",
    started_on: dt.date | None = None,
) -> int:
    """Store the secret in the keychain and the mailbox beside it; returns the mailbox id."""
    kc = keychain.add(conn, key, workspace_id, "smtp", f"mailbox {spec.label}"[:200], secret)
    k = key.column_key
    with workspace_tx(conn, workspace_id):
        row = conn.execute(
            "INSERT INTO mailboxes (label, from_address, username, secret_id, auth, smtp_host,"
            " smtp_port, smtp_security, imap_host, imap_port, imap_security, sent_folder,"
            " sent_copy, daily_cap, ramp_start, ramp_step, started_on)"
            f" VALUES (%s, {ENC}, {ENC}, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " coalesce(%s, current_date)) RETURNING id",
            (
                spec.label,
                spec.from_address,
                k,
                spec.username,
                k,
                kc["id"],
                spec.auth,
                spec.smtp_host,
                spec.smtp_port,
                spec.smtp_security,
                spec.imap_host,
                spec.imap_port,
                spec.imap_security,
                sent_folder,
                spec.sent_copy,
                spec.daily_cap,
                spec.ramp_start,
                spec.ramp_step,
                started_on,
            ),
        ).fetchone()
    assert row is not None
    return int(row[0])


def load_mailbox(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int, mailbox_id: int
) -> MailboxConfig:
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        row = cur.execute(
            "SELECT m.*, pgp_sym_decrypt(m.from_address, %(k)s) AS from_plain,"
            " pgp_sym_decrypt(m.username, %(k)s) AS user_plain,"
            " pgp_sym_decrypt(c.secret, %(k)s) AS secret_plain"
            " FROM mailboxes m JOIN keychain c ON c.id = m.secret_id WHERE m.id = %(id)s",
            {"k": key.column_key, "id": mailbox_id},
        ).fetchone()
    if row is None:
        raise NotFound("no such mailbox in this workspace")
    spec = MailboxSpec(
        label=row["label"],
        from_address=row["from_plain"],
        smtp_host=row["smtp_host"],
        smtp_port=row["smtp_port"],
        smtp_security=row["smtp_security"],
        imap_host=row["imap_host"],
        imap_port=row["imap_port"],
        imap_security=row["imap_security"],
        username=row["user_plain"],
        auth=row["auth"],
        sent_copy=row["sent_copy"],
        daily_cap=row["daily_cap"],
        ramp_start=row["ramp_start"],
        ramp_step=row["ramp_step"],
    )
    return MailboxConfig(
        row["id"],
        workspace_id,
        spec,
        row["secret_plain"],
        row["sent_folder"],
        row["status"],
        row["started_on"],
    )


def mailbox_ids(
    conn: psycopg.Connection[Any], workspace_id: int, active_only: bool = True
) -> list[int]:
    with workspace_tx(conn, workspace_id):
        rows = conn.execute(
            "SELECT id FROM mailboxes WHERE status = 'active' OR NOT %s ORDER BY id",
            (active_only,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def set_brand_footer(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int, brand_id: int, postal: str
) -> None:
    if not postal.strip():
        raise BadRequest("a brand needs a postal address for the footer of its messages")
    with workspace_tx(conn, workspace_id):
        conn.execute(
            f"INSERT INTO brand_footers (brand_id, postal_address) VALUES (%s, {ENC})"
            " ON CONFLICT (brand_id) DO UPDATE SET postal_address = EXCLUDED.postal_address",
            (brand_id, postal, key.column_key),
        )


@dataclass(frozen=True)
class Variant:
    label: str
    subject: str  # empty for follow-ups: "Re: " + the first step's subject
    body: str


def check_campaign(
    timezone: str, window: tuple[dt.time, dt.time], send_days: Sequence[int], ooo_days: int
) -> None:
    """BadRequest unless the schedule can ever send (pure; names the field at fault)."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadRequest("timezone must be an IANA time zone name such as Europe/Berlin") from exc
    if not window[0] < window[1]:
        raise BadRequest("the send window must start before it ends (same day)")
    if not send_days or not set(send_days) <= set(range(1, 8)):
        raise BadRequest("send_days must be ISO weekdays 1 (Monday) to 7 (Sunday)")
    if ooo_days < 1:
        raise BadRequest("ooo_default_days must be at least 1")


def create_campaign(
    conn: psycopg.Connection[Any],
    workspace_id: int,
    brand_id: int,
    name: str,
    timezone: str = "UTC",
    window: tuple[dt.time, dt.time] = (dt.time(9), dt.time(17)),
    send_days: Sequence[int] = (1, 2, 3, 4, 5),
    ooo_default_days: int = 7,
) -> int:
    check_campaign(timezone, window, send_days, ooo_default_days)
    with workspace_tx(conn, workspace_id):
        row = conn.execute(
            "INSERT INTO campaigns (brand_id, name, timezone, window_start, window_end,"
            " send_days, ooo_default_days) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (brand_id, name, timezone, window[0], window[1], list(send_days), ooo_default_days),
        ).fetchone()
    assert row is not None
    return int(row[0])


def add_step(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    campaign_id: int,
    position: int,
    delay_days: int,
    business_days: bool,
    variants: Sequence[Variant],
) -> int:
    if not variants:
        raise BadRequest("a step needs at least one variant")
    with workspace_tx(conn, workspace_id):
        row = conn.execute(
            "INSERT INTO campaign_steps (campaign_id, position, delay_days, business_days)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (campaign_id, position, delay_days, business_days),
        ).fetchone()
        assert row is not None
        for v in variants:
            conn.execute(
                f"INSERT INTO step_variants (step_id, label, subject, body)"
                f" VALUES (%s, %s, {ENC}, {ENC})",
                (row[0], v.label, v.subject, key.column_key, v.body, key.column_key),
            )
    return int(row[0])


def set_campaign_status(
    conn: psycopg.Connection[Any], workspace_id: int, campaign_id: int, status: str
) -> None:
    with workspace_tx(conn, workspace_id):
        cur = conn.execute("UPDATE campaigns SET status = %s WHERE id = %s", (status, campaign_id))
    if cur.rowcount != 1:
        raise NotFound("no such campaign in this workspace")


def enroll(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    campaign_id: int,
    lead_ids: Sequence[int],
    now: dt.datetime,
) -> int:
    """Put leads into a campaign (due now); a lead's `timezone` profile field is kept."""
    with workspace_tx(conn, workspace_id):
        rows = conn.execute(
            "SELECT id, pgp_sym_decrypt(profile, %s) FROM leads WHERE id = ANY(%s)",
            (key.column_key, list(lead_ids)),
        ).fetchall()
        added = 0
        for lead_id, profile_text in rows:
            profile = json.loads(profile_text) if profile_text else {}
            tz = profile.get("timezone") or profile.get("time_zone") or None
            cur = conn.execute(
                "INSERT INTO enrollments (campaign_id, lead_id, timezone, due_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (campaign_id, lead_id) DO NOTHING",
                (campaign_id, lead_id, tz, now),
            )
            added += cur.rowcount
    return added


def enrollment_states(
    conn: psycopg.Connection[Any], workspace_id: int, campaign_id: int
) -> dict[int, dict[str, Any]]:
    """lead id -> {status, status_reason, next_position, due_at, paused_until, mailbox_id}."""
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        rows = cur.execute(
            "SELECT lead_id, status, status_reason, next_position, due_at, paused_until,"
            " mailbox_id FROM enrollments WHERE campaign_id = %s",
            (campaign_id,),
        ).fetchall()
    return {int(r.pop("lead_id")): r for r in rows}


def stop_lead(
    conn: psycopg.Connection[Any], workspace_id: int, campaign_id: int, lead_id: int
) -> None:
    """Manual stop of one lead in one campaign."""
    with workspace_tx(conn, workspace_id):
        conn.execute(
            "UPDATE enrollments SET status = 'stopped', status_reason = 'stopped by hand'"
            " WHERE campaign_id = %s AND lead_id = %s",
            (campaign_id, lead_id),
        )


def variant_results(
    conn: psycopg.Connection[Any], workspace_id: int, campaign_id: int
) -> list[dict[str, Any]]:
    """Per step and A/B variant: messages that went out, bounced, and leads who replied after
    that variant was the last thing they received."""
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        return cur.execute(
            "WITH last AS (SELECT DISTINCT ON (o.enrollment_id) o.enrollment_id, o.variant_id"
            "  FROM outbound_messages o WHERE o.state IN ('sent', 'bounced')"
            "  ORDER BY o.enrollment_id, o.position DESC)"
            " SELECT s.position, v.label,"
            " (SELECT count(*) FROM outbound_messages o WHERE o.variant_id = v.id"
            "  AND o.state IN ('sent', 'bounced')) AS sent,"
            " (SELECT count(*) FROM outbound_messages o WHERE o.variant_id = v.id"
            "  AND o.state = 'bounced') AS bounced,"
            " (SELECT count(*) FROM last JOIN enrollments e ON e.id = last.enrollment_id"
            "  WHERE last.variant_id = v.id AND e.status = 'replied') AS replied"
            " FROM campaign_steps s JOIN step_variants v ON v.step_id = s.id"
            " WHERE s.campaign_id = %s ORDER BY s.position, v.label",
            (campaign_id,),
        ).fetchall()
