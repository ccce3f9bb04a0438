"""Data-subject requests by email: access (every row about the person, decrypted) and erasure
(their rows deleted; only the blind-index hash kept on the suppression list so they are never
contacted again). Each request is recorded with its 30-day due date and completion time."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.rows import dict_row

from paitho_tenant import audit
from paitho_tenant.crypto import DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.errors import BadRequest
from paitho_tenant.stage_runs import _PERIOD_KEY

KINDS = ("access", "erasure")


def _open_request(conn: psycopg.Connection[Any], kind: str, bidx: bytes) -> dict[str, Any]:
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(
        "INSERT INTO dsar_requests (kind, subject_bidx) VALUES (%s, %s)"
        " RETURNING id, kind, received_at, due_at",
        (kind, bidx),
    ).fetchone()
    assert row is not None
    return row


def _close_request(conn: psycopg.Connection[Any], request_id: int, rows: int) -> None:
    conn.execute(
        "UPDATE dsar_requests SET completed_at = now(), rows_affected = %s WHERE id = %s",
        (rows, request_id),
    )


def handle(
    conn: psycopg.Connection[Any], key: DataKey, kind: str, email: str, actor: str
) -> dict[str, Any]:
    if kind not in KINDS:
        raise BadRequest("kind must be 'access' or 'erasure'")
    if "@" not in email:
        raise BadRequest("email must be an email address")
    bidx = key.email_index(email)
    with conn.transaction():
        request = _open_request(conn, kind, bidx)
    workspace_ids = [int(r[0]) for r in conn.execute("SELECT id FROM workspaces ORDER BY id")]
    found: list[dict[str, Any]] = []
    total = 0
    params = {"k": key.column_key, "b": bidx}
    for ws in workspace_ids:
        with workspace_tx(conn, ws):
            cur = conn.cursor(row_factory=dict_row)
            if kind == "erasure":
                deleted = conn.execute("DELETE FROM leads WHERE email_bidx = %(b)s", params)
                total += deleted.rowcount
                continue
            leads = cur.execute(
                "SELECT id, pgp_sym_decrypt(email, %(k)s) AS email,"
                " pgp_sym_decrypt(profile, %(k)s) AS profile, created_at"
                " FROM leads WHERE email_bidx = %(b)s",
                params,
            ).fetchall()
            if not leads:
                continue
            ids = [row["id"] for row in leads]
            messages = cur.execute(
                "SELECT id, lead_id, direction, pgp_sym_decrypt(headers, %(k)s) AS headers,"
                " pgp_sym_decrypt(body, %(k)s) AS body, created_at FROM messages"
                " WHERE lead_id = ANY(%(ids)s) ORDER BY id",
                {**params, "ids": ids},
            ).fetchall()
            runs = cur.execute(
                "SELECT sr.id, sr.lead_id, sr.stage, sr.model, sr.input_tokens,"
                " sr.output_tokens, sr.started_at, sr.duration_ms,"
                " pgp_sym_decrypt(sr.prompt, " + _PERIOD_KEY + ") AS prompt,"
                " pgp_sym_decrypt(sr.response, " + _PERIOD_KEY + ") AS response"
                " FROM stage_runs sr LEFT JOIN period_keys pk USING (period_start)"
                " WHERE sr.lead_id = ANY(%(ids)s) ORDER BY sr.id",
                {**params, "ids": ids},
            ).fetchall()
            for lead in leads:
                lead["profile"] = json.loads(lead["profile"]) if lead["profile"] else {}
            for message in messages:
                message["headers"] = json.loads(message["headers"])
            total += len(leads) + len(messages) + len(runs)
            found.append(
                {"workspace_id": ws, "leads": leads, "messages": messages, "stage_runs": runs}
            )
    with conn.transaction():
        if kind == "erasure":
            conn.execute(
                "INSERT INTO suppression (email_bidx, reason) VALUES (%s, 'erasure request')"
                " ON CONFLICT (email_bidx) DO NOTHING",
                (bidx,),
            )
        _close_request(conn, request["id"], total)
        audit.record(conn, actor, f"dsar.{kind}", {"request_id": request["id"], "rows": total})
    out: dict[str, Any] = {**request, "rows_affected": total}
    if kind == "access":
        out["data"] = found
    return out
