"""Numbered SQL migrations (migrations/NNNN_name.sql), applied in order and recorded in
`schema_migrations`. `migrate()` also creates the roles, the database and pgcrypto."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from paitho_tenant.db import APP_ROLE, DATABASE, OWNER_ROLE, owner_conninfo
from paitho_tenant.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def available(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path))
    return found


def _ensure_cluster_objects(admin_conninfo: str) -> None:
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        for role in (OWNER_ROLE, APP_ROLE):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL(
                        "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"
                    ).format(sql.Identifier(role))
                )
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
        ).fetchone()
        db, owner, app = (sql.Identifier(n) for n in (DATABASE, OWNER_ROLE, APP_ROLE))
        if not exists:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
                    db, owner
                )
            )
        else:
            # A container image may have created it (POSTGRES_DB) owned by the superuser.
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, owner))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        conn.execute(
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}, {}").format(db, owner, app)
        )
    with psycopg.connect(make_conninfo(admin_conninfo, dbname=DATABASE), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public")


def _applied(conn: psycopg.Connection[tuple[int]]) -> set[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations").fetchall()}


def migrate(admin_conninfo: str) -> list[int]:
    """Bring the tenant database to the newest schema; returns the versions applied now."""
    try:
        _ensure_cluster_objects(admin_conninfo)
        done: list[int] = []
        with psycopg.connect(owner_conninfo(admin_conninfo)) as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(7411)")
                applied = _applied(conn)
            for migration in available():
                if migration.version in applied:
                    continue
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(7411)")
                    if migration.version in _applied(conn):
                        continue
                    conn.execute(migration.path.read_text().encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                log.info("applied migration %04d_%s", migration.version, migration.name)
                done.append(migration.version)
        return done
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach the tenant's PostgreSQL: {exc}") from exc


def pending(admin_conninfo: str) -> bool:
    """Fast check (one connection) whether `migrate()` has anything to do."""
    wanted = {m.version for m in available()}
    try:
        with psycopg.connect(owner_conninfo(admin_conninfo), connect_timeout=5) as conn:
            found = conn.execute(
                "SELECT to_regclass('public.schema_migrations') IS NOT NULL"
            ).fetchone()
            if not found or not found[0]:
                return True
            rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
            return not wanted <= {int(r[0]) for r in rows}
    except psycopg.OperationalError:
        return True
