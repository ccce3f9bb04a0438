"""Saving a mailbox tests SMTP and IMAP against real servers on loopback and names the check
that failed: dns, tcp, tls, auth or folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from paitho_tenant.outbound import mailbox
from paitho_tenant.outbound.errors import MailboxCheckFailed

from tests.functional.outbound_servers import SmtpHandler, SmtpServer
from tests.functional.outbound_support import MailWorld, mail_servers

pytestmark = pytest.mark.functional


@pytest.fixture
def mail_world(work_root: Path) -> Iterator[MailWorld]:
    with mail_servers(work_root) as world:
        yield world


USER = "sales1@acme.test"


def _check(world: MailWorld, password: str | None = None, **overrides: object) -> object:
    spec = world.spec(USER, **overrides)
    return mailbox.check(spec, password or world.users[USER], world.cert.client_context)


def test_starttls_and_imaps_pass(mail_world: MailWorld) -> None:
    """STARTTLS SMTP with AUTH and IMAP over TLS pass; the Sent folder and IDLE are found."""
    result = _check(mail_world)
    assert isinstance(result, mailbox.CheckResult)
    assert result.sent_folder == "Sent"
    assert result.idle


def test_implicit_tls_smtp_and_starttls_imap_pass(mail_world: MailWorld) -> None:
    """Implicit TLS (465 style) SMTP and STARTTLS IMAP pass too."""
    ssl_server = SmtpServer(
        SmtpHandler(users=dict(mail_world.users)), mail_world.cert, implicit_tls=True
    )
    try:
        result = _check(
            mail_world,
            smtp_port=ssl_server.port,
            smtp_security="ssl",
            imap_port=mail_world.dovecot.starttls_port,
            imap_security="starttls",
        )
    finally:
        ssl_server.stop()
    assert isinstance(result, mailbox.CheckResult)


@pytest.mark.parametrize(
    ("overrides", "password", "check"),
    [
        ({}, "wrong-password", "auth"),
        ({"smtp_port": 1}, None, "tcp"),
        ({"imap_port": 1}, None, "tcp"),
        ({"smtp_host": "no-such-host.invalid"}, None, "dns"),
        ({"smtp_security": "none", "smtp_host": "192.0.2.1"}, None, "tls"),
        ({"imap_security": "ssl", "imap_port": "STARTTLS_PORT"}, None, "tls"),
        ({"smtp_security": "ssl"}, None, "tls"),
    ],
)
def test_failures_name_the_check(
    mail_world: MailWorld, overrides: dict[str, object], password: str | None, check: str
) -> None:
    """Each failure says which check failed and never quotes the password."""
    overrides = {
        k: (mail_world.dovecot.starttls_port if v == "STARTTLS_PORT" else v)
        for k, v in overrides.items()
    }
    with pytest.raises(MailboxCheckFailed) as info:
        _check(mail_world, password, **overrides)
    assert info.value.check == check
    assert (password or mail_world.users[USER]) not in info.value.message


def test_untrusted_certificate_is_a_tls_failure(mail_world: MailWorld) -> None:
    """A server certificate the client does not trust fails the tls check."""
    spec = mail_world.spec(USER)
    with pytest.raises(MailboxCheckFailed) as info:
        mailbox.check(spec, mail_world.users[USER], mailbox.default_ssl)
    assert info.value.check == "tls"


def test_missing_sent_folder_fails_the_folder_check(mail_world: MailWorld) -> None:
    """Without a usable Sent folder the engine cannot settle after a crash: refused."""
    client = mailbox.open_imap(
        mail_world.spec(USER), mail_world.users[USER], mail_world.cert.client_context
    )
    try:
        assert mailbox.sent_folder(client) == "Sent"
        client.delete_folder("Sent")
        client.create_folder("Archive")
        with pytest.raises(MailboxCheckFailed) as info:
            mailbox.sent_folder(client)
    finally:
        client.logout()
    assert info.value.check == "folder"


def test_xoauth2_smtp_login(mail_world: MailWorld) -> None:
    """SASL XOAUTH2 logs in with a bearer token where the provider asks for OAuth."""
    handler = mail_world.handler
    handler.users["oauth@acme.test"] = "ya29.token-value"
    spec = dataclasses.replace(
        mail_world.spec("oauth@acme.test"), auth="xoauth2", username="oauth@acme.test"
    )
    smtp = mailbox.open_smtp(spec, "ya29.token-value", mail_world.cert.client_context)
    smtp.quit()
    with pytest.raises(MailboxCheckFailed) as info:
        mailbox.open_smtp(spec, "wrong-token", mail_world.cert.client_context)
    assert info.value.check == "auth"
