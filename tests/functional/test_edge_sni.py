"""The production edge, infra/aws/haproxy-sni.cfg, run as-is on loopback: TLS routed by SNI and
passed through to the tenant, which alone holds its private key."""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paitho_local import edge

from tests.conftest import free_port

pytestmark = pytest.mark.functional

SNI_CFG = Path(__file__).resolve().parents[2] / "infra" / "aws" / "haproxy-sni.cfg"

TENANT_SERVER = """
import http.server, ssl, sys
cert, key, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"tenant acme over its own TLS"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.handle_error = lambda *args: None
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
"""


@dataclass
class Pki:
    ca_pem: Path
    cert_der: bytes
    key: ec.EllipticCurvePrivateKey
    key_pem: bytes

    def key_needles(self) -> list[bytes]:
        """Byte strings that betray the private key: its PEM body, DER, and raw scalar."""
        scalar = self.key.private_numbers().private_value
        der = self.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        body = b"".join(self.key_pem.splitlines()[1:-1])
        return [
            b"PRIVATE KEY",
            der,
            body[:48],
            scalar.to_bytes(32, "big"),
            scalar.to_bytes(32, "little"),
        ]


def make_pki(tenant_dir: Path, host: str) -> Pki:
    """A throwaway CA and one tenant certificate for `host`, written into `tenant_dir`."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Paitho test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ca_pem = tenant_dir.parent / "ca.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (tenant_dir / "tenant.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tenant_dir / "tenant.key").write_bytes(key_pem)
    return Pki(ca_pem, cert.public_bytes(serialization.Encoding.DER), key, key_pem)


def files_containing(directory: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_socket():
            data = path.read_bytes()
            hits += [path.name for needle in needles if needle in data]
    return hits


def memory_contains(pid: int, needles: list[bytes]) -> bool:
    """Whether any readable mapping of process `pid` holds one of `needles`."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            if any(needle in data for needle in needles):
                return True
    return False


@dataclass
class SniEdge:
    files: edge.EdgeFiles
    proc: subprocess.Popen[bytes]
    port: int
    tenant_port: int
    tenant: subprocess.Popen[bytes]
    pki: Pki
    edge_dir: Path
    tenant_dir: Path

    def connect(self, server_name: str | None) -> ssl.SSLSocket:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_pem))
        if server_name is None:
            ctx.check_hostname = False
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        try:
            return ctx.wrap_socket(sock, server_hostname=server_name)
        except BaseException:
            sock.close()
            raise

    def add_route(self, host: str) -> None:
        reply = edge.admin_command(
            self.files, f"add map {self.files.map_path} {host} 127.0.0.1:{self.tenant_port}"
        )
        assert reply.strip() == "", reply


@pytest.fixture
def sni_edge() -> Iterator[SniEdge]:
    root = Path(tempfile.mkdtemp(prefix="ps-"))
    edge_dir, tenant_dir = root / "edge", root / "tenant"
    edge_dir.mkdir(mode=0o700)
    tenant_dir.mkdir(mode=0o700)
    pki = make_pki(tenant_dir, "acme.localhost")
    tenant_port, port = free_port(), free_port()
    tenant = subprocess.Popen(
        [sys.executable, "-c", TENANT_SERVER, str(tenant_dir / "tenant.pem"),
         str(tenant_dir / "tenant.key"), str(tenant_port)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert tenant.stdout is not None and tenant.stdout.readline().strip() == b"ready"
    files = edge.EdgeFiles(
        cfg_path=SNI_CFG,
        map_path=edge_dir / "sni.map",
        admin_socket=edge_dir / "admin.sock",
        pid_path=edge_dir / "haproxy.pid",
    )
    files.map_path.write_text("# host ip:port\n")
    env = dict(
        os.environ,
        PAITHO_EDGE_BIND=f"127.0.0.1:{port}",
        PAITHO_EDGE_SNI_MAP=str(files.map_path),
        PAITHO_EDGE_ADMIN_SOCKET=str(files.admin_socket),
        PAITHO_EDGE_PIDFILE=str(files.pid_path),
    )
    proc = subprocess.Popen(
        edge.haproxy_argv(files), env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        edge.wait_ready(files, 10, proc)
        yield SniEdge(files, proc, port, tenant_port, tenant, pki, edge_dir, tenant_dir)
    finally:
        edge.stop(proc)
        tenant.kill()
        tenant.wait()
        assert tenant.stdout is not None
        tenant.stdout.close()
        shutil.rmtree(root, ignore_errors=True)


def test_edge_sni_passes_tls_through_to_the_tenant(sni_edge: SniEdge) -> None:
    """Through the edge the client verifies the tenant's own certificate and gets its answer."""
    sni_edge.add_route("acme.localhost")
    with sni_edge.connect("acme.localhost") as tls:
        assert tls.getpeercert(binary_form=True) == sni_edge.pki.cert_der
        tls.sendall(b"GET / HTTP/1.1\r\nHost: acme.localhost\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := tls.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"tenant acme over its own TLS")


def test_edge_sni_refuses_unknown_or_missing_server_names(sni_edge: SniEdge) -> None:
    """An unknown SNI, no SNI, or plain text is refused without any certificate being shown."""
    with pytest.raises((ssl.SSLError, ConnectionError)):
        sni_edge.connect("acme.localhost").close()  # not routed yet
    sni_edge.add_route("acme.localhost")
    for name in ("other.localhost", None):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            sni_edge.connect(name).close()
    with socket.create_connection(("127.0.0.1", sni_edge.port), timeout=5) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\nHost: acme.localhost\r\n\r\n")
        with contextlib.suppress(ConnectionError):  # closed: reset or end of stream
            assert plain.recv(4096) == b""
    sni_edge.connect("acme.localhost").close()  # the known name still works


def test_edge_sni_holds_no_tenant_private_key(sni_edge: SniEdge) -> None:
    """No private key in the edge's files, its configuration or its memory; only the tenant's."""
    sni_edge.add_route("acme.localhost")
    sni_edge.connect("acme.localhost").close()
    needles = sni_edge.pki.key_needles()
    # The scanners find the key where it is: in the tenant's directory and process.
    assert files_containing(sni_edge.tenant_dir, needles)
    assert memory_contains(sni_edge.tenant.pid, needles[3:])
    assert files_containing(sni_edge.edge_dir, needles) == []
    config = SNI_CFG.read_bytes()
    assert not any(needle in config for needle in needles)
    worker = edge.running_pid(sni_edge.files)
    assert worker is not None
    for pid in (sni_edge.proc.pid, worker):
        assert not memory_contains(pid, needles[3:]), f"HAProxy process {pid} holds the key"
    directives = [line.split("#", 1)[0].split() for line in SNI_CFG.read_text().splitlines()]
    words = {word for tokens in directives for word in tokens}
    assert not words & {"crt", "crt-list", "ssl", "key", "ca-file", "crt-base", "key-base"}
