"""A three-step sequence to twenty leads over two mailboxes, end to end against real servers
(aiosmtpd with STARTTLS and AUTH, Dovecot IMAP, a real PostgreSQL cluster), driven by an
injected clock: caps with ramp-up, send windows in each lead's time zone, rotation,
threading, a reply, an SMTP bounce, a DSN bounce, an RFC 8058 one-click unsubscribe, an
out-of-office pause and resume, a template gap, and each step delivered exactly once."""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import logging
import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import psycopg
import psycopg.sql
import pytest
from paitho_tenant import export, inventory
from paitho_tenant.app import Components, Settings
from paitho_tenant.db import app_conninfo, workspace_tx
from paitho_tenant.outbound import queue, schedule, store
from paitho_tenant.outbound import web as outbound_web
from paitho_tenant.outbound.receiver import Receiver
from paitho_tenant.outbound.sender import Sender
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tests.functional.outbound_servers import ORIGIN, Clock
from tests.functional.outbound_support import mail_servers, own_cluster, running_tenant

if TYPE_CHECKING:
    from tests.functional.outbound_support import MailWorld, Tenant

pytestmark = pytest.mark.functional

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
START = dt.datetime(2027, 6, 7, 4, 0, tzinfo=dt.UTC)  # Monday, before any window opens
CAP, RAMP_START, RAMP_STEP = 10, 6, 2
REPLY, SMTP_BOUNCE, DSN_BOUNCE, UNSUB, OOO, FALLBACK_REPLY, NO_COMPANY = 1, 2, 3, 4, 5, 6, 8


def _email(n: int) -> str:
    return f"lead{n:02d}@prospect.test"


def _leads() -> list[tuple[str, dict[str, str]]]:
    rows = []
    for n in range(1, 21):
        fields = {"first_name": f"Name{n:02d}", "company": f"Company {n:02d}"}
        if n == 7:
            del fields["first_name"]
        if n == NO_COMPANY:
            del fields["company"]
        if n > 10:
            fields["timezone"] = "America/New_York"
        rows.append((_email(n), fields))
    return rows


def _dsn(original_id: str, recipient: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.acme.test (Mail Delivery System)\r\n"
        "To: sales@acme.test\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.acme.test\r\n"
        f"\r\nFinal-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"To: {recipient}\r\nMessage-ID: {original_id}\r\n--B--\r\n"
    ).encode()


def _reply(frm: str, to: str, subject: str, text: str, in_reply_to: str | None) -> bytes:
    thread = f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n" if in_reply_to else ""
    return (
        f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n{thread}"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{text}\r\n"
    ).encode()


