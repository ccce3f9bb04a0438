"""The outbound HTTP contract through the real tenant app (its middleware, sessions, CSRF and
lazy area mounting): POST /api/mailboxes tests real servers and answers 201 or 422 with the
failed check; GET/POST /u/{token} is the RFC 8058 one-click unsubscribe, also while sealed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paitho_tenant import leads, workspaces
from paitho_tenant.app import Settings, create_app
from paitho_tenant.db import workspace_tx
from paitho_tenant.migrate import migrate
from paitho_tenant.outbound import queue, store
from paitho_tenant.outbound.engine import OutboundEngine
from paitho_tenant.outbound.tokens import UnsubscribeSigner
from starlette.testclient import TestClient

from tests.conftest import RunningCluster
from tests.functional.outbound_support import LeadRow, MailWorld, mail_servers

pytestmark = pytest.mark.functional

ORIGIN = "http://acme.localhost:8000"
API = {"Origin": ORIGIN, "X-Requested-With": "XMLHttpRequest"}
PASSPHRASE = "plover-quintet-basalt-mirage-7x"
OWNER = {"owner_email": "owner@acme.test", "owner_password": "correct-staple-9-long"}


@pytest.fixture
def mail_world(work_root: Path) -> Iterator[MailWorld]:
    with mail_servers(work_root) as world:
        yield world


@pytest.fixture
def client(
    pg_cluster: RunningCluster, mail_world: MailWorld, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The tenant app, set up and logged in; TLS trusts the test CA the way an operator
    would add a private CA (OpenSSL's SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(mail_world.cert.cert))
    migrate(pg_cluster.conninfo())
    app = create_app(Settings(admin_conninfo=pg_cluster.conninfo(), origin=ORIGIN))
    # explicit too: process-wide OpenSSL defaults proved order-dependent in a full test run
    app.state.outbound_ssl_factory = mail_world.cert.client_context
    with TestClient(app, base_url=ORIGIN) as c:
        assert (
            c.post("/setup", json={**OWNER, "passphrase": PASSPHRASE}, headers=API).status_code
            == 201
        )
        login = {"email": OWNER["owner_email"], "password": OWNER["owner_password"]}
        assert c.post("/login", json=login, headers=API).status_code == 204
        yield c


def _body(world: MailWorld, **overrides: Any) -> dict[str, Any]:
    user = "sales1@acme.test"
    body = {
        "label": "Sales one",
        "from_address": user,
        "smtp_host": "127.0.0.1",
        "smtp_port": world.smtp.port,
        "smtp_security": "starttls",
        "imap_host": "127.0.0.1",
        "imap_port": world.dovecot.port,
        "imap_security": "ssl",
        "username": user,
        "password": world.users[user],
    }
    body.update(overrides)
    return body


def test_post_mailbox_201_then_422_with_the_failed_check(
    client: TestClient, mail_world: MailWorld
) -> None:
    """A working mailbox is saved (201, id); a wrong password is 422 naming 'auth'; a bad body
    is 400; no session is 401; the password never comes back."""
    ok = client.post("/api/mailboxes", json=_body(mail_world), headers=API)
    assert ok.status_code == 201, ok.text
    assert isinstance(ok.json()["id"], int) and ok.json()["sent_folder"] == "Sent"
    assert mail_world.users["sales1@acme.test"] not in ok.text
    bad = client.post("/api/mailboxes", json=_body(mail_world, password="nope-nope"), headers=API)
    assert bad.status_code == 422
    assert bad.json()["check"] == "auth"
    closed = client.post("/api/mailboxes", json=_body(mail_world, imap_port=1), headers=API)
    assert closed.status_code == 422 and closed.json()["check"] == "tcp"
    missing = client.post("/api/mailboxes", json=_body(mail_world, smtp_port="x"), headers=API)
    assert missing.status_code == 400
    no_csrf = client.post("/api/mailboxes", json=_body(mail_world))
    assert no_csrf.status_code == 403
    client.cookies.clear()
    assert client.post("/api/mailboxes", json=_body(mail_world), headers=API).status_code == 401


def _queued_send(client: TestClient, world: MailWorld) -> tuple[Any, int, str]:
    """A lead with one planned message; returns (components, send id, lead address)."""
    components = client.app.state.components  # type: ignore[attr-defined]
    key = components.vault.key()
    with components.pool.connection() as conn:
        ws = int(conn.execute("SELECT id FROM workspaces ORDER BY id LIMIT 1").fetchone()[0])
        leads.import_rows(conn, key, ws, [LeadRow(2, "ann@prospect.test", {"first_name": "Ann"})])
        lead_id = leads.find_by_email(conn, key, ws, "ann@prospect.test")["id"]
        brand = workspaces.create_brand(conn, key, ws, "Acme")
        store.set_brand_footer(conn, key, ws, brand, "Acme Ltd, 1 Main St")
        user = "sales1@acme.test"
        store.create_mailbox(conn, key, ws, world.spec(user), world.users[user])
        campaign = store.create_campaign(
            conn, ws, brand, "c", "UTC", (dt.time(0), dt.time(23, 59, 59)), range(1, 8)
        )
        store.add_step(conn, key, ws, campaign, 1, 0, False, [store.Variant("A", "Hi", "Hello")])
        store.enroll(conn, key, ws, campaign, [lead_id], dt.datetime.now(dt.UTC))
        store.set_campaign_status(conn, ws, campaign, "active")
        queue.plan(conn, key, ws, dt.datetime.now(dt.UTC), ORIGIN)
        with workspace_tx(conn, ws):
            enrollment = int(
                conn.execute("SELECT enrollment_id FROM outbound_messages").fetchone()[0]
            )
    return components, UnsubscribeSigner(key).sign(ws, enrollment), "ann@prospect.test"


def _suppressed(components: Any, address: str) -> bool:
    key = components.vault.key()
    with components.pool.connection() as conn:
        row = conn.execute(
            "SELECT 1 FROM suppression WHERE email_bidx = %s", (key.email_index(address),)
        ).fetchone()
    return row is not None


def test_one_click_unsubscribe(client: TestClient, mail_world: MailWorld) -> None:
    """GET shows a page with one button; a POST without session, Origin or CSRF token (as a
    mail provider sends it) unsubscribes at once; a forged token is 404."""
    components, token, address = _queued_send(client, mail_world)
    client.cookies.clear()
    page = client.get(f"/u/{token}")
    assert page.status_code == 200 and f'action="/u/{token}"' in page.text
    assert not _suppressed(components, address)
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert client.post(f"/u/{forged}", content=b"List-Unsubscribe=One-Click").status_code == 404
    done = client.post(
        f"/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200
    assert _suppressed(components, address)
    with components.pool.connection() as conn:
        ws = int(conn.execute("SELECT id FROM workspaces ORDER BY id LIMIT 1").fetchone()[0])
        with workspace_tx(conn, ws):
            status = conn.execute("SELECT status FROM enrollments").fetchone()[0]
    assert status == "unsubscribed"


def test_unsubscribe_while_sealed_is_kept_and_applied_at_unlock(
    client: TestClient, mail_world: MailWorld
) -> None:
    """Sealed, the POST is accepted (202) and only the opaque token is kept; after unlock
    the engine applies it and the address is suppressed."""
    components, token, address = _queued_send(client, mail_world)
    assert client.post("/seal", headers=API).status_code == 204
    kept = client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click")
    assert kept.status_code == 202
    with components.pool.connection() as conn:
        rows = conn.execute("SELECT token FROM unsubscribe_inbox").fetchall()
    assert [r[0] for r in rows] == [token]
    assert client.post("/unlock", json={"passphrase": PASSPHRASE}, headers=API).status_code == 204
    engine = OutboundEngine(
        components.pool.conninfo, components.vault, ORIGIN, mail_world.cert.client_context
    )
    engine.cycle()
    assert _suppressed(components, address)
    with components.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM unsubscribe_inbox").fetchone()[0] == 0
