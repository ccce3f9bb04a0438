"""Leads: the importer (dedup by blind index, all-or-nothing) and decrypted reads.

The importer takes rows from `csvimport.LeadCsvReader.rows()` (or anything shaped like them),
drops duplicates within the file and against the workspace by the HMAC of the normalised email
(never a set of plaintext addresses), skips suppressed people, and inserts in batches: one
`INSERT ... SELECT ... FROM unnest(...)` per batch with the plaintext arrays and the key as bind
parameters, pipelined so Python prepares the next batch while the server encrypts this one. The
whole import is one transaction; any failure rolls all of it back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import psycopg
from psycopg.rows import dict_row

from paitho_tenant.crypto import COLUMN_OPTIONS, DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.errors import NotFound

BATCH_ROWS = 2000
MAX_REPORTED_ERRORS = 1000

# Arrays travel in binary format (%b): parsing 2,000 hex-escaped bytea literals per batch
# costs more than the encryption.
_INSERT = (
    "INSERT INTO leads (workspace_id, email_bidx, email, profile)"
    " SELECT %(ws)s, u.b, pgp_sym_encrypt(u.e, %(k)s, '" + COLUMN_OPTIONS + "'),"
    " pgp_sym_encrypt(u.p, %(k)s, '" + COLUMN_OPTIONS + "')"
    " FROM unnest(%(b)b::bytea[], %(e)b::text[], %(p)b::text[]) AS u(b, e, p)"
    " ON CONFLICT (workspace_id, email_bidx) DO NOTHING"
)


class LeadLike(Protocol):
    @property
    def row_number(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def fields(self) -> Mapping[str, str]: ...


class RowErrorLike(Protocol):
    @property
    def row_number(self) -> int: ...
    @property
    def column(self) -> str: ...
    @property
    def reason(self) -> str: ...


@dataclass
class ImportResult:
    imported: int = 0
    duplicates: int = 0
    suppressed: int = 0
    error_count: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "suppressed": self.suppressed,
            "error_count": self.error_count,
            "errors": self.errors,
        }


def import_rows(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    rows: Iterable[LeadLike | RowErrorLike],
    progress: Callable[[int], None] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ImportResult:
    """Import in one transaction; returns counts and the per-row errors (no cell values)."""
    result = ImportResult()
    seen: set[bytes] = set()
    cursors: list[tuple[psycopg.Cursor[Any], int]] = []
    params: dict[str, Any] = {"k": key.column_key, "ws": workspace_id}
    processed = 0
    with workspace_tx(conn, workspace_id):
        suppressed = {bytes(r[0]) for r in conn.execute("SELECT email_bidx FROM suppression")}
        with conn.pipeline():
            batch_b: list[bytes] = []
            batch_e: list[str] = []
            batch_p: list[str | None] = []

            def flush() -> None:
                if not batch_b:
                    return
                cur = conn.cursor()
                cur.execute(_INSERT, {**params, "b": batch_b[:], "e": batch_e[:], "p": batch_p[:]})
                cursors.append((cur, len(batch_b)))
                batch_b.clear()
                batch_e.clear()
                batch_p.clear()

            for item in rows:
                processed += 1
                if hasattr(item, "reason"):
                    error = cast(RowErrorLike, item)
                    result.error_count += 1
                    if len(result.errors) < MAX_REPORTED_ERRORS:
                        result.errors.append(
                            {
                                "row": error.row_number,
                                "column": error.column,
                                "reason": error.reason,
                            }
                        )
                else:
                    lead = item
                    bidx = key.email_index(lead.email)
                    if bidx in seen:
                        result.duplicates += 1
                    elif bidx in suppressed:
                        result.suppressed += 1
                    else:
                        seen.add(bidx)
                        profile = {k: v for k, v in lead.fields.items() if k != "email" and v}
                        batch_b.append(bidx)
                        batch_e.append(lead.email)
                        batch_p.append(
                            json.dumps(profile, ensure_ascii=False, separators=(",", ":"))
                            if profile
                            else None
                        )
                        if len(batch_b) >= batch_rows:
                            flush()
                if progress is not None and processed % 1000 == 0:
                    progress(processed)
            flush()
        inserted = sum(cur.rowcount for cur, _ in cursors)
        attempted = sum(n for _, n in cursors)
        result.imported = inserted
        result.duplicates += attempted - inserted
    if progress is not None:
        progress(processed)
    return result


def list_leads(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        rows = cur.execute(
            "SELECT id, pgp_sym_decrypt(email, %(k)s) AS email,"
            " pgp_sym_decrypt(profile, %(k)s) AS profile, created_at"
            " FROM leads ORDER BY id LIMIT %(l)s OFFSET %(o)s",
            {"k": key.column_key, "l": limit, "o": offset},
        ).fetchall()
    for row in rows:
        row["profile"] = json.loads(row["profile"]) if row["profile"] else {}
    return rows


def find_by_email(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int, email: str
) -> dict[str, Any]:
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        row = cur.execute(
            "SELECT id, pgp_sym_decrypt(email, %(k)s) AS email,"
            " pgp_sym_decrypt(profile, %(k)s) AS profile, created_at"
            " FROM leads WHERE email_bidx = %(b)s",
            {"k": key.column_key, "b": key.email_index(email)},
        ).fetchone()
    if row is None:
        raise NotFound("no lead with that email in this workspace")
    row["profile"] = json.loads(row["profile"]) if row["profile"] else {}
    return row
