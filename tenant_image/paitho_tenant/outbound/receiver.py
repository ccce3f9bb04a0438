"""Receiving from the connected mailbox only: IMAP IDLE where offered, polling otherwise.

Each new INBOX message (by UID, resumable across restarts, reset on UIDVALIDITY change) is
classified, matched to the enrolment it answers (Message-ID tokens in In-Reply-To/References
or the returned headers of a bounce; else the sender's blind index and the normalised
subject), stored encrypted in `messages`, and acted on:

    reply          that lead leaves the sequence ('replied')
    bounce         permanent: 'bounced', the address suppressed, the bounce rate checked
    auto_reply     out of office: paused until the stated return date (or the default)
    unsubscribe    suppressed; every enrolment of that lead stops
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import imapclient
import psycopg
from imapclient.exceptions import IMAPClientError

from paitho_tenant.crypto import COLUMN_OPTIONS, DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.outbound import classify, guardrails, schedule, store, unsubscribe
from paitho_tenant.outbound.classify import Classification
from paitho_tenant.outbound.store import MailboxConfig

log = logging.getLogger(__name__)

ImapFactory = Callable[[MailboxConfig], imapclient.IMAPClient]
_KEEP = ("From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References")
# The readable copy in the core's `messages` (headers and text encrypted under the data key,
# a bind parameter) and the inbound row pointing at it, in one round trip.
_STORE = (
    "WITH m AS (INSERT INTO messages (lead_id, direction, headers, body) VALUES (%(lead)s,"
    " 'received', pgp_sym_encrypt(%(h)s, %(k)s, '" + COLUMN_OPTIONS + "'),"
    " pgp_sym_encrypt(%(b)s, %(k)s, '" + COLUMN_OPTIONS + "')) RETURNING id)"
    " INSERT INTO inbound_messages (mailbox_id, uid, uidvalidity, kind, enrollment_id,"
    " message_row, received_at) SELECT %(mb)s, %(uid)s, %(uv)s, %(kind)s, %(e)s, m.id, %(now)s"
    " FROM m ON CONFLICT (mailbox_id, uidvalidity, uid) DO NOTHING"
)


@dataclass
class IngestResult:
    fetched: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    matched: int = 0


def _match(
    conn: psycopg.Connection[Any], key: DataKey, mailbox_id: int, c: Classification
) -> tuple[int | None, int | None]:
    """(enrollment id, outbound message id) this message is about, if any."""
    if c.tokens:
        row = conn.execute(
            "SELECT enrollment_id, id FROM outbound_messages WHERE token = ANY(%s)"
            " ORDER BY position DESC LIMIT 1",
            (list(c.tokens),),
        ).fetchone()
        if row:
            return int(row[0]), int(row[1])
    addresses = list(c.recipients) if c.kind == classify.BOUNCE else [c.sender]
    bidx = [key.email_index(a) for a in addresses if a]
    if not bidx:
        return None, None
    rows = conn.execute(
        "SELECT e.id, (SELECT o.id FROM outbound_messages o WHERE o.enrollment_id = e.id"
        "  ORDER BY o.position DESC LIMIT 1) AS last_send,"
        " (SELECT pgp_sym_decrypt(m.headers, %s) FROM outbound_messages o"
        "  JOIN messages m ON m.id = o.message_row WHERE o.enrollment_id = e.id"
        "  ORDER BY o.position LIMIT 1) AS first_headers"
        " FROM enrollments e JOIN leads l ON l.id = e.lead_id"
        " WHERE l.email_bidx = ANY(%s) AND e.mailbox_id = %s ORDER BY e.id DESC",
        (key.column_key, bidx, mailbox_id),
    ).fetchall()
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return None, None
    wanted = classify.normalised_subject(c.subject)
    for enrollment_id, last_send, first_headers in rows:
        subject = json.loads(first_headers).get("Subject", "") if first_headers else ""
        if classify.normalised_subject(subject) == wanted:
            return int(enrollment_id), int(last_send)
    return int(rows[0][0]), int(rows[0][1])


def ingest(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    mailbox_id: int,
    uidvalidity: int,
    uid: int,
    raw: bytes,
    now: dt.datetime,
) -> str:
    """Classify, match, store and act on one message (inside the caller's transaction)."""
    msg = classify.parse(raw)
    c = classify.classify_message(msg, now.date(), raw)
    enrollment_id, send_id = _match(conn, key, mailbox_id, c)
    lead_id = None
    if enrollment_id is not None:
        row = conn.execute(
            "SELECT e.lead_id, e.status, e.timezone, c.timezone, c.ooo_default_days,"
            " l.email_bidx FROM enrollments e JOIN campaigns c ON c.id = e.campaign_id"
            " JOIN leads l ON l.id = e.lead_id WHERE e.id = %s",
            (enrollment_id,),
        ).fetchone()
        assert row is not None
        lead_id = int(row[0])
        _act(conn, key, workspace_id, mailbox_id, c, enrollment_id, send_id, row, now)
    elif c.kind == classify.UNSUBSCRIBE and c.sender:
        unsubscribe.by_address(conn, key, workspace_id, c.sender, "unsubscribe")
    conn.execute(
        _STORE,
        {
            "lead": lead_id,
            "h": json.dumps(_headers(msg), ensure_ascii=False),
            "b": c.text,
            "k": key.column_key,
            "mb": mailbox_id,
            "uid": uid,
            "uv": uidvalidity,
            "kind": c.kind,
            "e": enrollment_id,
            "now": now,
        },
    )
    return c.kind


def _headers(msg: EmailMessage) -> dict[str, str]:
    out = {}
    for name in _KEEP:
        try:
            value = msg.get(name)
        except (ValueError, IndexError):
            value = None
        if value is not None:
            out[name] = str(value)
    return out


def _act(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    mailbox_id: int,
    c: Classification,
    enrollment_id: int,
    send_id: int | None,
    row: tuple[Any, ...],
    now: dt.datetime,
) -> None:
    _, status, lead_tz, campaign_tz, ooo_days, email_bidx = row
    live = status in ("active", "paused")
    if c.kind == classify.REPLY and live:
        conn.execute(
            "UPDATE enrollments SET status = 'replied', status_reason = 'the lead replied'"
            " WHERE id = %s",
            (enrollment_id,),
        )
    elif c.kind == classify.BOUNCE and c.permanent:
        if send_id is not None:
            conn.execute(
                "UPDATE outbound_messages SET state = 'bounced', last_error = %s WHERE id = %s",
                (f"bounce {c.status or ''}".strip(), send_id),
            )
        unsubscribe.suppress(conn, workspace_id, bytes(email_bidx), "hard_bounce")
        guardrails.enforce_bounce_rate(conn, workspace_id, mailbox_id)
    elif c.kind == classify.AUTO_REPLY and c.out_of_office and status == "active":
        tz = schedule.zone(lead_tz, campaign_tz)
        until = schedule.resume_after_ooo(now, c.return_date, int(ooo_days), tz)
        conn.execute(
            "UPDATE enrollments SET status = 'paused', paused_until = %s,"
            " status_reason = 'out of office' WHERE id = %s",
            (until, enrollment_id),
        )
    elif c.kind == classify.UNSUBSCRIBE:
        unsubscribe.suppress(conn, workspace_id, bytes(email_bidx), "unsubscribe")


class Receiver:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        key: DataKey,
        workspace_id: int,
        mailbox_id: int,
        imap_factory: ImapFactory,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        batch: int = 250,
    ) -> None:
        self.conn = conn
        self.key = key
        self.workspace_id = workspace_id
        self.mailbox_id = mailbox_id
        self.imap_factory = imap_factory
        self.clock = clock
        self.batch = batch
        self.config = store.load_mailbox(conn, key, workspace_id, mailbox_id)

    def poll_once(self, client: imapclient.IMAPClient | None = None) -> IngestResult:
        own = client is None
        client = client or self.imap_factory(self.config)
        try:
            return self._fetch_new(client)
        finally:
            if own:
                client.logout()

    def _fetch_new(self, client: imapclient.IMAPClient) -> IngestResult:
        result = IngestResult()
        info = client.select_folder("INBOX", readonly=True)
        uidvalidity = int(info[b"UIDVALIDITY"])
        with workspace_tx(self.conn, self.workspace_id):
            row = self.conn.execute(
                "SELECT inbox_uidvalidity, inbox_last_uid FROM mailboxes WHERE id = %s",
                (self.mailbox_id,),
            ).fetchone()
        assert row is not None
        last_uid = int(row[1]) if row[0] == uidvalidity else 0
        uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
        for start in range(0, len(uids), self.batch):
            chunk = uids[start : start + self.batch]
            fetched = client.fetch(chunk, ["BODY.PEEK[]"])
            now = self.clock()
            with workspace_tx(self.conn, self.workspace_id):
                for uid in chunk:
                    data = fetched.get(uid, {})
                    raw = data.get(b"BODY[]")
                    if not isinstance(raw, bytes):
                        continue
                    kind = ingest(
                        self.conn,
                        self.key,
                        self.workspace_id,
                        self.mailbox_id,
                        uidvalidity,
                        uid,
                        raw,
                        now,
                    )
                    result.fetched += 1
                    result.kinds[kind] = result.kinds.get(kind, 0) + 1
                self.conn.execute(
                    "UPDATE mailboxes SET inbox_uidvalidity = %s, inbox_last_uid = %s"
                    " WHERE id = %s",
                    (uidvalidity, chunk[-1], self.mailbox_id),
                )
        if result.fetched:
            log.info("mailbox %s: ingested %d (%s)", self.mailbox_id, result.fetched, result.kinds)
        return result

    def run(
        self, stop: threading.Event, poll_interval: float = 30.0, idle_timeout: float = 60.0
    ) -> None:
        """IDLE while the server offers it, polling otherwise, until `stop` is set."""
        while not stop.is_set():
            try:
                client = self.imap_factory(self.config)
            except Exception:
                log.exception("mailbox %s: cannot connect; retrying", self.mailbox_id)
                stop.wait(poll_interval)
                continue
            try:
                idle = client.has_capability("IDLE")
                while not stop.is_set():
                    self._fetch_new(client)
                    if idle:
                        client.idle()
                        try:
                            client.idle_check(timeout=min(idle_timeout, poll_interval))
                        finally:
                            client.idle_done()
                    else:
                        stop.wait(poll_interval)
            except (IMAPClientError, OSError):
                log.warning("mailbox %s: IMAP connection lost; reconnecting", self.mailbox_id)
            finally:
                try:
                    client.logout()
                except (IMAPClientError, OSError):
                    client.shutdown()
