"""Vault lifecycle through the real HTTP app on a real cluster: setup, seal, unlock, rotate."""

from __future__ import annotations

import pytest

from tests.conftest import RunningCluster
from tests.functional.test_tenant_support import (
    STRONG,
    client_for,
    make_app,
    set_up,
    superuser_conn,
    tenant_cluster,  # noqa: F401  (fixture)
    tenant_template,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.functional


def test_setup_generates_passphrase_and_restart_is_sealed(tenant_cluster: RunningCluster) -> None:
    """A generated passphrase is returned once; a new process starts sealed and unlocks with it."""
    with client_for(make_app(tenant_cluster)) as client:
        assert client.get("/healthz").json() == {"state": "uninitialized"}
        passphrase = set_up(client, passphrase=None)
        assert len(passphrase.split("-")) == 7
        assert client.get("/healthz").json() == {"state": "unsealed"}
        assert client.post("/setup", json={"owner_email": "x@y.z", "owner_password": "p" * 12}).status_code == 409
    with client_for(make_app(tenant_cluster)) as client:
        assert client.get("/healthz").json() == {"state": "sealed"}
        assert client.post("/login", json={"email": "owner@acme.test", "password": "owner-password-123"}).status_code == 423
        assert client.post("/unlock", json={"passphrase": passphrase}).status_code == 204
        assert client.get("/healthz").json() == {"state": "unsealed"}


def test_wrong_passphrase_is_401_audited_and_decrypts_nothing(tenant_cluster: RunningCluster) -> None:
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


def test_weak_customer_passphrase_is_refused(tenant_cluster: RunningCluster) -> None:
    """A short or predictable passphrase is refused at setup with 400 and nothing is stored."""
    with client_for(make_app(tenant_cluster)) as client:
        for weak in ("short", "aaaaaaaaaaaaaaaaaaaaaaaa", "my-password-is-long-enough"):
            response = client.post(
                "/setup",
                json={"owner_email": "o@acme.test", "owner_password": "owner-password-123", "passphrase": weak},
            )
            assert response.status_code == 400, weak
        assert client.get("/healthz").json() == {"state": "uninitialized"}
