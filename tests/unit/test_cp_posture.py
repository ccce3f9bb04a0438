"""Posture pages from data: /trust, /changelog (30-day rule), /status(.json), security.txt."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta

import pytest

from chalicelib import posture
from chalicelib.errors import InvalidInput
from tests.cp_support import client_for, plane


@pytest.fixture
def cp():  # type: ignore[no-untyped-def]
    return plane()


def test_trust_page_renders_the_inventory_from_data(cp) -> None:  # type: ignore[no-untyped-def]
    """Every inventory category, the not-stored list, sections and sub-processors on /trust."""
    body = client_for(cp).http.get("/trust").body.decode()
    assert len(posture.INVENTORY) >= 6
    rows = re.findall(r"<tr><td>([^<]+)</td>", body[body.index('id="inventory"') :])
    expected = [c.data_type.replace("'", "&#39;") for c in posture.INVENTORY]
    assert rows[: len(expected)] == expected
    for what, _ in posture.NOT_STORED:
        assert what.replace("'", "&#39;") in body
    for title, _ in posture.SECTIONS:
        assert f"<dt>{title}</dt>" in body
    for s in posture.SUBPROCESSORS:
        assert f"<td>{s.service}</td>" in body


def test_subprocessor_changes_need_30_days_notice(cp) -> None:  # type: ignore[no-untyped-def]
    """An entry taking effect in 29 days is refused; 30 days is accepted and listed."""
    today = datetime.fromtimestamp(cp.clock(), UTC).date()
    with pytest.raises(InvalidInput, match="30 days"):
        cp.changelog.add("subprocessor", "Add Postmark", "", today + timedelta(days=29))
    cp.changelog.add("subprocessor", "Add Postmark", "Email.", today + timedelta(days=30))
    cp.changelog.add("security", "Patched X", "Now.", today)
    body = client_for(cp).http.get("/changelog").body.decode()
    assert "Add Postmark" in body and f"effective {today + timedelta(days=30)}" in body
    assert f"posted {today}" in body


def test_status_json_and_page_agree(cp) -> None:  # type: ignore[no-untyped-def]
    """/status.json lists components, incidents and maintenance; /status shows the same."""
    cp.status.set_component("Tenant edge", "degraded", "99.90")
    cp.status.add_event("incident", "Edge latency", "2026-12-01T10:00Z", "2026-12-01T11:00Z")
    cp.status.add_event("maintenance", "Postgres minor upgrade", "2026-12-20T02:00Z")
    client = client_for(cp)
    data = json.loads(client.http.get("/status.json").body)
    assert data["overall"] == "Some systems are affected"
    assert {"name": "Tenant edge", "state": "degraded", "uptime_pct": "99.90"} in data["components"]
    assert data["incidents"][0]["title"] == "Edge latency"
    assert data["maintenance"][0]["title"] == "Postgres minor upgrade"
    page = client.http.get("/status").body.decode()
    assert "Edge latency" in page and "Postgres minor upgrade" in page


def test_security_txt_follows_rfc_9116(cp) -> None:  # type: ignore[no-untyped-def]
    """Contact, Expires under a year ahead, Policy, Acknowledgments; the linked pages exist."""
    client = client_for(cp)
    resp = client.http.get("/.well-known/security.txt")
    assert resp.headers["Content-Type"].startswith("text/plain")
    fields = dict(line.split(": ", 1) for line in resp.body.decode().splitlines())
    assert fields["Contact"].startswith("mailto:")
    expires = datetime.strptime(fields["Expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    now = datetime.fromtimestamp(cp.clock(), UTC)
    assert now < expires < now + timedelta(days=365)
    policy_path = fields["Policy"].split(":8000", 1)[1]
    policy = client.http.get(policy_path).body.decode()
    assert "90-day" in policy and "48 hours" in policy
    ack_path = fields["Acknowledgments"].split(":8000", 1)[1]
    assert client.http.get(ack_path).status_code == 200


def test_every_page_carries_the_strict_headers(cp) -> None:  # type: ignore[no-untyped-def]
    """HTML pages send a strict CSP, same-origin referrers, DENY framing, no third-party asset."""
    client = client_for(cp)
    for path in ("/", "/signup", "/login", "/trust", "/changelog", "/status", "/hall-of-fame"):
        resp = client.http.get(path)
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Referrer-Policy"] == "same-origin"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert not re.search(rb'(src|href)="(https?:)?//', resp.body)


def test_changelog_rejects_bad_entries(cp) -> None:  # type: ignore[no-untyped-def]
    """Unknown kinds and empty titles are refused with a message."""
    with pytest.raises(InvalidInput):
        cp.changelog.add("rumour", "x", "", date(2030, 1, 1))
    with pytest.raises(InvalidInput):
        cp.changelog.add("product", "  ", "", date(2030, 1, 1))
