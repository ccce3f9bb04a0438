"""Pure parts of the guard rails and the HTTP edge: SPF/DMARC evaluation with an injected
resolver, and the validation of a mailbox body."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dns.exception
import dns.resolver
import pytest
from paitho_tenant.errors import BadRequest
from paitho_tenant.outbound import guardrails, store
from paitho_tenant.outbound.web import parse_mailbox


class Resolver:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def resolve(self, qname: str, rdtype: str) -> Any:
        assert rdtype == "TXT"
        found = self.answers.get(qname, dns.resolver.NXDOMAIN())
        if isinstance(found, Exception):
            raise found
        return [type("TXT", (), {"strings": [p.encode() for p in t]})() for t in found]


def test_spf_and_dmarc_present() -> None:
    """TXT records split in several strings are joined before the v= check."""
    got = guardrails.check_domain(
        "acme.test",
        Resolver(
            {"acme.test": [["v=spf1 ", "mx -all"]], "_dmarc.acme.test": [["v=DMARC1; p=none"]]}
        ),
    )
    assert (got.reachable, got.spf, got.dmarc, got.problems) == (True, True, True, [])


def test_missing_records_are_named() -> None:
    """Other TXT records do not count; each missing record is reported by name."""
    got = guardrails.check_domain("acme.test", Resolver({"acme.test": [["google-site=x"]]}))
    assert not got.spf and not got.dmarc
    assert any("SPF" in p for p in got.problems) and any("DMARC" in p for p in got.problems)


@pytest.mark.parametrize("error", [dns.exception.Timeout(), dns.resolver.NoNameservers()])
def test_unreachable_dns_is_a_warning_not_a_verdict(error: Exception) -> None:
    """When DNS cannot be asked, the check says so instead of claiming records are missing."""
    got = guardrails.check_domain("acme.test", Resolver({"acme.test": error}))
    assert not got.reachable
    assert "not verified" in got.problems[0]


GOOD = {
    "label": "Sales",
    "from_address": "sales@acme.test",
    "smtp_host": "smtp.acme.test",
    "smtp_port": 587,
    "smtp_security": "starttls",
    "imap_host": "imap.acme.test",
    "imap_port": 993,
    "imap_security": "ssl",
    "username": "sales@acme.test",
    "password": "app-password-123",
}


def test_parse_mailbox_accepts_the_contract() -> None:
    """The issue's JSON body becomes a MailboxSpec and the password, kept apart."""
    spec, secret = parse_mailbox(dict(GOOD))
    assert spec.smtp_port == 587 and spec.imap_security == "ssl" and spec.auth == "password"
    assert secret == "app-password-123"
    assert "app-password-123" not in repr(spec)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("smtp_port", "587"),
        ("imap_port", 0),
        ("smtp_security", "tls"),
        ("password", ""),
        ("from_address", "not-an-address"),
        ("auth", "kerberos"),
        ("smtp_port", True),
    ],
)
def test_parse_mailbox_refuses_bad_fields(field: str, value: Any) -> None:
    """A bad field is a 400 naming the field, never echoing the password."""
    with pytest.raises(BadRequest) as info:
        parse_mailbox({**GOOD, field: value})
    assert field in info.value.message
    assert "app-password-123" not in info.value.message


@pytest.mark.parametrize(
    ("timezone", "window", "days", "field"),
    [
        ("Mars/Olympus", (dt.time(9), dt.time(17)), [1], "timezone"),
        ("UTC", (dt.time(17), dt.time(9)), [1], "window"),
        ("UTC", (dt.time(9), dt.time(17)), [], "send_days"),
        ("UTC", (dt.time(9), dt.time(17)), [0, 8], "send_days"),
    ],
)
def test_campaign_schedule_is_checked(
    timezone: str, window: tuple[dt.time, dt.time], days: list[int], field: str
) -> None:
    """A schedule that could never send is refused, naming what is wrong."""
    with pytest.raises(BadRequest) as info:
        store.check_campaign(timezone, window, days, 7)
    assert field in info.value.message
    store.check_campaign("Europe/Berlin", (dt.time(9), dt.time(17)), [1, 2, 3, 4, 5], 7)
