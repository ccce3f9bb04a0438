"""Workspaces (each its own data scope, enforced by row-level security) and their brands."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row

from paitho_tenant.crypto import COLUMN_OPTIONS, DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.errors import BadRequest, Conflict, NotFound

REGIONS = ("eu", "us")
DEFAULT_NAME = "default"


def create(conn: psycopg.Connection[Any], name: str, region: str) -> dict[str, Any]:
    name = name.strip()
    if not name or len(name) > 100:
        raise BadRequest("a workspace needs a name of 1 to 100 characters")
    if region not in REGIONS:
        raise BadRequest("region must be 'eu' or 'us'")
    try:
        with conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            row = cur.execute(
                "INSERT INTO workspaces (name, region) VALUES (%s, %s)"
                " RETURNING id, name, region, created_at",
                (name, region),
            ).fetchone()
    except pg_errors.UniqueViolation as exc:
        raise Conflict("a workspace with that name already exists") from exc
    assert row is not None
    return row


def list_all(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute("SELECT id, name, region, created_at FROM workspaces ORDER BY id").fetchall()


def resolve(conn: psycopg.Connection[Any], workspace: str | int | None) -> int:
    """A workspace id from an id, a name, or nothing (the first workspace)."""
    if workspace is None or workspace == "":
        row = conn.execute("SELECT id FROM workspaces ORDER BY id LIMIT 1").fetchone()
    elif isinstance(workspace, int) or str(workspace).isdigit():
        row = conn.execute("SELECT id FROM workspaces WHERE id = %s", (int(workspace),)).fetchone()
    else:
        row = conn.execute("SELECT id FROM workspaces WHERE name = %s", (workspace,)).fetchone()
    if row is None:
        raise NotFound("no such workspace")
    return int(row[0])


def create_brand(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    name: str,
    sending_identity: str | None = None,
    voice: str | None = None,
    icp: str | None = None,
) -> int:
    if not name.strip():
        raise BadRequest("a brand needs a name")
    enc = "pgp_sym_encrypt(%s, %s, '" + COLUMN_OPTIONS + "')"
    with workspace_tx(conn, workspace_id):
        row = conn.execute(
            "INSERT INTO brands (name, sending_identity, voice, icp)"
            f" VALUES (%s, {enc}, {enc}, {enc}) RETURNING id",
            (
                name.strip(),
                sending_identity,
                key.column_key,
                voice,
                key.column_key,
                icp,
                key.column_key,
            ),
        ).fetchone()
    assert row is not None
    return int(row[0])


def list_brands(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int
) -> list[dict[str, Any]]:
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        return cur.execute(
            "SELECT id, name, pgp_sym_decrypt(sending_identity, %(k)s) AS sending_identity,"
            " pgp_sym_decrypt(voice, %(k)s) AS voice, pgp_sym_decrypt(icp, %(k)s) AS icp,"
            " created_at FROM brands ORDER BY id",
            {"k": key.column_key},
        ).fetchall()
