"""Transactional email (verification, password reset, system notices) behind one interface.

    Mailer.send(to, subject, text)
    ├── SesMailer        Amazon SES through an injected boto3 client (moto in tests)
    ├── SmtpMailer       SMTP to the local sink that `make up` runs (chalicelib/mailsink.py)
    └── MemoryMailer     an outbox in memory, for unit tests

Never used for outbound to a customer's prospects: it only writes to the person who signed up.
Message bodies are never logged.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import PaithoError

log = logging.getLogger(__name__)


class MailError(PaithoError):
    status = 502


class Mailer(Protocol):
    def send(self, to: str, subject: str, text: str) -> None: ...


def compose(sender: str, to: str, subject: str, text: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    plain = text.isascii() and max(map(len, text.splitlines() or [""])) <= 900
    # 7bit keeps links whole in the saved .eml (no quoted-printable soft breaks to undo).
    msg.set_content(text, cte="7bit" if plain else None)
    return msg


class SesMailer:
    def __init__(self, ses: Any, sender: str) -> None:
        self._ses = ses
        self._sender = sender

    def send(self, to: str, subject: str, text: str) -> None:
        msg = compose(self._sender, to, subject, text)
        try:
            self._ses.send_raw_email(
                Source=self._sender, Destinations=[to], RawMessage={"Data": msg.as_bytes()}
            )
        except (ClientError, BotoCoreError) as exc:
            code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else "unavailable"
            raise MailError(f"SES did not accept the message ({code})") from exc
        log.info("mail sent via SES subject=%r", subject)


class SmtpMailer:
    def __init__(self, host: str, port: int, sender: str, timeout: float = 10.0) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._timeout = timeout

    def send(self, to: str, subject: str, text: str) -> None:
        msg = compose(self._sender, to, subject, text)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(
                f"the mail server at {self._host}:{self._port} did not accept the message "
                f"({type(exc).__name__}); is `make up` running?"
            ) from exc
        log.info("mail sent via SMTP subject=%r", subject)


@dataclass(frozen=True)
class SentMail:
    to: str
    subject: str
    text: str


class MemoryMailer:
    def __init__(self) -> None:
        self.outbox: list[SentMail] = []
        self._lock = threading.Lock()

    def send(self, to: str, subject: str, text: str) -> None:
        with self._lock:
            self.outbox.append(SentMail(to, subject, text))

    def last_to(self, to: str) -> SentMail | None:
        with self._lock:
            for mail in reversed(self.outbox):
                if mail.to == to:
                    return mail
        return None
