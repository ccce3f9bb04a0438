"""The public posture pages' data: the trust inventory, the changelog with its 30-day rule,
the status page and security.txt (RFC 9116).

The trust page renders these structures, not hand-copied HTML; they mirror TRUST.md row for row
(the six data categories, the "what we don't store" list, the boundary/backups/export sections and
the sub-processor table). INVENTORY is the tenant image's own inventory (see below).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from chalicelib.errors import InvalidInput
from chalicelib.stores import Table


@dataclass(frozen=True)
class DataCategory:
    data_type: str
    where: str
    encryption: str
    retention: str


# The "Every byte, accounted for" rows come from the tenant's own data inventory
# (paitho_tenant.inventory, the declaration every tenant test checks the schema against),
# exported to trust_inventory.json because the Lambda bundle does not carry the tenant package;
# tests/unit/test_trust_inventory_sync.py fails when the two drift apart.
INVENTORY: tuple[DataCategory, ...] = tuple(
    DataCategory(**row)
    for row in json.loads((Path(__file__).with_name("trust_inventory.json")).read_text("utf-8"))
)

NOT_STORED: tuple[tuple[str, str], ...] = (
    ("Your provider's API responses, raw.", "We keep token counts only."),
    ("Plaintext API keys.", "Only customer-encrypted ciphertext at rest, ever."),
    ("Email content from non-tenant inboxes.",
     "We see only what your connected mailbox sends and receives."),
    ("Cookies for cross-site tracking.", "Session cookie only. Same-site, secure."),
    ("Browser fingerprints.", "No canvas, no font, no WebGL fingerprinting."),
    ("Your prospects' personal data outside what your CSV provided.",
     "We don't enrich without explicit opt-in."),
)  # fmt: skip

SECTIONS: tuple[tuple[str, str], ...] = (
    ("Boundary",
     "Separate containers, separate Postgres processes, separate filesystems, separate "
     "encryption keys. Cross-customer access requires a kernel exploit + the target customer's "
     "passphrase. Both barriers live outside Paitho's control."),
    ("Backups",
     "Per-Docker logical dumps shipped encrypted. Paitho is the courier — Paitho can't read the "
     "cargo. Your call where to send them (your S3, your Backblaze, your basement NAS)."),
    ("Export",
     "docker save | gzip | scp — and you walk away with everything. No vendor lock-in. No "
     "support ticket."),
    ("Self-host option",
     "Same image runs in your own infra. Available on Enterprise tier today; planned for Agency "
     "tier post-GA."),
)  # fmt: skip


@dataclass(frozen=True)
class SubProcessor:
    service: str
    used_for: str
    notes: str


SUBPROCESSORS: tuple[SubProcessor, ...] = (
    SubProcessor("Hosting", "Compute, network, encrypted block storage (e.g. Hetzner, OVH, AWS — "
                 "final selection TBD)", "region: EU/US selectable"),
    SubProcessor("Email transactional", "Account verification, password reset, system "
                 "notifications (Postmark or Resend — TBD)",
                 "never used for outbound to your prospects"),
    SubProcessor("Error tracking", "Stack traces, performance metrics — Sentry",
                 "self-hosted option for paid tiers"),
    SubProcessor("LLM providers", "Drafting, qualification, audit — OpenAI · Anthropic · Google",
                 "BYOK · your accounts, not ours"),
    SubProcessor("Enrichment providers", "Contact enrichment — Apollo · RocketReach · ZoomInfo · "
                 "IndiaMART · local directories. Only if you enable one.",
                 "your provider key · off by default"),
)  # fmt: skip

COMPLIANCE: tuple[tuple[str, str, str], ...] = (
    ("SOC 2 Type 1", "in progress",
     "Audit underway with a Big-Four-adjacent firm. Target attestation: Q3 2026."),
    ("SOC 2 Type 2", "planned", "Begins immediately after Type 1 attestation. 6-month "
     "observation window."),
    ("DPA", "available", "Standard Data Processing Addendum, including SCCs, on request. Email "
     "security@paitho.ai."),
    ("GDPR", "compliant", "Data residency selectable EU or US at workspace creation. DSARs "
     "handled in 30 days."),
    ("HIPAA", "not certified", "We are not currently a HIPAA Business Associate. If your "
     "outbound touches PHI, talk to us at security@paitho.ai before signing."),
)  # fmt: skip

DISCLOSURE_WINDOW_DAYS = 90
ACK_HOURS = 48
HALL_OF_FAME: tuple[str, ...] = ()  # researchers who opted in; none yet
SUBPROCESSOR_NOTICE_DAYS = 30


# -- changelog -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChangelogEntry:
    entry_id: str
    kind: str
    title: str
    body: str
    posted_on: date
    effective_on: date


class Changelog:
    def __init__(self, table: Table, today: Callable[[], date]) -> None:
        self._table = table
        self._today = today

    def add(self, kind: str, title: str, body: str, effective_on: date) -> ChangelogEntry:
        """Post an entry today; a sub-processor change must take effect ≥ 30 days later."""
        posted = self._today()
        if kind not in ("subprocessor", "security", "product"):
            raise InvalidInput("kind must be one of subprocessor, security, product")
        if not title.strip() or len(title) > 200 or len(body) > 4000:
            raise InvalidInput("give a title (≤ 200 characters) and a body (≤ 4000 characters)")
        if kind == "subprocessor" and effective_on < posted + timedelta(
            days=SUBPROCESSOR_NOTICE_DAYS
        ):
            raise InvalidInput(
                "a sub-processor change must be posted at least 30 days before it takes effect: "
                f"the earliest effective date for a change posted today is "
                f"{posted + timedelta(days=SUBPROCESSOR_NOTICE_DAYS)}"
            )
        entry = ChangelogEntry(
            f"{posted.isoformat()}-{secrets.token_hex(4)}", kind, title, body, posted, effective_on
        )
        self._table.put_new(
            {
                "entry_id": entry.entry_id,
                "kind": kind,
                "title": title,
                "body": body or None,
                "posted_on": posted.isoformat(),
                "effective_on": effective_on.isoformat(),
            }
        )
        return entry

    def entries(self) -> list[ChangelogEntry]:
        rows = [
            ChangelogEntry(
                r["entry_id"],
                r["kind"],
                r["title"],
                r.get("body", ""),
                date.fromisoformat(r["posted_on"]),
                date.fromisoformat(r["effective_on"]),
            )
            for r in self._table.scan()
        ]
        return sorted(rows, key=lambda e: (e.posted_on, e.entry_id), reverse=True)


# -- status ----------------------------------------------------------------------------------
COMPONENTS = ("Marketplace & signup", "Tenant edge", "Licences", "Backups", "Transactional email")


class StatusBoard:
    def __init__(self, table: Table, clock: Callable[[], str]) -> None:
        self._table = table
        self._clock = clock

    def set_component(self, name: str, state: str, uptime_pct: str = "100.00") -> None:
        if state not in ("operational", "degraded", "outage", "maintenance"):
            raise InvalidInput("state must be operational, degraded, outage or maintenance")
        self._table.put(
            {
                "item_id": f"component:{name}",
                "kind": "component",
                "name": name,
                "state": state,
                "uptime_pct": uptime_pct,
                "updated_at": self._clock(),
            }
        )

    def add_event(self, kind: str, title: str, starts_at: str, ends_at: str | None = None) -> None:
        if kind not in ("incident", "maintenance"):
            raise InvalidInput("kind must be incident or maintenance")
        self._table.put_new(
            {
                "item_id": f"{kind}:{starts_at}:{secrets.token_hex(3)}",
                "kind": kind,
                "title": title,
                "starts_at": starts_at,
                "ends_at": ends_at,
                "updated_at": self._clock(),
            }
        )

    def snapshot(self) -> dict[str, object]:
        items = self._table.scan()
        stored = {i["name"]: i for i in items if i["kind"] == "component"}
        components = [
            {
                "name": name,
                "state": stored.get(name, {}).get("state", "operational"),
                "uptime_pct": stored.get(name, {}).get("uptime_pct", "100.00"),
            }
            for name in COMPONENTS
        ]
        events = sorted(
            (i for i in items if i["kind"] in ("incident", "maintenance")),
            key=lambda i: str(i["starts_at"]),
            reverse=True,
        )

        def event(i: dict[str, object]) -> dict[str, object]:
            return {k: i.get(k) for k in ("title", "starts_at", "ends_at")}

        overall = (
            "All systems operational"
            if all(c["state"] == "operational" for c in components)
            else "Some systems are affected"
        )
        return {
            "overall": overall,
            "components": components,
            "incidents": [event(i) for i in events if i["kind"] == "incident"],
            "maintenance": [event(i) for i in events if i["kind"] == "maintenance"],
            "generated_at": self._clock(),
        }


def security_txt(base_url: str, contact: str, now: datetime) -> str:
    """RFC 9116: Contact, Expires (under a year ahead), Policy, Acknowledgments, Canonical."""
    expires = (now.astimezone(UTC) + timedelta(days=180)).replace(microsecond=0)
    return (
        f"Contact: {contact}\n"
        f"Expires: {expires.strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
        f"Policy: {base_url}/security-policy\n"
        f"Acknowledgments: {base_url}/hall-of-fame\n"
        "Preferred-Languages: en\n"
        f"Canonical: {base_url}/.well-known/security.txt\n"
    )
