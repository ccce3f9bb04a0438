"""Connections to a customer's mailbox: SMTP (implicit TLS, STARTTLS, plain only on loopback)
and IMAP with imapclient, with a password or SASL XOAUTH2, and the check that runs when a
mailbox is saved. Each failure names the check that failed (dns, tcp, tls, auth, folder) and
never quotes the password; server replies are trimmed and kept only when they hold no address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from paitho_tenant.outbound.errors import MailboxCheckFailed
from paitho_tenant.outbound.store import MailboxSpec

log = logging.getLogger(__name__)

TIMEOUT = 20.0
SslFactory = Callable[[], ssl.SSLContext]


def default_ssl() -> ssl.SSLContext:
    return ssl.create_default_context()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _xoauth2(user: str, token: str) -> str:
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def _plain_allowed(host: str, security: str, what: str) -> None:
    if security == "none" and not is_loopback(host):
        raise MailboxCheckFailed(
            "tls", f"{what} without TLS is allowed only on loopback: choose ssl or starttls"
        )


def open_smtp(
    spec: MailboxSpec, secret: str, ssl_factory: SslFactory = default_ssl, timeout: float = TIMEOUT
) -> smtplib.SMTP:
    """A logged-in SMTP session, or MailboxCheckFailed saying which step failed."""
    _plain_allowed(spec.smtp_host, spec.smtp_security, "SMTP")
    _resolve(spec.smtp_host, spec.smtp_port)
    context = ssl_factory()
    try:
        if spec.smtp_security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                spec.smtp_host, spec.smtp_port, timeout=timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(spec.smtp_host, spec.smtp_port, timeout=timeout)
    except ssl.SSLError as exc:
        raise MailboxCheckFailed(
            "tls", f"TLS handshake with the SMTP server failed: {exc.reason}"
        ) from exc
    except OSError as exc:
        raise MailboxCheckFailed(
            "tcp",
            f"cannot connect to the SMTP server on port {spec.smtp_port}: {exc.strerror or exc}",
        ) from exc
    try:
        smtp.ehlo()
        if spec.smtp_security == "starttls":
            if not smtp.has_extn("starttls"):
                raise MailboxCheckFailed("tls", "the SMTP server does not offer STARTTLS")
            smtp.starttls(context=context)
            smtp.ehlo()
        if spec.auth == "xoauth2":
            token = _xoauth2(spec.username, secret)
            smtp.auth("XOAUTH2", lambda challenge=None: token, initial_response_ok=True)
        elif "PLAIN" in smtp.esmtp_features.get("auth", "").upper().split():
            # One mechanism, one answer: smtplib's login() would try the others after a 535.
            smtp.user, smtp.password = spec.username, secret
            smtp.auth("PLAIN", smtp.auth_plain, initial_response_ok=True)
        else:
            smtp.login(spec.username, secret)
    except MailboxCheckFailed:
        smtp.close()
        raise
    except smtplib.SMTPAuthenticationError as exc:
        smtp.close()
        raise MailboxCheckFailed(
            "auth", f"the SMTP server refused the login ({exc.smtp_code}): check user and password"
        ) from exc
    except smtplib.SMTPNotSupportedError as exc:
        smtp.close()
        raise MailboxCheckFailed(
            "auth", "the SMTP server offers no login method we can use"
        ) from exc
    except ssl.SSLError as exc:
        smtp.close()
        raise MailboxCheckFailed(
            "tls", f"STARTTLS with the SMTP server failed: {exc.reason}"
        ) from exc
    except (smtplib.SMTPException, OSError) as exc:
        smtp.close()
        raise MailboxCheckFailed(
            "tcp", f"the SMTP conversation failed: {type(exc).__name__}"
        ) from exc
    return smtp


def open_imap(
    spec: MailboxSpec, secret: str, ssl_factory: SslFactory = default_ssl, timeout: float = TIMEOUT
) -> imapclient.IMAPClient:
    """A logged-in IMAP session, or MailboxCheckFailed saying which step failed."""
    _plain_allowed(spec.imap_host, spec.imap_security, "IMAP")
    _resolve(spec.imap_host, spec.imap_port)
    context = ssl_factory()
    try:
        client = imapclient.IMAPClient(
            spec.imap_host,
            port=spec.imap_port,
            ssl=spec.imap_security == "ssl",
            ssl_context=context,
            timeout=timeout,
        )
    except ssl.SSLError as exc:
        raise MailboxCheckFailed(
            "tls", f"TLS handshake with the IMAP server failed: {exc.reason}"
        ) from exc
    except OSError as exc:
        raise MailboxCheckFailed(
            "tcp",
            f"cannot connect to the IMAP server on port {spec.imap_port}: {exc.strerror or exc}",
        ) from exc
    try:
        if spec.imap_security == "starttls":
            client.starttls(context)
        if spec.auth == "xoauth2":
            client.oauth2_login(spec.username, secret)
        else:
            client.login(spec.username, secret)
    except LoginError as exc:
        _logout(client)
        raise MailboxCheckFailed(
            "auth", "the IMAP server refused the login: check user and password"
        ) from exc
    except ssl.SSLError as exc:
        _logout(client)
        raise MailboxCheckFailed(
            "tls", f"STARTTLS with the IMAP server failed: {exc.reason}"
        ) from exc
    except (IMAPClientError, OSError) as exc:
        _logout(client)
        raise MailboxCheckFailed(
            "tcp", f"the IMAP conversation failed: {type(exc).__name__}"
        ) from exc
    return client


def _logout(client: imapclient.IMAPClient) -> None:
    try:
        client.logout()
    except (IMAPClientError, OSError):
        with contextlib.suppress(OSError):
            client.shutdown()


def _resolve(host: str, port: int) -> None:
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise MailboxCheckFailed("dns", f"the host name {host!r} does not resolve") from exc


def sent_folder(client: imapclient.IMAPClient) -> str:
    """The Sent folder by SPECIAL-USE, else by common names; MailboxCheckFailed otherwise."""
    try:
        found = client.find_special_folder(imapclient.imapclient.SENT)
    except IMAPClientError:
        found = None
    if found:
        return str(found)
    names = {str(f[2]).lower(): str(f[2]) for f in client.list_folders()}
    for candidate in ("sent", "sent items", "sent messages", "inbox.sent", "[gmail]/sent mail"):
        if candidate in names:
            return names[candidate]
    raise MailboxCheckFailed("folder", "the mailbox has no Sent folder the engine can use")


@dataclass(frozen=True)
class CheckResult:
    sent_folder: str
    idle: bool


def check(spec: MailboxSpec, secret: str, ssl_factory: SslFactory = default_ssl) -> CheckResult:
    """Test both connections the way the engine will use them."""
    smtp = open_smtp(spec, secret, ssl_factory)
    try:
        smtp.noop()
    finally:
        try:
            smtp.quit()
        except smtplib.SMTPException:
            smtp.close()
    client = open_imap(spec, secret, ssl_factory)
    try:
        try:
            client.select_folder("INBOX", readonly=True)
        except IMAPClientError as exc:
            raise MailboxCheckFailed(
                "folder", "the mailbox has no INBOX the engine can read"
            ) from exc
        folder = sent_folder(client)
        idle = client.has_capability("IDLE")
    finally:
        _logout(client)
    log.info("mailbox check passed (idle=%s)", idle)
    return CheckResult(folder, idle)
