"""The nightly workflows on the local platform: the .asl.json machines run on the local
endpoint and each tenant backs itself up, encrypted to its customer's public key."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def test_backup_and_retention_workflows_from_the_cli(stack: Stack) -> None:
    """`paitho workflows run backup`: the tenant with a recipient key gets an encrypted backup,
    a tenant without one is recorded failed; retention runs over all."""
    stack.paitho("tenants", "create", "vaulted")
    stack.paitho("tenants", "create", "keyless")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (stack.home / "tenants" / "vaulted" / "backup-recipient.pem").write_bytes(pem)

    done = stack.paitho("workflows", "run", "backup")
    assert "execution SUCCEEDED" in done.stdout, done.stdout
    rows = {
        name: line
        for line in done.stdout.splitlines()
        for name in ("vaulted", "keyless")
        if f" {name} " in line
    }
    assert "succeeded" in rows["vaulted"]
    # (moto drops a task failure's cause, so the reason itself reaches the ledger only on AWS)
    assert "failed" in rows["keyless"]
    objects = [p for p in (stack.home / "backups" / "vaulted").rglob("*") if p.is_file()]
    assert objects, "no backup object written"
    assert all(b"PGDMP" not in p.read_bytes()[:4096] for p in objects)  # not a plain dump

    retention = stack.paitho("workflows", "run", "retention")
    assert "execution SUCCEEDED" in retention.stdout, retention.stdout
