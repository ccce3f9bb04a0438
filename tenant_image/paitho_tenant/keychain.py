"""The keychain: provider keys and mailbox credentials, write-only through the API.

A stored secret is never returned; listing shows its kind, label, creation time and last four
characters (computed inside the database, and only for secrets of 12 characters or more).
`reveal` exists for the app's own outbound calls and is not reachable over HTTP.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from paitho_tenant.crypto import COLUMN_OPTIONS, DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.errors import BadRequest, NotFound

KINDS = ("openai", "anthropic", "google", "openai_compatible", "smtp", "imap", "enrichment")

_LIST = (
    "SELECT id, kind, label, created_at,"
    " CASE WHEN length(pgp_sym_decrypt(secret, %(k)s)) >= 12"
    "      THEN right(pgp_sym_decrypt(secret, %(k)s), 4) END AS last4"
    " FROM keychain"
)


def add(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    kind: str,
    label: str,
    secret: str,
) -> dict[str, Any]:
    if kind not in KINDS:
        raise BadRequest("kind must be one of: " + ", ".join(KINDS))
    if not label.strip() or len(label) > 200:
        raise BadRequest("a key needs a label of 1 to 200 characters")
    if not secret:
        raise BadRequest("secret must not be empty")
    with workspace_tx(conn, workspace_id):
        row = conn.execute(
            "INSERT INTO keychain (kind, label, secret)"
            " VALUES (%(kind)s, %(label)s, pgp_sym_encrypt(%(secret)s, %(k)s, '"
            + COLUMN_OPTIONS
            + "')) RETURNING id",
            {"kind": kind, "label": label.strip(), "secret": secret, "k": key.column_key},
        ).fetchone()
        assert row is not None
        cur = conn.cursor(row_factory=dict_row)
        out = cur.execute(
            _LIST + " WHERE id = %(id)s", {"k": key.column_key, "id": row[0]}
        ).fetchone()
    assert out is not None
    return out


def list_keys(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int
) -> list[dict[str, Any]]:
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        return cur.execute(_LIST + " ORDER BY id", {"k": key.column_key}).fetchall()


def remove(conn: psycopg.Connection[Any], workspace_id: int, key_id: int) -> None:
    with workspace_tx(conn, workspace_id):
        cur = conn.execute("DELETE FROM keychain WHERE id = %s", (key_id,))
        if cur.rowcount != 1:
            raise NotFound("no such key in this workspace")


def reveal(conn: psycopg.Connection[Any], key: DataKey, workspace_id: int, key_id: int) -> str:
    """The plaintext secret, for the app's own use (never over HTTP)."""
    with workspace_tx(conn, workspace_id):
        row = conn.execute(
            "SELECT pgp_sym_decrypt(secret, %s) FROM keychain WHERE id = %s",
            (key.column_key, key_id),
        ).fetchone()
    if row is None:
        raise NotFound("no such key in this workspace")
    return str(row[0])
