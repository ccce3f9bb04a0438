"""Engine behaviours against real servers: the suppression list checked just before DATA,
4xx retried with backoff, IMAP IDLE delivery, resumable ingestion, the bounce-rate stop,
SPF/DMARC refusal, and the engine's own Sent copy for providers that do not keep one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.resolver
import pytest
from paitho_tenant.db import workspace_tx
from paitho_tenant.outbound import guardrails, queue, store
from paitho_tenant.outbound.errors import CampaignRefused
from paitho_tenant.outbound.receiver import Receiver
from paitho_tenant.outbound.sender import Sender

from tests.conftest import RunningCluster
from tests.functional.outbound_servers import ORIGIN, Clock
from tests.functional.outbound_support import MailWorld, Tenant, mail_servers, running_tenant

pytestmark = pytest.mark.functional

USER = "sales1@acme.test"
NOW = dt.datetime(2027, 6, 8, 10, 0, tzinfo=dt.UTC)  # a Tuesday, inside the window


@pytest.fixture
def mail_world(work_root: Path) -> Iterator[MailWorld]:
    with mail_servers(work_root) as world:
        yield world


@pytest.fixture
def tenant(pg_cluster: RunningCluster) -> Iterator[Tenant]:
    with running_tenant(pg_cluster) as t:
        yield t


@dataclasses.dataclass
class Setup:
    tenant: Tenant
    mail: MailWorld
    clock: Clock
    campaign: int
    mailbox: int
    leads: dict[str, int]

    def sender(self, **kwargs: Any) -> Sender:
        t = self.tenant
        return Sender(
            t.conn, t.key, t.workspace_id, self.mail.smtp_factory, self.mail.imap_factory,
            clock=self.clock, **kwargs,
        )  # fmt: skip

    def plan(self) -> queue.PlanResult:
        t = self.tenant
        return queue.plan(t.conn, t.key, t.workspace_id, self.clock(), ORIGIN)

    def states(self) -> dict[str, str]:
        t = self.tenant
        with workspace_tx(t.conn, t.workspace_id):
            rows = t.conn.execute(
                "SELECT e.lead_id, o.state FROM outbound_messages o"
                " JOIN enrollments e ON e.id = o.enrollment_id"
            ).fetchall()
        by_id = {v: k for k, v in self.leads.items()}
        return {by_id[int(r[0])]: str(r[1]) for r in rows}


def _setup(tenant: Tenant, mail: MailWorld, n: int, steps: int = 1, **spec: Any) -> Setup:
    conn, key, ws = tenant.conn, tenant.key, tenant.workspace_id
    leads = tenant.add_leads([(f"p{i:02d}@prospect.test", {"first_name": "P"}) for i in range(n)])
    values = {"daily_cap": 1000, "ramp_start": 1000, **spec}
    mailbox_id = store.create_mailbox(conn, key, ws, mail.spec(USER, **values), mail.users[USER])
    campaign = store.create_campaign(conn, ws, tenant.brand(), "c", "UTC")
    for position in range(1, steps + 1):
        store.add_step(
            conn, key, ws, campaign, position, 1, False,
            [store.Variant("A", "Hello {{first_name}}" if position == 1 else "", "Body.")],
        )  # fmt: skip
    store.enroll(conn, key, ws, campaign, list(leads.values()), NOW)
    store.set_campaign_status(conn, ws, campaign, "active")
    return Setup(tenant, mail, Clock(NOW), campaign, mailbox_id, leads)


def test_suppression_is_checked_just_before_sending(tenant: Tenant, mail_world: MailWorld) -> None:
    """An address put on the suppression list after its message was queued (here as a DSAR
    erasure would, without touching the enrolment) is not sent to."""
    s = _setup(tenant, mail_world, 2)
    assert s.plan().queued == 2
    tenant.conn.execute(
        "INSERT INTO suppression (email_bidx, reason) VALUES (%s, 'erasure')",
        (tenant.key.email_index("p00@prospect.test"),),
    )
    result = s.sender().run_once()
    assert (result.sent, result.suppressed) == (1, 1)
    assert [m.rcpt_tos for m in mail_world.handler.messages()] == [["p01@prospect.test"]]
    assert s.states() == {"p00@prospect.test": "suppressed", "p01@prospect.test": "sent"}


def test_4xx_is_retried_with_backoff_then_sent_once(tenant: Tenant, mail_world: MailWorld) -> None:
    """A 451 at RCPT puts the message back with a delay; once the server takes it, it is
    sent exactly once."""
    s = _setup(tenant, mail_world, 1)
    mail_world.handler.refuse["p00@prospect.test"] = 451
    s.plan()
    assert s.sender().run_once().retried == 1
    assert s.states() == {"p00@prospect.test": "retry"}
    del mail_world.handler.refuse["p00@prospect.test"]
    assert s.sender().run_once().sent == 0  # not before the backoff
    s.clock.advance(minutes=2)
    assert s.sender().run_once().sent == 1
    s.clock.advance(minutes=30)
    assert s.sender().run_once().sent == 0
    assert len(mail_world.handler.messages()) == 1


def test_bounce_rate_stops_the_mailbox(tenant: Tenant, mail_world: MailWorld) -> None:
    """Over 5% hard bounces among the last sends stops the mailbox with a reason, and it
    sends nothing more."""
    s = _setup(tenant, mail_world, 30)
    for i in (20, 21, 22):
        mail_world.handler.refuse[f"p{i:02d}@prospect.test"] = 550
    s.plan()
    s.sender(batch=1).run_once()
    with workspace_tx(tenant.conn, tenant.workspace_id):
        status, reason = tenant.conn.execute(
            "SELECT status, stop_reason FROM mailboxes WHERE id = %s", (s.mailbox,)
        ).fetchone()
    assert status == "stopped"
    assert "bounced" in reason and "5%" in reason
    assert len(mail_world.handler.messages()) == 20
    assert set(s.states().values()) == {"sent", "bounced", "retry"}


class FakeResolver:
    """DNS answers by name: a list of TXT strings, or an exception to raise."""

    def __init__(self, answers: dict[str, list[str] | Exception]) -> None:
        self.answers = answers

    def resolve(self, qname: str, rdtype: str) -> Any:
        found = self.answers.get(qname, dns.resolver.NXDOMAIN())
        if isinstance(found, Exception):
            raise found
        return [type("TXT", (), {"strings": [t.encode()]})() for t in found]


def test_spf_and_dmarc_gate_the_campaign_start(tenant: Tenant, mail_world: MailWorld) -> None:
    """Missing SPF or DMARC refuses the start; DNS unreachable starts it with a warning."""
    s = _setup(tenant, mail_world, 1)
    store.set_campaign_status(tenant.conn, tenant.workspace_id, s.campaign, "draft")
    args = (tenant.conn, tenant.key, tenant.workspace_id, s.campaign)
    good = {"acme.test": ["v=spf1 mx -all"], "_dmarc.acme.test": ["v=DMARC1; p=none"]}
    with pytest.raises(CampaignRefused, match="SPF"):
        guardrails.start_campaign(
            *args, FakeResolver({"_dmarc.acme.test": good["_dmarc.acme.test"]})
        )
    with pytest.raises(CampaignRefused, match="DMARC"):
        guardrails.start_campaign(*args, FakeResolver({"acme.test": good["acme.test"]}))
    down = FakeResolver({"acme.test": dns.exception.Timeout()})
    warnings = guardrails.start_campaign(*args, down)
    assert warnings and "not verified" in warnings[0]
    assert guardrails.start_campaign(*args, FakeResolver(dict(good))) == []


def test_receiver_idle_and_resume(tenant: Tenant, mail_world: MailWorld) -> None:
    """With IDLE a reply is picked up within seconds; a second poll ingests nothing twice."""
    s = _setup(tenant, mail_world, 2, steps=2)
    s.plan()
    s.sender().run_once()
    first = mail_world.handler.messages()[0].message
    receiver = Receiver(
        tenant.conn, tenant.key, tenant.workspace_id, s.mailbox, mail_world.imap_factory, s.clock
    )
    stop = threading.Event()
    idle_conn = tenant.app_connect()
    idle_receiver = Receiver(
        idle_conn, tenant.key, tenant.workspace_id, s.mailbox, mail_world.imap_factory, s.clock
    )
    thread = threading.Thread(target=idle_receiver.run, args=(stop, 30.0, 1.0))
    thread.start()
    try:
        time.sleep(0.5)
        reply = (
            f"From: {first['To']}\r\nTo: {USER}\r\nSubject: Re: {first['Subject']}\r\n"
            f"In-Reply-To: {first['Message-ID']}\r\n\r\nInterested!\r\n"
        ).encode()
        mail_world.dovecot.deliver(USER, mail_world.users[USER], reply)
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline:
            states = store.enrollment_states(tenant.conn, tenant.workspace_id, s.campaign)
            status = states[s.leads[str(first["To"])]]["status"]
            if status == "replied":
                break
            time.sleep(0.1)
        assert status == "replied"
    finally:
        stop.set()
        thread.join(15)
        idle_conn.close()
    assert receiver.poll_once().fetched == 0
    with workspace_tx(tenant.conn, tenant.workspace_id):
        count = tenant.conn.execute("SELECT count(*) FROM inbound_messages").fetchone()
    assert count is not None and count[0] == 1


def test_engine_keeps_its_own_sent_copy(tenant: Tenant, mail_world: MailWorld) -> None:
    """For a provider that does not file submitted mail, the engine appends it to Sent."""
    mail_world.handler.file_sent = None
    s = _setup(tenant, mail_world, 1, sent_copy="append")
    s.plan()
    assert s.sender().run_once().sent == 1
    assert mail_world.dovecot.count(USER, mail_world.users[USER], "Sent") == 1


def test_manual_stop_leaves_only_that_lead(tenant: Tenant, mail_world: MailWorld) -> None:
    """A lead stopped by hand gets no further step; the other lead's follow-up goes out."""
    s = _setup(tenant, mail_world, 2, steps=2)
    s.plan()
    s.sender().run_once()
    store.stop_lead(tenant.conn, tenant.workspace_id, s.campaign, s.leads["p00@prospect.test"])
    s.clock.advance(days=1, hours=1)
    assert s.plan().queued == 1
    s.sender().run_once()
    rcpts = [m.rcpt_tos[0] for m in mail_world.handler.messages()]
    assert sorted(rcpts) == ["p00@prospect.test", "p01@prospect.test", "p01@prospect.test"]
    states = store.enrollment_states(tenant.conn, tenant.workspace_id, s.campaign)
    assert states[s.leads["p00@prospect.test"]]["status"] == "stopped"


