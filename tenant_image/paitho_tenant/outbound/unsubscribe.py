"""Unsubscribing: a signed token from a List-Unsubscribe URL (RFC 8058 one-click POST or the
confirmation page), a reply asking to be removed, or a token that arrived while sealed.

The address goes on the suppression list only as its blind index; every enrolment of that
lead in the workspace stops; the sender checks the list again immediately before each send.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from paitho_tenant.crypto import DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.outbound.errors import TokenInvalid
from paitho_tenant.outbound.tokens import UnsubscribeSigner, well_formed

log = logging.getLogger(__name__)


def suppress(
    conn: psycopg.Connection[Any], workspace_id: int, email_bidx: bytes, reason: str
) -> None:
    """Put a blind index on the suppression list and stop that lead's enrolments."""
    with workspace_tx(conn, workspace_id):
        conn.execute(
            "INSERT INTO suppression (email_bidx, reason) VALUES (%s, %s)"
            " ON CONFLICT (email_bidx) DO NOTHING",
            (email_bidx, reason),
        )
        status = "bounced" if reason == "hard_bounce" else "unsubscribed"
        conn.execute(
            "UPDATE enrollments SET status = %s, status_reason = %s"
            " WHERE lead_id IN (SELECT id FROM leads WHERE email_bidx = %s)"
            " AND status IN ('active', 'paused')",
            (status, reason, email_bidx),
        )


def by_token(conn: psycopg.Connection[Any], key: DataKey, token: str) -> int:
    """Apply an unsubscribe token; returns the enrolment it named. TokenInvalid if forged."""
    workspace_id, enrollment_id = UnsubscribeSigner(key).verify(token)
    with workspace_tx(conn, workspace_id):
        row = conn.execute(
            "SELECT l.email_bidx FROM enrollments e JOIN leads l ON l.id = e.lead_id"
            " WHERE e.id = %s",
            (enrollment_id,),
        ).fetchone()
    if row is None:
        raise TokenInvalid("this unsubscribe link no longer matches a message")
    suppress(conn, workspace_id, bytes(row[0]), "unsubscribe")
    log.info("unsubscribe applied for enrolment %s", enrollment_id)
    return enrollment_id


def by_address(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int, address: str, reason: str
) -> None:
    suppress(conn, workspace_id, key.email_index(address), reason)


def keep_for_later(conn: psycopg.Connection[Any], token: str) -> None:
    """While sealed the token cannot be verified: keep it (it holds no address) for unlock."""
    if not well_formed(token):
        raise TokenInvalid("this unsubscribe link is not valid")
    conn.execute(
        "INSERT INTO unsubscribe_inbox (token) VALUES (%s) ON CONFLICT DO NOTHING", (token,)
    )


def apply_pending(conn: psycopg.Connection[Any], key: DataKey) -> int:
    """Apply the tokens kept while sealed (called after unlock); forged ones are dropped."""
    applied = 0
    for (token,) in conn.execute("SELECT token FROM unsubscribe_inbox").fetchall():
        try:
            by_token(conn, key, str(token))
            applied += 1
        except TokenInvalid:
            log.warning("dropped an unsubscribe token kept while sealed: it does not verify")
        conn.execute("DELETE FROM unsubscribe_inbox WHERE token = %s", (token,))
    return applied
