"""AI drafts reach the outbound engine: qualify, draft, audit, approve (or autonomous), then one
engine cycle sends the draft exactly once through the real SMTP/IMAP servers on loopback with
the engine's headers and footer; a failed audit is never sent; a crash after DATA still sends
once."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import psycopg
import pytest
from paitho_tenant import keychain
from paitho_tenant.ai import review
from paitho_tenant.ai.providers import ProviderRegistry
from paitho_tenant.ai.service import AIService
from paitho_tenant.db import app_conninfo, owner_conninfo, workspace_tx
from paitho_tenant.migrate import MIGRATIONS_DIR, migrate
from paitho_tenant.outbound import drafts, store
from paitho_tenant.outbound.engine import OutboundEngine

from tests.conftest import RunningCluster
from tests.fakes.fake_llm import FakeLLM, stage_responder
from tests.functional.outbound_servers import ORIGIN
from tests.functional.outbound_support import MailWorld, Tenant, mail_servers, running_tenant
from tests.functional.test_outbound_crash import _finish, _kill, _start

pytestmark = pytest.mark.functional

USER = "sales1@acme.test"
OPT_OUT = "Reply STOP and I will not write again."
POSTAL = "Acme Ltd, 1 Main Street, 10115 Berlin"
MODEL = "gpt-test"


@pytest.fixture
def mail_world(work_root: Path) -> Iterator[MailWorld]:
    with mail_servers(work_root) as world:
        yield world


@pytest.fixture
def tenant(pg_cluster: RunningCluster) -> Iterator[Tenant]:
    with running_tenant(pg_cluster) as t:
        yield t


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture
def registry(fake_llm: FakeLLM) -> Iterator[ProviderRegistry]:
    reg = ProviderRegistry(
        {"openai": fake_llm.openai_base}, timeout=10.0, max_attempts=3, sleep=lambda _s: None
    )
    yield reg
    reg.clear()  # closes the SDK clients (and their sockets)


@dataclass
class Flow:
    tenant: Tenant
    mail: MailWorld
    service: AIService
    registry: ProviderRegistry
    campaign: int
    brand: int
    key_id: int
    leads: dict[str, int]

    def engine(self) -> OutboundEngine:
        return OutboundEngine(
            app_conninfo(self.tenant.admin),
            self.tenant.vault,
            ORIGIN,
            self.mail.cert.client_context,
        )

    def scoped(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        t = self.tenant
        with workspace_tx(t.conn, t.workspace_id):
            return t.conn.execute(query, params).fetchall()

    def draft(self, email: str, step: int = 1) -> dict[str, Any]:
        ws = self.tenant.workspace_id
        return review.draft_for_lead(self.service, ws, self.campaign, self.leads[email], step)


def _flow(
    tenant: Tenant, mail: MailWorld, registry: ProviderRegistry, mode: str, steps: int = 1
) -> Flow:
    conn, key, ws = tenant.conn, tenant.key, tenant.workspace_id
    leads = tenant.add_leads(
        [
            (f"ai{i}@prospect.test", {"first_name": f"Ada{i}", "company": f"Globex {i}"})
            for i in range(2)
        ]
    )
    brand = tenant.brand(POSTAL)
    key_id = int(keychain.add(conn, key, ws, "openai", "openai key", "sk-test-0123456789")["id"])
    spec = mail.spec(USER, daily_cap=1000, ramp_start=1000)
    store.create_mailbox(conn, key, ws, spec, mail.users[USER])
    campaign = store.create_campaign(
        conn, ws, brand, "ai", "UTC", (dt.time(0), dt.time(23, 59, 59)), range(1, 8)
    )
    for position in range(1, steps + 1):  # the template is never used in an AI campaign
        variant = store.Variant("A", "TEMPLATE SUBJECT" if position == 1 else "", "TEMPLATE.")
        store.add_step(conn, key, ws, campaign, position, 0, False, [variant])
    store.set_campaign_status(conn, ws, campaign, "active")
    review.set_campaign(
        conn, key, ws, "account:1", campaign_id=campaign, brand_id=brand, mode=mode,
        key_id=key_id, model=MODEL, opt_out_line=OPT_OUT,
    )  # fmt: skip
    service = AIService(
        lambda: psycopg.connect(app_conninfo(tenant.admin), autocommit=True),
        tenant.vault.key,
        registry,
    )  # the default queue: the draft's status is the hand-over the engine polls
    return Flow(tenant, mail, service, registry, campaign, brand, key_id, leads)


def _body(msg: Message) -> str:
    payload = msg.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode("utf-8").replace("\r\n", "\n")


def _assert_engine_headers(msg: Message) -> None:
    unsubscribe = "".join(str(msg["List-Unsubscribe"]).splitlines())
    assert f"<{ORIGIN}/u/" in unsubscribe and f"<mailto:{USER}?subject=unsubscribe>" in unsubscribe
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert POSTAL in _body(msg)
    assert str(msg["Message-ID"]).endswith("@acme.test>")


def test_review_mode_sends_the_approved_edited_text_once(
    tenant: Tenant, mail_world: MailWorld, registry: ProviderRegistry
) -> None:
    """Qualified, drafted, audited, edited and approved by a person: one engine cycle sends
    exactly the approved text once, with List-Unsubscribe, one-click POST and the postal
    footer, and the draft becomes `sent`; nothing is sent before the approval or again."""
    f = _flow(tenant, mail_world, registry, "review")
    ws, lead = tenant.workspace_id, f.leads["ai0@prospect.test"]
    qualified = f.service.qualify(ws, lead, f.brand, f.key_id, MODEL)
    assert qualified["verdict"] == "qualified"
    draft = f.draft("ai0@prospect.test")
    assert draft["status"] == "awaiting_review"
    f.engine().cycle()
    assert mail_world.handler.messages() == []  # waiting for a person
    subject, body = "About Globex 0 operations", f"Hi Ada0,\n\nA short question.\n\n{OPT_OUT}"
    edited = review.edit(f.service, ws, draft["id"], "account:1", subject, body)
    assert edited["status"] == "awaiting_review"
    review.approve(f.service, ws, draft["id"], "account:1")
    f.engine().cycle()
    f.engine().cycle()
    [received] = mail_world.handler.messages()
    msg = received.message
    assert received.rcpt_tos == ["ai0@prospect.test"]
    assert msg["Subject"] == subject and _body(msg).startswith(body)
    assert "TEMPLATE" not in received.raw.decode()
    _assert_engine_headers(msg)
    [(status, outbound_id, sent_at)] = f.scoped(
        "SELECT status, outbound_id, sent_at FROM ai_drafts WHERE id = %s", (draft["id"],)
    )
    assert status == "sent" and sent_at is not None
    [(state, token)] = f.scoped(
        "SELECT state, token FROM outbound_messages WHERE id = %s", (outbound_id,)
    )
    assert state == "sent" and token in str(msg["Message-ID"])


def test_autonomous_mode_sends_without_a_person_and_threads_the_follow_up(
    tenant: Tenant, mail_world: MailWorld, registry: ProviderRegistry
) -> None:
    """Autonomous mode: a passed audit alone sends step 1; step 2 waits for its draft, is
    woken when the draft is queued and goes out threaded under step 1 (In-Reply-To,
    References), each exactly once."""
    f = _flow(tenant, mail_world, registry, "autonomous", steps=2)
    first = f.draft("ai1@prospect.test")
    assert first["status"] == "queued"
    f.engine().cycle()
    [one] = mail_world.handler.messages()
    assert one.message["Subject"] == first["subject"]
    f.engine().cycle()  # step 2 is due but has no draft yet: the lead waits
    assert len(mail_world.handler.messages()) == 1
    [(reason,)] = f.scoped("SELECT status_reason FROM enrollments")
    assert reason == drafts.WAITING
    second = f.draft("ai1@prospect.test", step=2)
    assert second["status"] == "queued"
    f.engine().cycle()
    f.engine().cycle()
    messages = mail_world.handler.messages()
    assert len(messages) == 2
    root, follow = one.message, messages[1].message
    assert _body(follow).startswith(second["body"].rstrip())
    assert follow["In-Reply-To"] == root["Message-ID"]
    assert follow["References"] == root["Message-ID"]
    _assert_engine_headers(follow)
    assert f.scoped("SELECT status FROM ai_drafts ORDER BY id") == [("sent",), ("sent",)]
    assert f.scoped("SELECT status FROM enrollments") == [("completed",)]


def test_a_failed_audit_is_never_sent(
    tenant: Tenant, mail_world: MailWorld, fake_llm: FakeLLM, registry: ProviderRegistry
) -> None:
    """A draft whose audit failed (autonomous mode) is never sent, and neither is the step's
    template: the enrolled lead waits for a draft that passes."""

    def failing_auditor(provider: str, prompt: str) -> str:
        if "STAGE: audit" in prompt:
            return json.dumps({"verdict": "fail", "reasons": ["claims not in the data"]})
        return stage_responder(provider, prompt)

    fake_llm.state.responder = failing_auditor
    f = _flow(tenant, mail_world, registry, "autonomous")
    t = tenant
    lead = f.leads["ai0@prospect.test"]
    store.enroll(t.conn, t.key, t.workspace_id, f.campaign, [lead], _now())
    draft = f.draft("ai0@prospect.test")
    assert draft["status"] == "audit_failed"
    f.engine().cycle()
    f.engine().cycle()
    assert mail_world.handler.messages() == []
    assert f.scoped("SELECT count(*) FROM outbound_messages") == [(0,)]
    assert f.scoped("SELECT status, outbound_id FROM ai_drafts") == [("audit_failed", None)]
    assert f.scoped("SELECT status, status_reason FROM enrollments") == [("active", drafts.WAITING)]


def test_a_second_draft_for_a_sent_step_and_a_stopped_lead_fail_with_reasons(
    tenant: Tenant, mail_world: MailWorld, registry: ProviderRegistry
) -> None:
    """Two queued drafts for one step: only the newest goes out (one message per step) and
    the other fails with a reason; a stopped lead's queued draft fails and is not sent."""
    f = _flow(tenant, mail_world, registry, "autonomous")
    older, newer = f.draft("ai0@prospect.test"), f.draft("ai0@prospect.test")
    t = tenant
    store.enroll(t.conn, t.key, t.workspace_id, f.campaign, [f.leads["ai1@prospect.test"]], _now())
    store.stop_lead(t.conn, t.workspace_id, f.campaign, f.leads["ai1@prospect.test"])
    stopped = f.draft("ai1@prospect.test")
    f.engine().cycle()
    f.engine().cycle()
    assert [m.rcpt_tos for m in mail_world.handler.messages()] == [["ai0@prospect.test"]]
    rows = dict(
        (r[0], (r[1], r[2])) for r in f.scoped("SELECT id, status, send_error FROM ai_drafts")
    )
    assert rows[newer["id"]] == ("sent", None)
    assert rows[older["id"]] == ("failed", "this step of the sequence was already planned")
    assert rows[stopped["id"]] == ("failed", "the lead left the sequence (stopped)")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_crash_between_data_and_update_still_sends_each_draft_once(
    tenant: Tenant, mail_world: MailWorld, registry: ProviderRegistry
) -> None:
    """The sending process SIGKILLed after the server took DATA of a draft and before the
    database update, then restarted: the Sent folder settles it, every queued draft reaches
    the server exactly once and every draft ends `sent`."""
    f = _flow(tenant, mail_world, registry, "autonomous")
    for email in f.leads:
        assert f.draft(email)["status"] == "queued"
    proc = _start(tenant, mail_world, hang_after=1)
    assert proc.stdout is not None
    send_id = int(proc.stdout.readline().split()[1])
    _kill(proc)
    assert f.scoped("SELECT state FROM outbound_messages WHERE id = %s", (send_id,)) == [
        ("sending",)
    ]
    assert f.scoped("SELECT count(*) FROM ai_drafts WHERE status = 'sent'") == [(0,)]
    time.sleep(1.1)  # let the dead worker's lease expire
    result = _finish(_start(tenant, mail_world))
    assert result["settled_sent"] == 1
    sent_to = sorted(r.rcpt_tos[0] for r in mail_world.handler.messages())
    assert sent_to == sorted(f.leads)
    assert f.scoped("SELECT status FROM ai_drafts") == [("sent",), ("sent",)]


def test_migration_0201_follows_0200_and_can_be_run_again(pg_cluster: RunningCluster) -> None:
    """0201 applies after 0200 (which creates ai_drafts) on a fresh database, is recorded,
    and running its SQL again leaves the new statuses and columns in place."""
    applied = migrate(pg_cluster.conninfo())
    assert applied.index(201) > applied.index(200)
    sql_text = (MIGRATIONS_DIR / "0201_ai_drafts_outbound.sql").read_bytes()
    with psycopg.connect(owner_conninfo(pg_cluster.conninfo()), autocommit=True) as conn:
        conn.execute(sql_text)
        [(check,)] = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conname = 'ai_drafts_status_check'"
        ).fetchall()
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'ai_drafts'"
            ).fetchall()
        }
    assert "'sent'" in check and "'failed'" in check
    assert {"outbound_id", "sent_at", "send_error"} <= columns
