"""LLM stage runs: token counts and timings in the clear, prompt and response encrypted under
the key of their period (ISO week).

Period keys are 32 random bytes generated inside the database and stored wrapped under the data
key (`period_keys`). The unwrapped period key never leaves the server: encryption and decryption
unwrap it in the same statement. Deleting a `period_keys` row (crypto-shredding, done by the
retention workflow after 90 days) leaves that period's prompts and responses unreadable
everywhere, including WAL and backups of the rows; the counts and timings stay. Raw provider
responses are never stored: the caller passes the generated text and the token counts only.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from paitho_tenant.crypto import COLUMN_OPTIONS, DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.errors import BadRequest, NotFound

STAGES = ("qualify", "draft", "audit")

_PERIOD_KEY = "encode(pgp_sym_decrypt_bytea(pk.wrapped_key, %(k)s), 'hex')"


def period_of(moment: datetime) -> date:
    """The first day (Monday) of the ISO week holding `moment`."""
    day = moment.date()
    return day - timedelta(days=day.weekday())


def ensure_period_key(conn: psycopg.Connection[Any], key: DataKey, period: date) -> None:
    conn.execute(
        "INSERT INTO period_keys (period_start, wrapped_key)"
        " VALUES (%(p)s, pgp_sym_encrypt_bytea(gen_random_bytes(32), %(k)s, '"
        + COLUMN_OPTIONS
        + "')) ON CONFLICT (period_start) DO NOTHING",
        {"p": period, "k": key.column_key},
    )


def record(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    *,
    stage: str,
    model: str,
    prompt: str,
    response: str,
    input_tokens: int,
    output_tokens: int,
    duration_ms: int,
    started_at: datetime,
    lead_id: int | None = None,
) -> int:
    if stage not in STAGES:
        raise BadRequest("stage must be one of: " + ", ".join(STAGES))
    if min(input_tokens, output_tokens, duration_ms) < 0:
        raise BadRequest("token counts and duration must not be negative")
    period = period_of(started_at)
    enc = "pgp_sym_encrypt(%(VALUE)s, " + _PERIOD_KEY + ", '" + COLUMN_OPTIONS + "')"
    with workspace_tx(conn, workspace_id):
        ensure_period_key(conn, key, period)
        row = conn.execute(
            "INSERT INTO stage_runs (lead_id, stage, model, input_tokens, output_tokens,"
            " started_at, duration_ms, period_start, prompt, response)"
            " SELECT %(lead)s, %(stage)s, %(model)s, %(it)s, %(ot)s, %(at)s, %(ms)s, %(p)s, "
            + enc.replace("VALUE", "prompt")
            + ", "
            + enc.replace("VALUE", "response")
            + " FROM period_keys pk WHERE pk.period_start = %(p)s RETURNING id",
            {
                "lead": lead_id,
                "stage": stage,
                "model": model,
                "it": input_tokens,
                "ot": output_tokens,
                "at": started_at,
                "ms": duration_ms,
                "p": period,
                "prompt": prompt,
                "response": response,
                "k": key.column_key,
            },
        ).fetchone()
    assert row is not None
    return int(row[0])


def get(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int, run_id: int
) -> dict[str, Any]:
    """A stage run; prompt and response are None once their period key was destroyed."""
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        row = cur.execute(
            "SELECT sr.id, sr.lead_id, sr.stage, sr.model, sr.input_tokens, sr.output_tokens,"
            " sr.started_at, sr.duration_ms, sr.period_start,"
            " pgp_sym_decrypt(sr.prompt, " + _PERIOD_KEY + ") AS prompt,"
            " pgp_sym_decrypt(sr.response, " + _PERIOD_KEY + ") AS response"
            " FROM stage_runs sr LEFT JOIN period_keys pk USING (period_start)"
            " WHERE sr.id = %(id)s",
            {"k": key.column_key, "id": run_id},
        ).fetchone()
    if row is None:
        raise NotFound("no such stage run in this workspace")
    return row


def shred_period(conn: psycopg.Connection[Any], period: date) -> bool:
    """Destroy one period key (owner role). True when a key was destroyed."""
    with conn.transaction():
        cur = conn.execute("DELETE FROM period_keys WHERE period_start = %s", (period,))
    return cur.rowcount == 1
