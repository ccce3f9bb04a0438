"""The HTTP contract (issue 3, point 8) against the real app: CSRF rule, session cookie,
security headers, OpenAPI, health when the database is gone, and `paitho-tenant serve` as the
local launcher starts it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningCluster, free_port
from tests.functional.test_tenant_support import (
    ORIGIN,
    client_for,
    make_app,
    set_up,
    tenant_cluster,  # noqa: F401  (fixture)
    tenant_template,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.functional


def test_csrf_rule_and_session_cookie(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """Mutations without our Origin or without X-Requested-With get 403; login sets an
    HttpOnly, SameSite=Strict session cookie; the API needs it."""
    with client_for(make_app(tenant_cluster)) as client:
        body = {"owner_email": "o@acme.test", "owner_password": "owner-password-123"}
        for headers in (
            {"Origin": "http://evil.example", "X-Requested-With": "XMLHttpRequest"},
            {"Origin": ORIGIN, "X-Requested-With": ""},
            {"X-Requested-With": "XMLHttpRequest", "Origin": ""},
        ):
            assert client.post("/setup", json=body, headers=headers).status_code == 403
        assert client.get("/healthz").json() == {"state": "uninitialized"}
        set_up(client)
        login = client.post(
            "/login", json={"email": "owner@acme.test", "password": "owner-password-123"}
        )
        set_cookie = login.headers["set-cookie"].lower()
        assert set_cookie.startswith("session=")
        assert (
            "httponly" in set_cookie and "samesite=strict" in set_cookie and "path=/" in set_cookie
        )
        assert client.get("/api/keychain").status_code == 200
        forged = client.post(
            "/api/keychain",
            json={"kind": "openai", "label": "x", "secret": "sk-1234567890123"},
            headers={"Origin": "http://evil.example"},
        )
        assert forged.status_code == 403
        anonymous = httpx.get(str(client.base_url.join("/api/keychain")))
        assert anonymous.status_code == 401


def test_unlock_form_needs_its_token(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """The HTML unlock form works with the token from its page and is refused without it."""
    with client_for(make_app(tenant_cluster)) as client:
        passphrase = set_up(client)
    with client_for(make_app(tenant_cluster)) as client:
        page = client.get("/unlock")
        token = page.text.split("name=csrf_token value='")[1].split("'")[0]
        form_headers = {"Origin": ORIGIN, "X-Requested-With": ""}
        refused = client.post(
            "/unlock", data={"passphrase": passphrase, "csrf_token": "nope"}, headers=form_headers
        )
        assert refused.status_code == 403
        assert client.get("/healthz").json() == {"state": "sealed"}
        ok = client.post(
            "/unlock", data={"passphrase": passphrase, "csrf_token": token}, headers=form_headers
        )
        assert ok.status_code == 303
        assert client.get("/healthz").json() == {"state": "unsealed"}


def test_security_headers_openapi_and_trust(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """Every response carries the CSP and friends; /openapi.json lists the contract."""
    with client_for(make_app(tenant_cluster)) as client:
        response = client.get("/trust")
        csp = response.headers["content-security-policy"]
        assert (
            "object-src 'none'" in csp
            and "frame-ancestors 'none'" in csp
            and "base-uri 'none'" in csp
        )
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "<script" not in response.text
        paths = client.get("/openapi.json").json()["paths"]
        for path in (
            "/healthz",
            "/setup",
            "/unlock",
            "/login",
            "/api/leads/import",
            "/api/keychain",
            "/api/export",
        ):
            assert path in paths


def test_healthz_is_503_when_the_database_is_gone(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """With the cluster stopped, /healthz answers 503 with a reason."""
    with client_for(make_app(tenant_cluster)) as client:
        assert client.get("/healthz").status_code == 200
        tenant_cluster.stop()
        response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["reason"]


def test_cli_serve_as_the_launcher_runs_it(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """`paitho-tenant serve` with PAITHO_TENANT_DB on a migrated clone answers /healthz fast,
    with core dumps disabled."""
    port = free_port()
    env = {
        **os.environ,
        "PAITHO_TENANT_DB": tenant_cluster.conninfo(),
        "PAITHO_TENANT_SLUG": "acme",
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paitho_tenant.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        state = None
        while time.monotonic() - started < 20:
            try:
                state = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
                break
            except httpx.TransportError:
                time.sleep(0.02)
        elapsed = time.monotonic() - started
        assert state == {"state": "uninitialized"}
        assert elapsed < 5, elapsed
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
        assert core.split()[4:6] == ["0", "0"], core
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
