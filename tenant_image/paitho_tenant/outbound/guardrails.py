"""Deliverability guard rails.

- A campaign does not start from a mailbox whose domain lacks SPF or DMARC when DNS answers;
  when DNS cannot be reached the start goes ahead with a warning.
- A mailbox stops itself when more than 5% of its last 100 sends bounced (once it has sent at
  least 20, so one early bounce does not stop a new mailbox), with the reason stored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import dns.exception
import dns.resolver
import psycopg

from paitho_tenant.crypto import DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.outbound.compose import domain_of
from paitho_tenant.outbound.errors import CampaignRefused

log = logging.getLogger(__name__)

BOUNCE_WINDOW = 100
BOUNCE_LIMIT = 0.05
BOUNCE_MIN_SENDS = 20


class Resolver(Protocol):
    def resolve(self, qname: str, rdtype: str) -> Any: ...


def default_resolver(timeout: float = 3.0) -> Resolver:
    resolver = dns.resolver.Resolver()
    resolver.lifetime = timeout
    return resolver


@dataclass
class DomainCheck:
    domain: str
    reachable: bool = True
    spf: bool = False
    dmarc: bool = False
    problems: list[str] = field(default_factory=list)


def _txt(resolver: Resolver, name: str) -> list[str]:
    try:
        answer = resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    out = []
    for record in answer:
        strings = getattr(record, "strings", None)
        if strings is not None:
            out.append(b"".join(strings).decode("utf-8", "replace"))
        else:
            out.append(str(record).strip('"'))
    return out


def check_domain(domain: str, resolver: Resolver) -> DomainCheck:
    result = DomainCheck(domain)
    try:
        spf = _txt(resolver, domain)
        dmarc = _txt(resolver, f"_dmarc.{domain}")
    except (dns.exception.Timeout, dns.resolver.NoNameservers, OSError):
        result.reachable = False
        result.problems.append(f"DNS unreachable: SPF and DMARC of {domain} not verified")
        return result
    result.spf = any(t.lower().startswith("v=spf1") for t in spf)
    result.dmarc = any(t.lower().startswith("v=dmarc1") for t in dmarc)
    if not result.spf:
        result.problems.append(f"{domain} has no SPF record (TXT v=spf1)")
    if not result.dmarc:
        result.problems.append(f"_dmarc.{domain} has no DMARC record (TXT v=DMARC1)")
    return result


def start_campaign(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    campaign_id: int,
    resolver: Resolver,
) -> list[str]:
    """Check every active mailbox's domain, then activate; returns warnings (DNS down)."""
    with workspace_tx(conn, workspace_id):
        rows = conn.execute(
            "SELECT label, pgp_sym_decrypt(from_address, %s) FROM mailboxes"
            " WHERE status = 'active' ORDER BY id",
            (key.column_key,),
        ).fetchall()
    if not rows:
        raise CampaignRefused("the workspace has no active mailbox to send from")
    warnings: list[str] = []
    for label, address in rows:
        found = check_domain(domain_of(str(address)), resolver)
        if not found.reachable:
            warnings.extend(found.problems)
        elif found.problems:
            raise CampaignRefused(f"mailbox {label!r}: " + "; ".join(found.problems))
    with workspace_tx(conn, workspace_id):
        conn.execute("UPDATE campaigns SET status = 'active' WHERE id = %s", (campaign_id,))
    for warning in warnings:
        log.warning("campaign %s started with a warning: %s", campaign_id, warning)
    return warnings


def bounce_rate(
    conn: psycopg.Connection[Any], workspace_id: int, mailbox_id: int
) -> tuple[int, int]:
    """(bounces, sends) over the mailbox's last 100 sends."""
    with workspace_tx(conn, workspace_id):
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'bounced'), count(*) FROM ("
            " SELECT state FROM outbound_messages WHERE mailbox_id = %s"
            " AND state IN ('sent', 'bounced') ORDER BY id DESC LIMIT %s) recent",
            (mailbox_id, BOUNCE_WINDOW),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def enforce_bounce_rate(conn: psycopg.Connection[Any], workspace_id: int, mailbox_id: int) -> bool:
    """Stop the mailbox if its bounce rate is over the limit; True if it was stopped now."""
    bounces, sends = bounce_rate(conn, workspace_id, mailbox_id)
    if sends < BOUNCE_MIN_SENDS or bounces / sends <= BOUNCE_LIMIT:
        return False
    reason = (
        f"stopped automatically: {bounces} of the last {sends} messages bounced "
        f"({bounces / sends:.0%}, limit {BOUNCE_LIMIT:.0%}); clean the list, then restart it"
    )
    with workspace_tx(conn, workspace_id):
        cur = conn.execute(
            "UPDATE mailboxes SET status = 'stopped', stop_reason = %s"
            " WHERE id = %s AND status = 'active'",
            (reason, mailbox_id),
        )
    if cur.rowcount:
        log.warning("mailbox %s stopped: bounce rate %d/%d", mailbox_id, bounces, sends)
    return bool(cur.rowcount)


def mailbox_stopped(conn: psycopg.Connection[Any], workspace_id: int, mailbox_id: int) -> bool:
    with workspace_tx(conn, workspace_id):
        row = conn.execute("SELECT status FROM mailboxes WHERE id = %s", (mailbox_id,)).fetchone()
    return row is None or row[0] != "active"


def warnings_text(items: Sequence[str]) -> str:
    return "; ".join(items)
