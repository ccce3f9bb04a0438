"""Data inventory as code: every table and column the tenant stores, its class, where it lives
and how long it is kept. Tests hold the schema to it (a column missing here fails the build;
a column declared encrypted that holds anything but pgcrypto AES-256 ciphertext fails the
build), and `/trust` renders its summary table from it.

Other areas that add tables through their own migrations declare them in a module listed in
EXTENSION_MODULES (a module-level `TABLES: tuple[Table, ...]`); they are part of `TABLES` here.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

# Column classes.
ENCRYPTED = "encrypted"  # pgp_sym_encrypt(value, data key, 'cipher-algo=aes256, s2k-mode=1')
PERIOD_ENCRYPTED = "period_encrypted"  # same, under the period key (crypto-shredded)
WRAPPED_KEY = "wrapped_key"  # pgp_sym_encrypt_bytea(key, wrapping key), AES-256
BLIND_INDEX = "blind_index"  # HMAC-SHA256 under a key derived from the data key
CREDENTIAL_HASH = "credential_hash"  # argon2id
CHAIN_HASH = "chain_hash"  # SHA-256 audit chain link
METADATA = "metadata"  # ids, timestamps, counts, kinds, labels: not personal data

CIPHERTEXT_CLASSES = (ENCRYPTED, PERIOD_ENCRYPTED, WRAPPED_KEY)
# OpenPGP packet prefix of each class: SKESK packet (0xC3), version 4, AES-256 (9), S2K mode.
_PREFIX = {
    ENCRYPTED: ("040901",),
    PERIOD_ENCRYPTED: ("040901",),
    WRAPPED_KEY: ("040901", "040903"),
}

IN_DOCKER = "Postgres · inside your Docker"
DATA_KEY = "AES-256 (pgp_sym_encrypt, data key wrapped by your PG_PASSPHRASE)"


@dataclass(frozen=True)
class Column:
    name: str
    cls: str
    note: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    category: str
    where: str
    encryption: str
    retention: str
    workspace_scoped: bool
    columns: tuple[Column, ...]

    def of_class(self, *classes: str) -> list[str]:
        return [c.name for c in self.columns if c.cls in classes]


def _meta(*names: str) -> tuple[Column, ...]:
    return tuple(Column(n, METADATA) for n in names)


CORE_TABLES: tuple[Table, ...] = (
    Table(
        "leads",
        "Lead records",
        IN_DOCKER,
        DATA_KEY,
        "indefinite (you delete)",
        True,
        (
            *_meta("id", "workspace_id", "created_at"),
            Column("email_bidx", BLIND_INDEX, "dedup and suppression lookups"),
            Column("email", ENCRYPTED),
            Column("profile", ENCRYPTED, "every other CSV field"),
        ),
    ),
    Table(
        "keychain",
        "LLM provider keys, SMTP/IMAP credentials, enrichment keys (BYOK)",
        "Encrypted keychain · " + IN_DOCKER,
        DATA_KEY,
        "until you remove",
        True,
        (
            *_meta("id", "workspace_id", "kind", "label", "created_at"),
            Column("secret", ENCRYPTED, "write-only: never returned, last four shown"),
        ),
    ),
    Table(
        "messages",
        "Email message bodies (sent + received)",
        IN_DOCKER,
        DATA_KEY,
        "indefinite (you delete)",
        True,
        (
            *_meta("id", "workspace_id", "lead_id", "direction", "created_at"),
            Column("headers", ENCRYPTED),
            Column("body", ENCRYPTED),
        ),
    ),
    Table(
        "stage_runs",
        "LLM prompt + response logs",
        IN_DOCKER + " · stage_runs",
        "AES-256 under a per-week key",
        "90 days · then the week's key is destroyed",
        True,
        (
            *_meta(
                "id",
                "workspace_id",
                "lead_id",
                "stage",
                "model",
                "input_tokens",
                "output_tokens",
                "started_at",
                "duration_ms",
                "period_start",
            ),
            Column("prompt", PERIOD_ENCRYPTED),
            Column("response", PERIOD_ENCRYPTED),
        ),
    ),
    Table(
        "period_keys",
        "LLM prompt + response logs",
        IN_DOCKER,
        DATA_KEY,
        "90 days · destroyed (crypto-shredding)",
        False,
        (
            *_meta("period_start", "created_at"),
            Column("wrapped_key", WRAPPED_KEY, "wrapped under the data key"),
        ),
    ),
    Table(
        "audit_log",
        "Audit log (auth + admin actions)",
        "Append-only table · " + IN_DOCKER,
        "AES-256 encrypted volume; hash-chained, INSERT-only",
        "12 months",
        False,
        (
            *_meta("seq", "at", "actor", "action", "detail"),
            Column("prev_hash", CHAIN_HASH),
            Column("row_hash", CHAIN_HASH),
        ),
    ),
    Table(
        "audit_head",
        "Audit log (auth + admin actions)",
        IN_DOCKER,
        "hash chain head",
        "12 months",
        False,
        (*_meta("id", "seq"), Column("hash", CHAIN_HASH)),
    ),
    Table(
        "audit_checkpoints",
        "Audit log (auth + admin actions)",
        IN_DOCKER,
        "none (seq numbers, chain hashes and times only)",
        "for the life of the tenant (a pruned segment's checkpoint is the chain's anchor)",
        False,
        (
            *_meta(
                "segment",
                "first_seq",
                "last_seq",
                "first_at",
                "last_at",
                "row_count",
                "created_at",
                "pruned_at",
            ),
            Column("last_hash", CHAIN_HASH, "hash of the segment's last row"),
        ),
    ),
    Table(
        "accounts",
        "Your team's accounts",
        IN_DOCKER,
        DATA_KEY + "; passwords argon2id",
        "until you remove",
        False,
        (
            *_meta("id", "role", "created_at"),
            Column("email_bidx", BLIND_INDEX),
            Column("email", ENCRYPTED),
            Column("password_hash", CREDENTIAL_HASH),
        ),
    ),
    Table(
        "vault",
        "Your wrapped data key",
        IN_DOCKER,
        "AES-256, wrapped by your PG_PASSPHRASE (slow S2K)",
        "for the life of the tenant",
        False,
        (*_meta("id", "created_at", "rotated_at"), Column("wrapped_key", WRAPPED_KEY)),
    ),
    Table(
        "workspaces",
        "Workspaces and brands",
        IN_DOCKER,
        "none (names and region only)",
        "until you remove",
        False,
        _meta("id", "name", "region", "created_at"),
    ),
    Table(
        "brands",
        "Workspaces and brands",
        IN_DOCKER,
        DATA_KEY,
        "until you remove",
        True,
        (
            *_meta("id", "workspace_id", "name", "created_at"),
            Column("sending_identity", ENCRYPTED),
            Column("voice", ENCRYPTED),
            Column("icp", ENCRYPTED),
        ),
    ),
    Table(
        "suppression",
        "Data-subject requests",
        IN_DOCKER,
        "blind-index hash only",
        "indefinite (never contact again)",
        False,
        (*_meta("reason", "added_at"), Column("email_bidx", BLIND_INDEX)),
    ),
    Table(
        "dsar_requests",
        "Data-subject requests",
        IN_DOCKER,
        "blind-index hash only",
        "indefinite (proof of handling)",
        False,
        (
            *_meta("id", "kind", "received_at", "due_at", "completed_at", "rows_affected"),
            Column("subject_bidx", BLIND_INDEX),
        ),
    ),
    Table(
        "schema_migrations",
        "Schema version",
        IN_DOCKER,
        "none (version numbers)",
        "for the life of the tenant",
        False,
        _meta("version", "name", "applied_at"),
    ),
)

EXTENSION_MODULES = ("paitho_tenant.outbound.inventory", "paitho_tenant.ai.inventory")


def _extension_tables() -> tuple[Table, ...]:
    found: list[Table] = []
    for name in EXTENSION_MODULES:
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            spec = None
        if spec is not None:
            found.extend(importlib.import_module(name).TABLES)
    return tuple(found)


TABLES = CORE_TABLES + _extension_tables()
BY_NAME = {t.name: t for t in TABLES}


def summary_rows() -> list[dict[str, str]]:
    """One row per category, in declaration order: the trust page's four columns."""
    seen: dict[str, dict[str, str]] = {}
    for table in TABLES:
        if table.category not in seen:
            seen[table.category] = {
                "data_type": table.category,
                "where": table.where,
                "encryption": table.encryption,
                "retention": table.retention,
            }
    return list(seen.values())