def test_polling_without_idle_and_mailto_unsubscribe(tenant: Tenant, mail_world: MailWorld) -> None:
    """A server without IDLE is polled; an email to the List-Unsubscribe mailto address
    (subject 'unsubscribe', no thread headers) suppresses its sender."""
    s = _setup(tenant, mail_world, 2, steps=2)
    s.plan()
    s.sender().run_once()

    def no_idle(config: Any) -> Any:
        client = mail_world.imap_factory(config)
        client.has_capability = lambda capability: False  # this server "lacks" IDLE
        return client

    conn = tenant.app_connect()
    receiver = Receiver(conn, tenant.key, tenant.workspace_id, s.mailbox, no_idle, s.clock)
    stop = threading.Event()
    thread = threading.Thread(target=receiver.run, args=(stop, 0.2, 1.0))
    thread.start()
    try:
        raw = f"From: p01@prospect.test\r\nTo: {USER}\r\nSubject: unsubscribe\r\n\r\n\r\n".encode()
        mail_world.dovecot.deliver(USER, mail_world.users[USER], raw)
        bidx = tenant.key.email_index("p01@prospect.test")
        deadline = time.monotonic() + 10
        found = None
        while time.monotonic() < deadline and found is None:
            found = tenant.conn.execute(
                "SELECT reason FROM suppression WHERE email_bidx = %s", (bidx,)
            ).fetchone()
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(15)
        conn.close()
    assert found is not None and found[0] == "unsubscribe"
    states = store.enrollment_states(tenant.conn, tenant.workspace_id, s.campaign)
    assert states[s.leads["p01@prospect.test"]]["status"] == "unsubscribed"
    assert states[s.leads["p00@prospect.test"]]["status"] == "active"