class _Collect(logging.Handler):
    """Every log line the engine writes during the run, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter().format(record))


class World:
    """The tenant, the engine and the mail servers, stepped by the clock."""

    def __init__(self, tenant: Tenant, mail: MailWorld) -> None:
        self.t, self.mail = tenant, mail
        self.clock = Clock(START)
        ws, key, conn = tenant.workspace_id, tenant.key, tenant.conn
        self.lead_ids = tenant.add_leads(_leads())
        self.by_id = {v: k for k, v in self.lead_ids.items()}
        brand = tenant.brand()
        self.mailboxes = {}
        for user, password in mail.users.items():
            spec = mail.spec(user, daily_cap=CAP, ramp_start=RAMP_START, ramp_step=RAMP_STEP)
            self.mailboxes[user] = store.create_mailbox(
                conn, key, ws, spec, password, "Sent", START.date()
            )
        self.campaign = store.create_campaign(conn, ws, brand, "launch", "Europe/Berlin")
        variants_1 = [
            store.Variant("A", "Quick question, {{first_name|there}}", "Hi {{first_name|there}},"
                          "\nhow does {{company|your team}} handle outbound today?"),
            store.Variant("B", "{{first_name|Hello}}: an idea for {{company|you}}",
                          "Hello {{first_name|there}},\none idea for {{company|your team}}."),
        ]  # fmt: skip
        store.add_step(conn, key, ws, self.campaign, 1, 0, False, variants_1)
        store.add_step(
            conn, key, ws, self.campaign, 2, 2, True,
            [store.Variant("A", "", "Following up on {{company}}, {{first_name|there}}.")],
        )  # fmt: skip
        store.add_step(
            conn, key, ws, self.campaign, 3, 3, False,
            [store.Variant("A", "", "Last note from me, {{first_name|there}}.")],
        )  # fmt: skip
        store.enroll(conn, key, ws, self.campaign, list(self.lead_ids.values()), START)
        store.set_campaign_status(conn, ws, self.campaign, "active")
        mail.handler.refuse[_email(SMTP_BOUNCE)] = 550
        self.sender = Sender(conn, key, ws, mail.smtp_factory, mail.imap_factory, clock=self.clock)
        self.receivers = [
            Receiver(conn, key, ws, mb, mail.imap_factory, clock=self.clock)
            for mb in self.mailboxes.values()
        ]
        pool = ConnectionPool(
            app_conninfo(tenant.admin),
            min_size=1,
            max_size=2,
            open=True,
            kwargs={"autocommit": True},
        )
        self.pool = pool
        app = Starlette(routes=outbound_web.routes)
        app.state.components = Components(Settings(tenant.admin), pool)
        app.state.components.vault.adopt(key)
        self.http = TestClient(app, base_url=ORIGIN)
        self.done_events: set[int] = set()
        self.log_lines: list[str] = []

    def sent(self) -> list[tuple[int, int, Message]]:
        """(lead id, position, message) for everything the SMTP server accepted."""
        with workspace_tx(self.t.conn, self.t.workspace_id):
            rows = self.t.conn.execute(
                "SELECT o.token, o.position, e.lead_id FROM outbound_messages o"
                " JOIN enrollments e ON e.id = o.enrollment_id"
            ).fetchall()
        by_token = {str(r[0]): (int(r[2]), int(r[1])) for r in rows}
        out = []
        for received in self.mail.handler.messages():
            msg = received.message
            token = str(msg["Message-ID"]).split("pto.")[1].split("@")[0]
            lead, position = by_token[token]
            out.append((lead, position, msg))
        return out

    def first_message(self, n: int) -> Message | None:
        lead = self.lead_ids[_email(n)]
        for lead_id, position, msg in self.sent():
            if lead_id == lead and position == 1:
                return msg
        return None

    def inject(self) -> bool:
        """Answer step 1 of the scripted leads once it has arrived."""
        injected = False
        for n in (REPLY, DSN_BOUNCE, UNSUB, OOO, FALLBACK_REPLY):
            if n in self.done_events:
                continue
            msg = self.first_message(n)
            if msg is None:
                continue
            self.done_events.add(n)
            injected = True
            mailbox_user = email.utils.parseaddr(str(msg["From"]))[1]
            password = self.mail.users[mailbox_user]
            mid, subject = str(msg["Message-ID"]), str(msg["Subject"])
            if n == REPLY:
                raw = _reply(_email(n), mailbox_user, "Re: " + subject, "Yes, call me.", mid)
            elif n == FALLBACK_REPLY:  # a client that dropped In-Reply-To and rewrote Re:
                raw = _reply(_email(n), mailbox_user, "AW: " + subject, "Gerne.", None)
            elif n == DSN_BOUNCE:
                raw = _dsn(mid, _email(n))
            elif n == OOO:
                raw = _reply(
                    _email(n), mailbox_user, "Abwesenheitsnotiz: " + subject,
                    "Ich bin bis zum 16.06.2027 nicht im Büro.", mid,
                )  # fmt: skip
                raw = b"Auto-Submitted: auto-replied\r\n" + raw
            else:  # RFC 8058: the mail provider POSTs to the List-Unsubscribe URL
                match = re.search(r"<(https://[^>]+)>", str(msg["List-Unsubscribe"]))
                assert match is not None
                url = match.group(1)
                response = self.http.post(
                    url[len(ORIGIN) :],
                    content=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                assert response.status_code == 200
                continue
            self.mail.dovecot.deliver(mailbox_user, password, raw)
        return injected

    def run(self, days: int) -> None:
        handler = _Collect()
        engine_log = logging.getLogger("paitho_tenant")
        engine_log.addHandler(handler)
        previous = engine_log.level
        engine_log.setLevel(logging.DEBUG)
        try:
            self._run(days)
        finally:
            engine_log.removeHandler(handler)
            engine_log.setLevel(previous)
        self.log_lines = handler.lines

    def _run(self, days: int) -> None:
        ticks = 0
        while self.clock.now < START + dt.timedelta(days=days):
            queue.plan(self.t.conn, self.t.key, self.t.workspace_id, self.clock(), ORIGIN)
            self.sender.run_once()
            if self.inject() or ticks % 12 == 0:
                for receiver in self.receivers:
                    receiver.poll_once()
            states = store.enrollment_states(self.t.conn, self.t.workspace_id, self.campaign)
            if all(s["status"] not in ("active", "paused") for s in states.values()):
                return
            self.clock.advance(hours=1)
            ticks += 1
        raise AssertionError("the sequence did not finish in time")


@pytest.fixture(scope="module")
def world(work_root: Path, pg_template: Path, pg_bindir: Path) -> Iterator[World]:
    """One run of the whole sequence, shared by the assertions below."""
    with (
        own_cluster(work_root, pg_template, pg_bindir) as cluster,
        running_tenant(cluster) as tenant,
        mail_servers(work_root) as mail,
    ):
        w = World(tenant, mail)
        try:
            w.run(days=21)
            yield w
        finally:
            w.http.close()
            w.pool.close()


def test_each_step_reaches_each_lead_exactly_once(world: World) -> None:
    """Counted at the SMTP server: no (lead, step) twice, and leads that left got no more."""
    sent = world.sent()
    counts = Counter((lead, position) for lead, position, _ in sent)
    assert max(counts.values()) == 1
    steps: dict[int, set[int]] = defaultdict(set)
    for lead, position, _ in sent:
        steps[lead].add(position)
    expected = {}
    for n in range(1, 21):
        if n == SMTP_BOUNCE:
            want: set[int] = set()
        elif n in (REPLY, DSN_BOUNCE, UNSUB, FALLBACK_REPLY, NO_COMPANY):
            want = {1}
        else:
            want = {1, 2, 3}
        expected[world.lead_ids[_email(n)]] = want
    assert {lead: steps.get(lead, set()) for lead in expected} == expected


def test_lead_states_after_the_run(world: World) -> None:
    """Reply stops only that lead (also when matched by sender and subject); bounces mark the
    lead; the one-click POST unsubscribes; a template gap blocks with a reason."""
    states = store.enrollment_states(world.t.conn, world.t.workspace_id, world.campaign)
    status = {world.by_id[lead]: s["status"] for lead, s in states.items()}
    assert status[_email(REPLY)] == "replied"
    assert status[_email(FALLBACK_REPLY)] == "replied"
    assert status[_email(SMTP_BOUNCE)] == "bounced"
    assert status[_email(DSN_BOUNCE)] == "bounced"
    assert status[_email(UNSUB)] == "unsubscribed"
    assert status[_email(NO_COMPANY)] == "blocked"
    reason = states[world.lead_ids[_email(NO_COMPANY)]]["status_reason"]
    assert "company" in reason and "Company" not in reason
    others = {e: s for e, s in status.items() if e not in {_email(n) for n in (1, 2, 3, 4, 6, 8)}}
    assert set(others.values()) == {"completed"}
    with world.t.app_connect() as conn:
        suppressed = {bytes(r[0]) for r in conn.execute("SELECT email_bidx FROM suppression")}
    for n in (UNSUB, SMTP_BOUNCE, DSN_BOUNCE):
        assert world.t.key.email_index(_email(n)) in suppressed


def test_windows_in_each_leads_time_zone(world: World) -> None:
    """Every message went out on a weekday between 09:00 and 17:00 in the lead's zone."""
    for lead, _, msg in world.sent():
        tz = NEW_YORK if int(world.by_id[lead][4:6]) > 10 else BERLIN
        local = email.utils.parsedate_to_datetime(str(msg["Date"])).astimezone(tz)
        assert local.isoweekday() <= 5
        assert dt.time(9) <= local.time() < dt.time(17)


