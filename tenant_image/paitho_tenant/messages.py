"""Messages sent and received through the connected mailbox: headers and body encrypted."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.rows import dict_row

from paitho_tenant.crypto import COLUMN_OPTIONS, DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.errors import BadRequest, NotFound

DIRECTIONS = ("sent", "received")


def add(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    direction: str,
    headers: dict[str, str],
    body: str,
    lead_id: int | None = None,
) -> int:
    if direction not in DIRECTIONS:
        raise BadRequest("direction must be 'sent' or 'received'")
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise BadRequest("headers must be an object of strings")
    enc = "pgp_sym_encrypt(%(h)s, %(k)s, '" + COLUMN_OPTIONS + "')"
    with workspace_tx(conn, workspace_id):
        row = conn.execute(
            "INSERT INTO messages (lead_id, direction, headers, body) VALUES (%(lead)s, %(d)s, "
            + enc
            + ", pgp_sym_encrypt(%(b)s, %(k)s, '"
            + COLUMN_OPTIONS
            + "')) RETURNING id",
            {
                "lead": lead_id,
                "d": direction,
                "h": json.dumps(headers, ensure_ascii=False),
                "b": body,
                "k": key.column_key,
            },
        ).fetchone()
    assert row is not None
    return int(row[0])


def get(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int, message_id: int
) -> dict[str, Any]:
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        row = cur.execute(
            "SELECT id, lead_id, direction, pgp_sym_decrypt(headers, %(k)s) AS headers,"
            " pgp_sym_decrypt(body, %(k)s) AS body, created_at FROM messages WHERE id = %(id)s",
            {"k": key.column_key, "id": message_id},
        ).fetchone()
    if row is None:
        raise NotFound("no such message in this workspace")
    row["headers"] = json.loads(row["headers"])
    return row
