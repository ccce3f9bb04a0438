"""TLS ends inside the tenant: `paitho-tenant serve --tls-cert/--tls-key` answers HTTPS with the
tenant's own certificate (the production edge passes bytes through by SNI)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import RunningCluster, free_port
from tests.functional.test_tenant_support import (
    tenant_cluster,  # noqa: F401  (fixture)
    tenant_template,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.functional


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme.localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("acme.localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_serve_over_tls_with_the_tenants_certificate(
    tenant_cluster: RunningCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    """HTTPS /healthz verifies against the tenant's certificate; plain HTTP is not served."""
    cert, key = _self_signed(tmp_path)
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
