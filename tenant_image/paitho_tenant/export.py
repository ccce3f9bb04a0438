"""Export anytime: a zip of every table the app can read, decrypted, as JSON and CSV, with a
manifest of SHA-256 sums. Built as a stream of chunks in memory: the plaintext never touches a
disk on the tenant's side. Key material (wrapped keys, password hashes) is left out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from paitho_tenant import audit
from paitho_tenant.crypto import DataKey
from paitho_tenant.csvexport import write_csv
from paitho_tenant.db import workspace_tx
from paitho_tenant.inventory import (
    BLIND_INDEX,
    CHAIN_HASH,
    ENCRYPTED,
    METADATA,
    PERIOD_ENCRYPTED,
    TABLES,
    Table,
)

FORMAT = "paitho-export/1"
# Tables the app role reads another way or not at all (it holds no SELECT on them).
_SPECIAL = {"audit_log", "audit_head", "schema_migrations"}
_JSON_COLUMNS = {("leads", "profile"), ("messages", "headers")}


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream whose bytes are drained by the generator."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def _select(table: Table) -> tuple[sql.Composed, list[str]]:
    exprs: list[sql.Composable] = []
    names: list[str] = []
    for col in table.columns:
        ident = sql.Identifier(col.name)
        if col.cls == ENCRYPTED:
            exprs.append(sql.SQL("pgp_sym_decrypt(t.{c}, %(k)s)").format(c=ident))
        elif col.cls == PERIOD_ENCRYPTED and any(c.name == "period_start" for c in table.columns):
            exprs.append(
                sql.SQL(
                    "pgp_sym_decrypt(t.{c}, encode(pgp_sym_decrypt_bytea("
                    "(SELECT pk.wrapped_key FROM period_keys pk"
                    " WHERE pk.period_start = t.period_start), %(k)s), 'hex'))"
                ).format(c=ident)
            )
        elif col.cls in (BLIND_INDEX, CHAIN_HASH):
            exprs.append(sql.SQL("encode(t.{c}, 'hex')").format(c=ident))
        elif col.cls == METADATA:
            exprs.append(sql.SQL("t.{c}").format(c=ident))
        else:  # key material (wrapped keys, password hashes) and anything unknown: left out
            continue
        names.append(col.name)
    order = "id" if any(c.name == "id" for c in table.columns) else table.columns[0].name
    query = sql.SQL("SELECT {e} FROM {t} AS t ORDER BY t.{o}").format(
        e=sql.SQL(", ").join(exprs), t=sql.Identifier(table.name), o=sql.Identifier(order)
    )
    return query, names


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value


def _table_rows(
    conn: psycopg.Connection[Any], key: DataKey, table: Table
) -> tuple[list[str], list[list[Any]]]:
    if table.name == "audit_log":
        entries = audit.entries(conn)
        names = [c.name for c in table.columns]
        return names, [[_plain(e[n]) for n in names] for e in entries]
    query, names = _select(table)
    rows: list[list[Any]] = []
    if table.workspace_scoped:
        workspace_ids = [int(r[0]) for r in conn.execute("SELECT id FROM workspaces ORDER BY id")]
        for ws in workspace_ids:
            with workspace_tx(conn, ws):
                rows += [[_plain(v) for v in r] for r in conn.execute(query, {"k": key.column_key})]
    else:
        with conn.transaction():
            rows = [[_plain(v) for v in r] for r in conn.execute(query, {"k": key.column_key})]
    return names, rows


def _json_value(table: str, column: str, value: Any) -> Any:
    if (table, column) in _JSON_COLUMNS and isinstance(value, str):
        return json.loads(value)
    return value


def stream_zip(conn: psycopg.Connection[Any], key: DataKey) -> Iterator[bytes]:
    """Yield the bytes of the export zip, table by table."""
    sink = _Sink()
    files: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:

        def add(name: str, data: bytes) -> None:
            zf.writestr(name, data)
            files.append(
                {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            )

        for table in TABLES:
            if table.name in _SPECIAL and table.name != "audit_log":
                skipped.append({"table": table.name, "reason": "no user data (bookkeeping)"})
                continue
            try:
                names, rows = _table_rows(conn, key, table)
            except (pg_errors.InsufficientPrivilege, pg_errors.UndefinedTable) as exc:
                skipped.append({"table": table.name, "reason": type(exc).__name__})
                continue
            objects = [
                {n: _json_value(table.name, n, v) for n, v in zip(names, row, strict=True)}
                for row in rows
            ]
            add(
                f"{table.name}.json",
                json.dumps(objects, ensure_ascii=False, indent=1, default=str).encode(),
            )
            text = io.StringIO(newline="")
            write_csv(text, names, rows)
            add(f"{table.name}.csv", text.getvalue().encode("utf-8"))
            yield sink.drain()
        manifest = {
            "format": FORMAT,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "files": files,
            "skipped": skipped,
        }
        zf.writestr("manifest.json", json.dumps(manifest, indent=1).encode())
    yield sink.drain()