def test_caps_ramp_and_rotation(world: World) -> None:
    """Per mailbox and day no more than the ramped cap; day one's caps bind; first steps are
    spread evenly over the two mailboxes."""
    per_day: Counter[tuple[str, dt.date]] = Counter()
    firsts: Counter[str] = Counter()
    with workspace_tx(world.t.conn, world.t.workspace_id):
        rows = world.t.conn.execute(
            "SELECT m.id, o.queued_on, o.position FROM outbound_messages o"
            " JOIN mailboxes m ON m.id = o.mailbox_id"
        ).fetchall()
    names = {v: k for k, v in world.mailboxes.items()}
    for mailbox_id, day, position in rows:
        per_day[(names[mailbox_id], day)] += 1
        if position == 1:
            firsts[names[mailbox_id]] += 1
    for (_, day), count in per_day.items():
        cap = schedule.cap_for_day(CAP, RAMP_START, RAMP_STEP, START.date(), day)
        assert cap is not None and count <= cap
    assert sum(c for (_, d), c in per_day.items() if d == START.date()) == 2 * RAMP_START
    assert set(firsts) == set(world.mailboxes)
    assert abs(firsts["sales1@acme.test"] - firsts["sales2@acme.test"]) <= 1


def test_threading_and_headers(world: World) -> None:
    """Follow-ups come from the same mailbox, thread under step one (In-Reply-To and
    References), reuse its subject; every message has RFC 8058 headers and the footer."""
    thread: dict[int, dict[int, Message]] = defaultdict(dict)
    for lead, position, msg in world.sent():
        thread[lead][position] = msg
        unsubscribe = " ".join(str(msg["List-Unsubscribe"]).split())
        assert unsubscribe.startswith(f"<{ORIGIN}/u/") and "<mailto:" in unsubscribe
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        body = msg.get_payload(decode=True)
        assert isinstance(body, bytes) and b"Acme Ltd, 1 Main Street, 10115 Berlin" in body
    complete = [steps for steps in thread.values() if len(steps) == 3]
    assert len(complete) == 14
    for steps in complete:
        first, second, third = steps[1], steps[2], steps[3]
        assert first["From"] == second["From"] == third["From"]
        assert second["In-Reply-To"] == first["Message-ID"]
        assert second["References"] == first["Message-ID"]
        assert third["In-Reply-To"] == second["Message-ID"]
        references = " ".join(str(third["References"]).split())  # unfold
        assert references == f"{first['Message-ID']} {second['Message-ID']}"
        subjects = [" ".join(str(m["Subject"]).split()) for m in (first, second, third)]
        assert subjects[1] == subjects[2] == "Re: " + subjects[0]


