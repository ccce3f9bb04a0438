"""Fixtures for the outbound tests: a migrated, unsealed tenant on a real cluster, Dovecot and
aiosmtpd on loopback, and the engine wired to them with an injectable clock."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imapclient
import psycopg
from paitho_tenant import leads, workspaces
from paitho_tenant.crypto import DataKey
from paitho_tenant.db import app_conninfo
from paitho_tenant.migrate import migrate
from paitho_tenant.outbound import mailbox, store
from paitho_tenant.outbound.store import MailboxConfig, MailboxSpec
from paitho_tenant.vault import Vault

from chalicelib.launchers import pgcluster
from tests.conftest import RunningCluster, free_port
from tests.functional.outbound_servers import (
    Cert,
    Dovecot,
    SmtpHandler,
    SmtpServer,
    make_cert,
)

PASSPHRASE = "vobaku-tesimo-rafelu-ginopa-halude"


@dataclass(frozen=True)
class LeadRow:
    row_number: int
    email: str
    fields: dict[str, str]


@dataclass
class Tenant:
    cluster: RunningCluster
    conn: psycopg.Connection[Any]
    key: DataKey
    workspace_id: int
    vault: Vault

    @property
    def admin(self) -> str:
        return self.cluster.conninfo()

    def app_connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(app_conninfo(self.admin), autocommit=True)

    def add_leads(self, rows: list[tuple[str, dict[str, str]]]) -> dict[str, int]:
        items = [LeadRow(i + 2, email, fields) for i, (email, fields) in enumerate(rows)]
        result = leads.import_rows(self.conn, self.key, self.workspace_id, items)
        assert result.imported == len(rows)
        found = leads.list_leads(self.conn, self.key, self.workspace_id, limit=100_000)
        return {r["email"]: int(r["id"]) for r in found}

    def brand(self, postal: str = "Acme Ltd, 1 Main Street, 10115 Berlin") -> int:
        brand_id = workspaces.create_brand(
            self.conn, self.key, self.workspace_id, "Acme", sending_identity="Alice at Acme"
        )
        store.set_brand_footer(self.conn, self.key, self.workspace_id, brand_id, postal)
        return brand_id


USERS = {"sales1@acme.test": "pw-sales-one-123", "sales2@acme.test": "pw-sales-two-456"}


@dataclass
class MailWorld:
    """Two provider mailboxes: SMTP (STARTTLS + AUTH) and Dovecot IMAP for the same users."""

    dovecot: Dovecot
    smtp: SmtpServer
    handler: SmtpHandler
    cert: Cert
    users: dict[str, str] = field(default_factory=dict)

    def spec(self, user: str, **overrides: Any) -> MailboxSpec:
        values: dict[str, Any] = {
            "label": user.split("@")[0],
            "from_address": user,
            "smtp_host": "127.0.0.1",
            "smtp_port": self.smtp.port,
            "smtp_security": "starttls",
            "imap_host": "127.0.0.1",
            "imap_port": self.dovecot.port,
            "imap_security": "ssl",
            "username": user,
        }
        values.update(overrides)
        return MailboxSpec(**values)

    def smtp_factory(self, config: MailboxConfig) -> Any:
        return mailbox.open_smtp(config.spec, config.secret, self.cert.client_context)

    def imap_factory(self, config: MailboxConfig) -> imapclient.IMAPClient:
        return mailbox.open_imap(config.spec, config.secret, self.cert.client_context)


@contextmanager
def running_tenant(cluster: RunningCluster) -> Iterator[Tenant]:
    """A migrated tenant on the cluster, set up and unsealed, with one workspace."""
    migrate(cluster.conninfo())
    conn = psycopg.connect(app_conninfo(cluster.conninfo()), autocommit=True)
    vault = Vault()
    key, _ = vault.initialise(conn, PASSPHRASE)
    vault.adopt(key)
    workspace_id = int(workspaces.create(conn, "default", "eu")["id"])
    try:
        yield Tenant(cluster, conn, key, workspace_id, vault)
    finally:
        conn.close()


@contextmanager
def own_cluster(work_root: Path, template: Path, bindir: Path) -> Iterator[RunningCluster]:
    """A cluster like conftest's `pg_cluster`, for fixtures wider than one test."""
    name = uuid.uuid4().hex[:10]
    ids = pgcluster.run_as()
    data_dir = work_root / name / "pgdata"
    pgcluster.clone(template, data_dir, ids)
    cluster = pgcluster.Cluster(data_dir, work_root / name / "run", free_port())
    running = RunningCluster(cluster, pgcluster.start(cluster, bindir, ids))
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(work_root / name, ignore_errors=True)


@contextmanager
def mail_servers(work_root: Path) -> Iterator[MailWorld]:
    """Dovecot and aiosmtpd for the two sales mailboxes; SMTP files copies in Sent."""
    cert = make_cert(work_root / f"cert-{uuid.uuid4().hex[:8]}")
    server = Dovecot(work_root / f"dovecot-{uuid.uuid4().hex[:8]}", cert, USERS)
    users = dict(USERS)

    def file_sent(user: str, raw: bytes) -> None:
        server.deliver(user, users[user], raw, "Sent")

    handler = SmtpHandler(users=dict(users), file_sent=file_sent)
    smtp = SmtpServer(handler, cert)
    try:
        yield MailWorld(server, smtp, handler, cert, users)
    finally:
        smtp.stop()
        server.stop()