def schema_drift(conn: psycopg.Connection[Any]) -> list[str]:
    """Differences between the live schema (public base tables) and the inventory."""
    rows = conn.execute(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
    ).fetchall()
    live = {(str(r[0]), str(r[1])) for r in rows}
    declared = {(t.name, c.name) for t in TABLES for c in t.columns}
    problems = [
        f"{t}.{c} is in the schema but not in the inventory (declare it in "
        "paitho_tenant.inventory or a module in its EXTENSION_MODULES)"
        for t, c in sorted(live - declared)
    ]
    problems += [
        f"{t}.{c} is in the inventory but not in the schema" for t, c in sorted(declared - live)
    ]
    return problems


def ciphertext_violations(conn: psycopg.Connection[Any]) -> list[str]:
    """Columns declared encrypted holding anything but pgcrypto AES-256 output (superuser:
    row-level security must not hide rows from this check)."""
    problems = []
    for table in TABLES:
        for column in table.columns:
            if column.cls not in CIPHERTEXT_CLASSES:
                continue
            query = sql.SQL(
                "SELECT count(*) FROM {t} WHERE {c} IS NOT NULL AND NOT ("
                " length({c}) > 20 AND encode(substr({c}, 1, 1), 'hex') = 'c3'"
                " AND encode(substr({c}, 3, 3), 'hex') = ANY(%s))"
            ).format(t=sql.Identifier(table.name), c=sql.Identifier(column.name))
            row = conn.execute(query, (list(_PREFIX[column.cls]),)).fetchone()
            bad = int(row[0]) if row else 0
            if bad:
                problems.append(
                    f"{table.name}.{column.name}: {bad} row(s) are not AES-256 PGP ciphertext"
                )
    return problems
