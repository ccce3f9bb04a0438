"""Vault lifecycle through the real HTTP app on a real cluster: setup, seal, unlock, rotate."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from paitho_tenant.app import Settings, create_app

from tests.conftest import RunningCluster
from tests.functional.test_tenant_support import (
    ORIGIN,
    STRONG,
    client_for,
    make_app,
    set_up,
    superuser_conn,
    tenant_cluster,  # noqa: F401  (fixture)
    tenant_template,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.functional


def test_setup_generates_passphrase_and_restart_is_sealed(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """A generated passphrase is returned once; a new process starts sealed and unlocks with it."""
    with client_for(make_app(tenant_cluster)) as client:
        assert client.get("/healthz").json() == {"state": "uninitialized"}
        passphrase = set_up(client, passphrase=None)
        assert len(passphrase.split("-")) == 7
        assert client.get("/healthz").json() == {"state": "unsealed"}
        assert (
            client.post(
                "/setup", json={"owner_email": "x@y.z", "owner_password": "p" * 12}
            ).status_code
            == 409
        )
    with client_for(make_app(tenant_cluster)) as client:
        assert client.get("/healthz").json() == {"state": "sealed"}
        assert (
            client.post(
                "/login", json={"email": "owner@acme.test", "password": "owner-password-123"}
            ).status_code
            == 423
        )
        assert client.post("/unlock", json={"passphrase": passphrase}).status_code == 204
        assert client.get("/healthz").json() == {"state": "unsealed"}


def test_wrong_passphrase_is_401_audited_and_decrypts_nothing(
    tenant_cluster: RunningCluster,  # noqa: F811
) -> None:
    """A wrong passphrase answers 401, stays sealed, is audited, and API calls stay refused."""
    with client_for(make_app(tenant_cluster)) as client:
        set_up(client)
    with client_for(make_app(tenant_cluster)) as client:
        response = client.post("/unlock", json={"passphrase": STRONG + "-wrong"})
        assert response.status_code == 401
        assert client.get("/healthz").json() == {"state": "sealed"}
        assert client.get("/api/leads").status_code == 423
    with superuser_conn(tenant_cluster) as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY seq")]
    assert actions[-1] == "vault.unlock_failed"


def test_weak_customer_passphrase_is_refused(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """A short or predictable passphrase is refused at setup with 400 and nothing is stored."""
    with client_for(make_app(tenant_cluster)) as client:
        for weak in ("short", "aaaaaaaaaaaaaaaaaaaaaaaa", "my-password-is-long-enough"):
            response = client.post(
                "/setup",
                json={
                    "owner_email": "o@acme.test",
                    "owner_password": "owner-password-123",
                    "passphrase": weak,
                },
            )
            assert response.status_code == 400, weak
        assert client.get("/healthz").json() == {"state": "uninitialized"}


def test_failed_unlocks_are_delayed_more_each_time(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """Consecutive wrong passphrases are answered ever more slowly (0.5 s, then 1 s)."""
    with client_for(make_app(tenant_cluster)) as client:
        set_up(client)
    with client_for(make_app(tenant_cluster)) as client:
        durations = []
        for _ in range(3):
            started = time.monotonic()
            assert client.post("/unlock", json={"passphrase": "nope-" * 4}).status_code == 401
            durations.append(time.monotonic() - started)
        assert durations[1] >= 0.5 and durations[2] >= 1.0
        assert client.post("/unlock", json={"passphrase": STRONG}).status_code == 204


def test_self_hosted_unlock_file(tenant_cluster: RunningCluster, work_root: Path) -> None:  # noqa: F811
    """With the opt-in unlock file the app starts unsealed; a wrong file leaves it sealed."""
    with client_for(make_app(tenant_cluster)) as client:
        set_up(client)
    secret = work_root / f"unlock-{uuid.uuid4().hex}"
    secret.write_text(STRONG + "\n")
    secret.chmod(0o600)
    settings = Settings(admin_conninfo=tenant_cluster.conninfo(), origin=ORIGIN, unlock_file=secret)
    with client_for(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"state": "unsealed"}
    secret.write_text("wrong-wrong-wrong-wrong\n")
    with client_for(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"state": "sealed"}


def test_hosted_edition_refuses_the_unlock_file(work_root: Path) -> None:
    """`serve --unlock-file` exits with a usage error unless PAITHO_EDITION=self-hosted."""
    env = {k: v for k, v in os.environ.items() if k != "PAITHO_EDITION"}
    env["PAITHO_TENANT_DB"] = "host=/nonexistent port=1 user=postgres"
    proc = subprocess.run(
        [sys.executable, "-m", "paitho_tenant.cli", "serve", "--unlock-file", str(work_root / "x")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2 and "self-hosted opt-in" in proc.stderr
