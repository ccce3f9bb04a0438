"""The control plane's append-only audit log of auth and admin actions.

Only `record` writes, and only by a conditional create of a fresh id: this module offers no
update and no delete, and the id is unique, so an entry can never be overwritten. Entries name
the actor by account id or operator role — never a password, token or customer data.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.stores import Table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditEntry:
    event_id: str
    at: str
    action: str
    actor: str
    target: str
    outcome: str
    detail: str = ""


class AuditLog:
    def __init__(self, table: Table, clock: Callable[[], str]) -> None:
        self._table = table
        self._clock = clock

    def record(
        self, action: str, actor: str, target: str = "", outcome: str = "ok", detail: str = ""
    ) -> AuditEntry:
        at = self._clock()
        entry = AuditEntry(
            f"{at}-{secrets.token_hex(6)}", at, action, actor, target, outcome, detail
        )
        self._table.put_new(
            {
                "event_id": entry.event_id,
                "at": entry.at,
                "action": entry.action,
                "actor": entry.actor,
                "target": entry.target or None,
                "outcome": entry.outcome,
                "detail": entry.detail or None,
            }
        )
        log.info("audit %s actor=%s target=%s outcome=%s", action, actor, target, outcome)
        return entry

    def entries(self) -> list[AuditEntry]:
        rows = self._table.scan()
        return sorted(
            (
                AuditEntry(
                    r["event_id"],
                    r["at"],
                    r["action"],
                    r["actor"],
                    r.get("target", ""),
                    r["outcome"],
                    r.get("detail", ""),
                )
                for r in rows
            ),
            key=lambda e: e.event_id,
        )