def test_out_of_office_pauses_then_resumes(world: World) -> None:
    """The OOO lead got nothing while away and step two on or after the stated return date."""
    lead = world.lead_ids[_email(OOO)]
    dates = {
        position: email.utils.parsedate_to_datetime(str(msg["Date"])).astimezone(BERLIN)
        for lead_id, position, msg in world.sent()
        if lead_id == lead
    }
    assert dates[2].date() >= dt.date(2027, 6, 16)
    regular = world.lead_ids[_email(9)]
    regular_second = next(m for lead_id, p, m in world.sent() if lead_id == regular and p == 2)
    assert email.utils.parsedate_to_datetime(str(regular_second["Date"])).date() < dt.date(
        2027, 6, 16
    )


def test_bodies_are_stored_encrypted(world: World) -> None:
    """Sent and received bodies are PGP ciphertext in the messages table, not plaintext."""
    with world.t.app_connect() as conn, workspace_tx(conn, world.t.workspace_id):
        rows = conn.execute("SELECT body, headers FROM messages").fetchall()
    assert len(rows) >= 40
    for body, headers in rows:
        assert bytes(body)[:1] in (b"\xc3", b"\x8c")
        assert b"Name0" not in bytes(body) and b"prospect.test" not in bytes(headers)


def test_inventory_declares_and_encrypts_outbound_columns(world: World) -> None:
    """After a full run every outbound column is in the data inventory and every column
    declared encrypted holds only AES-256 pgcrypto ciphertext."""
    with psycopg.connect(world.t.cluster.conninfo(dbname="paitho")) as conn:
        assert inventory.schema_drift(conn) == []
        assert inventory.ciphertext_violations(conn) == []
        for table in ("mailboxes", "step_variants", "brand_footers", "messages"):
            count = conn.execute(
                psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table))
            ).fetchone()
            assert count is not None and count[0] > 0


def test_engine_logs_no_address_or_body(world: World) -> None:
    """Nothing the engine logged during the run names a lead, quotes a body or a subject."""
    assert world.log_lines, "the engine logged nothing: the capture is broken"
    text = "\n".join(world.log_lines)
    for secret in ("prospect.test", "Name0", "Company 0", "Quick question", "sales1@", "Gerne"):
        assert secret not in text


def test_per_variant_results(world: World) -> None:
    """Step one's A and B variants split the leads and their results add up to what the
    servers saw: 20 sent, 2 bounced (SMTP 550 and DSN), 2 replies."""
    rows = store.variant_results(world.t.conn, world.t.workspace_id, world.campaign)
    first = [r for r in rows if r["position"] == 1]
    assert [r["label"] for r in first] == ["A", "B"]
    assert all(r["sent"] >= 5 for r in first)
    assert sum(r["sent"] for r in first) == 20
    assert sum(r["bounced"] for r in first) == 2
    assert sum(r["replied"] for r in first) == 2
    assert sum(r["replied"] for r in rows if r["position"] > 1) == 0


def test_export_includes_the_outbound_tables_decrypted(world: World) -> None:
    """The tenant's export anytime decrypts the outbound tables too (the planned bytes and
    the templates come back readable)."""
    with world.t.app_connect() as conn:
        data = b"".join(export.stream_zip(conn, world.t.key))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        assert {n.split(".")[0].split("/")[-1] for n in names} >= {
            "outbound_messages",
            "step_variants",
            "mailboxes",
        }
        text = "\n".join(
            archive.read(n).decode("utf-8", "replace") for n in names if "outbound_messages" in n
        )
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in text
