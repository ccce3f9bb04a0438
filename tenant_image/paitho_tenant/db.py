"""Database names, roles and connections of the tenant.

The launcher hands the tenant the conninfo of its cluster's bootstrap superuser. `migrate`
uses it once to create two roles and the tenant database; everything else connects as one of
those roles over the same socket:

    paitho_owner  owns the schema and applies migrations
    paitho_app    the app's role: least privilege, subject to row-level security,
                  INSERT-only on the audit log
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DATABASE = "paitho"
OWNER_ROLE = "paitho_owner"
APP_ROLE = "paitho_app"

# Settings that must hold before a passphrase or data key is sent (research/security.md §1.3).
SAFE_SETTINGS: dict[str, str] = {
    "log_statement": "none",
    "log_min_duration_statement": "-1",
    "log_min_duration_sample": "-1",
    "log_parameter_max_length": "0",
    "log_parameter_max_length_on_error": "0",
    "log_min_error_statement": "panic",
    "log_duration": "off",
    "shared_preload_libraries": "",
    "session_preload_libraries": "",
}


def role_conninfo(admin_conninfo: str, role: str, dbname: str = DATABASE) -> str:
    """The admin conninfo with another user and database (same socket, same port)."""
    return make_conninfo(admin_conninfo, user=role, dbname=dbname)


def app_conninfo(admin_conninfo: str) -> str:
    return role_conninfo(admin_conninfo, APP_ROLE)


def owner_conninfo(admin_conninfo: str) -> str:
    return role_conninfo(admin_conninfo, OWNER_ROLE)


def describe(conninfo: str) -> str:
    """A loggable description of a conninfo (no password even if one is present)."""
    parts = conninfo_to_dict(conninfo)
    return f"{parts.get('user', '?')}@{parts.get('dbname', '?')}"


@contextmanager
def workspace_tx(conn: psycopg.Connection[object], workspace_id: int) -> Iterator[None]:
    """A transaction whose row-level security scope is one workspace."""
    with conn.transaction():
        conn.execute(
            "SELECT set_config('paitho.workspace_id', %s, true)", (str(int(workspace_id)),)
        )
        yield


def unsafe_settings(conn: psycopg.Connection[object]) -> list[str]:
    """Names of server settings that differ from SAFE_SETTINGS (empty list: safe)."""
    rows = conn.execute(
        "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(SAFE_SETTINGS),)
    ).fetchall()
    actual = {str(r[0]): str(r[1]) for r in rows}  # type: ignore[index]
    bad = [name for name, want in SAFE_SETTINGS.items() if actual.get(name, want) != want]
    extensions = conn.execute(
        "SELECT extname FROM pg_extension WHERE extname IN ('pg_stat_statements', 'pgaudit')"
    ).fetchall()
    bad += [f"extension {r[0]}" for r in extensions]  # type: ignore[index]
    return bad
