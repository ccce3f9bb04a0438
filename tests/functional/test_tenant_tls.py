"""TLS ends inside the tenant: `paitho-tenant serve --tls-cert/--tls-key` answers HTTPS with the
tenant's own certificate (the production edge passes bytes through by SNI)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningCluster, free_port
from tests.functional.outbound_servers import make_cert
from tests.functional.test_tenant_support import (
    tenant_cluster,  # noqa: F401  (fixture)
    tenant_template,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.functional


def test_serve_over_tls_with_the_tenants_certificate(
    tenant_cluster: RunningCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    """HTTPS /healthz verifies against the tenant's certificate; plain HTTP is not served."""
    tls = make_cert(tmp_path)
    cert, key = tls.cert, tls.key
    port = free_port()
    env = {**os.environ, "PAITHO_TENANT_DB": tenant_cluster.conninfo()}
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
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 20
        answer = None
        while time.monotonic() < deadline and answer is None:
            try:
                answer = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trust, timeout=2)
            except httpx.TransportError:
                time.sleep(0.05)
        assert answer is not None and answer.status_code == 200
        assert answer.json() == {"state": "uninitialized"}
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        proc.terminate()
        proc.wait(10)


def test_certificate_without_key_is_refused(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """Half a TLS configuration is a usage error, not a silent plain-HTTP server."""
    env = {**os.environ, "PAITHO_TENANT_DB": tenant_cluster.conninfo()}
    done = subprocess.run(
        [sys.executable, "-m", "paitho_tenant.cli", "serve", "--tls-cert", "/nonexistent.crt"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "certificate and its key" in done.stderr
