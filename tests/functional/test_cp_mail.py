"""Transactional mail over real transports: SMTP into the local sink (saved as .eml files and
read back by `paitho mail list/last`), and Amazon SES through moto's server."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.mailer import MailError, SesMailer, SmtpMailer
from chalicelib.mailsink import MailSink, last_mail, list_mail, message_text, start_mail_sink
from tests.cp_support import FakeTenants, client_for, link_from, plane, post_form, signup_fields

pytestmark = pytest.mark.functional


@pytest.fixture
def home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="paitho-mail-") as d:
        yield Path(d)


@pytest.fixture
def sink(home: Path) -> Iterator[MailSink]:
    handle = start_mail_sink(home)
    yield handle
    handle.stop()


def test_the_sink_saves_each_message_as_an_eml_file(home: Path, sink: MailSink) -> None:
    """Two messages over SMTP become two .eml files under home/mail, listed oldest first."""
    mailer = SmtpMailer("127.0.0.1", sink.port, "Paitho <no-reply@paitho.localhost>")
    mailer.send("ann@example.com", "First", "one")
    mailer.send("bob@example.com", "Second", "two")
    files = sorted((home / "mail").glob("*.eml"))
    assert len(files) == 2 and all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    summaries = list_mail(home)
    assert [(m.to, m.subject) for m in summaries] == [
        ("ann@example.com", "First"),
        ("bob@example.com", "Second"),
    ]


def test_last_mail_finds_the_newest_message_to_an_address(home: Path, sink: MailSink) -> None:
    """`last_mail` returns the newest message for the address (case-insensitive) or None."""
    mailer = SmtpMailer("127.0.0.1", sink.port, "no-reply@paitho.localhost")
    mailer.send("ann@example.com", "Old", "old body")
    mailer.send("bob@example.com", "Other", "x")
    mailer.send("ann@example.com", "New", "new body")
    msg = last_mail(home, "ANN@example.com")
    assert msg is not None and msg["Subject"] == "New"
    assert message_text(msg).strip() == "new body"
    assert last_mail(home, "nobody@example.com") is None
    assert last_mail(home / "missing", "ann@example.com") is None


def test_smtp_to_a_closed_port_is_a_clear_error(home: Path) -> None:
    """With no sink listening, sending raises MailError naming the server, without the body."""
    handle = start_mail_sink(home)
    port = handle.port
    handle.stop()
    with pytest.raises(MailError, match=f"127.0.0.1:{port}") as info:
        SmtpMailer("127.0.0.1", port, "no-reply@x.test", timeout=2).send("a@b.co", "S", "SECRET")
    assert "SECRET" not in str(info.value)


def test_signup_over_the_routes_delivers_a_working_link_through_the_sink(
    home: Path, sink: MailSink
) -> None:
    """The verification mail arrives in the sink and its link provisions the tenant."""
    tenants = FakeTenants()
    cp = plane(
        mailer=SmtpMailer("127.0.0.1", sink.port, "no-reply@paitho.localhost"), tenants=tenants
    )
    client = client_for(cp)
    assert post_form(client, "/signup", signup_fields()).status_code == 200
    msg = last_mail(home, "ann@example.com")
    assert msg is not None
    token = link_from(message_text(msg), "/verify")
    resp = client.http.get(f"/verify?token={token}", headers={"Host": "localhost:8000"})
    assert resp.headers["Location"] == "http://acme.localhost:8000/setup"
    assert "acme" in tenants.records


def test_ses_mailer_sends_from_a_verified_identity(aws_client: Any, unique: str) -> None:
    """With the sender verified, SES accepts the raw message addressed to the person."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    ses = aws_client("ses")
    sender = f"no-reply-{unique}@paitho.test"
    ses.verify_email_identity(EmailAddress=sender)
    SesMailer(ses, sender).send("ann@example.com", f"Confirm {unique}", "link")
    sent = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
    mine = [m for m in sent if f"Confirm {unique}".encode() in m.raw_data.encode()]
    assert len(mine) == 1 and mine[0].source == sender
    assert set(mine[0].destinations) == {"ann@example.com"}


def test_ses_refuses_an_unverified_sender(aws_client: Any, unique: str) -> None:
    """An unverified sender raises MailError with SES's error code, not a botocore error."""
    ses = aws_client("ses")
    with pytest.raises(MailError, match="MessageRejected"):
        SesMailer(ses, f"nobody-{unique}@unverified.test").send("a@example.com", "S", "body")
