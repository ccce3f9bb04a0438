"""Fixtures shared by the backup tests: a tenant-like database with ciphertext and canary
markers, the customer's RSA key pair, a real OpenSSH server on loopback, full-table exports."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from psycopg import sql

from tests.conftest import free_port

TENANT_DB = "tenant"


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_pem: bytes
    private_file: Path
    public_file: Path


@pytest.fixture(scope="session", name="customer_keys")
def customer_keys_fixture() -> Iterator[KeyPair]:
    """The customer's RSA key pair; the operator side only ever gets public_pem."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    root = Path(tempfile.mkdtemp(prefix="paitho-keys-"))
    (root / "backup-key.pem").write_bytes(private_pem)
    (root / "backup-key.pub.pem").write_bytes(public_pem)
    yield KeyPair(private_pem, public_pem, root / "backup-key.pem", root / "backup-key.pub.pem")
    shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class TenantDb:
    conninfo: str
    column_key: str
    secret_markers: tuple[str, ...]  # stored only as pgp_sym_encrypt ciphertext
    plain_marker: str  # stored in clear in an unencrypted column (the control)


def make_tenant_db(cluster: Any, rows: int = 50) -> TenantDb:
    """Create a database shaped like a tenant's: ciphertext columns, an app role, an audit
    table with a trigger; every marker value travels only as a bind parameter."""
    with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TENANT_DB)))
        conn.execute("CREATE ROLE tenant_app LOGIN")
    column_key = uuid.uuid4().hex + uuid.uuid4().hex
    secrets = tuple(f"CANARY-SECRET-{uuid.uuid4().hex}" for _ in range(3))
    plain = f"CANARY-PLAIN-{uuid.uuid4().hex}"
    conninfo = cluster.conninfo(TENANT_DB)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pgcrypto")
        conn.execute(
            "CREATE TABLE leads (id bigserial PRIMARY KEY, email bytea NOT NULL, "
            "note bytea, company text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            "CREATE TABLE audit_log (id bigserial PRIMARY KEY, action text NOT NULL, "
            "prev_hash bytea, at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            "CREATE FUNCTION audit_no_update() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RAISE EXCEPTION 'audit log is append-only'; END$$"
        )
        conn.execute(
            "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_no_update()"
        )
        conn.execute("GRANT SELECT, INSERT ON leads, audit_log TO tenant_app")
        opts = "cipher-algo=aes256, s2k-mode=1"
        for i in range(rows):
            marker = secrets[i % len(secrets)]
            conn.execute(
                "INSERT INTO leads (email, note, company) VALUES "
                "(pgp_sym_encrypt(%s, %s, %s), pgp_sym_encrypt(%s, %s, %s), %s)",
                (
                    f"{marker}@example.org",
                    column_key,
                    opts,
                    marker,
                    column_key,
                    opts,
                    f"{plain} {i}",
                ),
            )
            conn.execute(
                "INSERT INTO audit_log (action, prev_hash) VALUES (%s, digest(%s, 'sha256'))",
                (f"login {i}", str(i)),
            )
    return TenantDb(conninfo, column_key, secrets, plain)


def export_all(conninfo: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the public schema, in primary-key order, plus roles."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(conninfo) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        for table in tables:
            out[table] = conn.execute(
                sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(table))
            ).fetchall()
        out["_grants"] = conn.execute(
            "SELECT grantee, table_name, privilege_type FROM information_schema.table_privileges "
            "WHERE table_schema = 'public' ORDER BY 1, 2, 3"
        ).fetchall()
        out["_triggers"] = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1"
        ).fetchall()
    return out


def decrypt_emails(conninfo: str, column_key: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT pgp_sym_decrypt(email, %s) FROM leads ORDER BY id", (column_key,)
            )
        ]


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    keys: Path  # client key and known_hosts
    data: Path  # a directory the SSH user may write

    def url(self, path: Path, port: int | None = None) -> str:
        return (
            f"sftp://{self.user}@127.0.0.1:{port or self.port}{path}"
            f"?key={self.keys / 'client_key'}&known_hosts={self.keys / 'known_hosts'}"
        )


@pytest.fixture(scope="session", name="sshd")
def sshd_fixture() -> Iterator[SshServer]:
    """A real OpenSSH server on a loopback port: throwaway host key, one authorized key."""
    binary = Path("/usr/sbin/sshd")
    assert binary.exists(), "openssh-server is missing: run `make bootstrap`"
    root = Path(tempfile.mkdtemp(prefix="paitho-sshd-"))
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True
        )
    shutil.copy(root / "client_key.pub", root / "authorized_keys")
    port = free_port()
    host_pub = (root / "host_key.pub").read_text().split()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nLogLevel ERROR\n"
        "Subsystem sftp internal-sftp\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.Popen(
        [str(binary), "-D", "-e", "-f", str(root / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                proc.kill()
                raise RuntimeError(f"sshd did not start: {err}") from None
            time.sleep(0.05)
    data = root / "data"
    data.mkdir()
    try:
        yield SshServer(port, getpass.getuser(), root, data)
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
        shutil.rmtree(root, ignore_errors=True)
