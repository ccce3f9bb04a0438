"""Real mail servers on loopback for the outbound tests: aiosmtpd (STARTTLS or implicit TLS,
AUTH required) and Dovecot IMAP from the distribution, run as an unprivileged user with a
configuration written here. A throwaway certificate (made with `cryptography`) serves both.

The SMTP server behaves like Gmail or Microsoft 365 for the exactly-once tests: every message
it accepts is filed in the sender's Sent folder (IMAP APPEND) before it answers 250.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import imaplib
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ORIGIN = "https://acme.paitho.test"


class Clock:
    """The engine's injectable clock."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += dt.timedelta(**kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


def make_cert(directory: Path) -> Cert:
    """A self-signed certificate for localhost and 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Cert(cert_path, key_path)


# -- Dovecot ------------------------------------------------------------------------------------
_DOVECOT_CONF = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = paitho-test-{port}
log_path = {root}/dovecot.log
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
auth_mechanisms = plain login
disable_plaintext_auth = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={user} gid={group} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {starttls_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
  }}
}}
"""


def _run_as() -> tuple[int, int, str, str]:
    """Dovecot runs unprivileged: as `paitho` when we are root, else as ourselves."""
    entry = pwd.getpwnam("paitho") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    import grp

    return entry.pw_uid, entry.pw_gid, entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name


class Dovecot:
    def __init__(self, root: Path, cert: Cert, users: dict[str, str]) -> None:
        self.root = root
        self.port = free_port()
        self.starttls_port = free_port()
        self.uid, self.gid, user, group = _run_as()
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "users").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in users.items()))
        conf = _DOVECOT_CONF.format(
            root=root,
            port=self.port,
            starttls_port=self.starttls_port,
            cert=cert.cert,
            key=cert.key,
            user=user,
            group=group,
        )
        (root / "dovecot.conf").write_text(conf)
        for path in [root, *root.rglob("*")]:
            os.chown(path, self.uid, self.gid)
        self.cert = cert
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        self.proc = subprocess.Popen(
            [binary, "-F", "-c", str(root / "dovecot.conf")],
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait()
        for user, password in users.items():
            self._create_sent(user, password)

    def _wait(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.root / "dovecot.log").read_text(errors="replace")
                raise RuntimeError(f"dovecot exited: {log[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("dovecot did not start listening")

    def _create_sent(self, user: str, password: str) -> None:
        """Every user gets a Sent folder (SPECIAL-USE \\Sent) beside the INBOX."""
        conn = self.imap(user, password)
        try:
            conn.create("Sent")
        finally:
            conn.logout()

    def imap(self, user: str, password: str) -> imaplib.IMAP4_SSL:
        conn = imaplib.IMAP4_SSL(
            "127.0.0.1", self.port, ssl_context=self.cert.client_context(), timeout=10
        )
        conn.login(user, password)
        return conn

    def deliver(self, user: str, password: str, raw: bytes, folder: str = "INBOX") -> None:
        conn = self.imap(user, password)
        try:
            conn.append(folder, None, None, raw)
        finally:
            conn.logout()

    def count(self, user: str, password: str, folder: str) -> int:
        conn = self.imap(user, password)
        try:
            _typ, data = conn.select(folder, readonly=True)
            return int(data[0] or 0)
        finally:
            conn.logout()

    def stop(self) -> None:
        """SIGTERM the master; if it lingers, SIGKILL its process group (it and its children)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(0.5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


# -- SMTP --------------------------------------------------------------------------------------
@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    user: str | None

    @property
    def message(self) -> Message:
        return message_from_bytes(self.raw)


@dataclass
class SmtpHandler:
    """Records what it accepts; refuses recipients by rule; files a copy in Sent."""

    users: dict[str, str]
    refuse: dict[str, int] = field(default_factory=dict)  # rcpt -> SMTP code
    file_sent: Callable[[str, bytes], None] | None = None
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        code = self.refuse.get(address.lower())
        if code is not None:
            text = "5.1.1 User unknown" if code >= 500 else "4.2.0 Try again later"
            return f"{code} {text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        user = (
            session.auth_data.login.decode()
            if isinstance(session.auth_data, LoginPassword)
            else None
        )
        if self.file_sent is not None and user is not None:
            self.file_sent(user, raw)
        with self.lock:
            self.received.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), raw, user)
            )
        return "250 2.0.0 Message accepted"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        import base64

        blob = args[1] if len(args) > 1 else ""
        decoded = base64.b64decode(blob).decode()
        fields = dict(p.split("=", 1) for p in decoded.split("\x01") if "=" in p)
        user, bearer = fields.get("user", ""), fields.get("auth", "")
        ok = bearer == f"Bearer {self.users.get(user)}"
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(user.encode(), b""))

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            ok = self.users.get(data.login.decode()) == data.password.decode()
            return AuthResult(success=ok, handled=False, auth_data=data if ok else None)
        return AuthResult(success=False, handled=False)

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)


class _ImplicitTlsSMTP(SMTP):
    """aiosmtpd counts only STARTTLS as TLS for AUTH; on port-465 style servers the whole
    channel is TLS from the first byte, so mark it as such."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if transport.get_extra_info("ssl_object") is not None:
            self._tls_protocol = transport


class _ImplicitTlsController(Controller):
    def factory(self) -> SMTP:
        return _ImplicitTlsSMTP(self.handler, **self.SMTP_kwargs)


class SmtpServer:
    def __init__(self, handler: SmtpHandler, cert: Cert, implicit_tls: bool = False) -> None:
        self.handler = handler
        self.port = free_port()
        kwargs: dict[str, Any] = {
            "authenticator": handler.authenticate,
            "auth_required": True,
            "auth_require_tls": True,
        }
        if implicit_tls:
            kwargs["ssl_context"] = cert.server_context()
        else:
            kwargs["tls_context"] = cert.server_context()
            kwargs["require_starttls"] = True
        controller_class = _ImplicitTlsController if implicit_tls else Controller
        self.controller = controller_class(handler, hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
