"""The local mail sink behind `make up`: an SMTP server on loopback (aiosmtpd) that saves each
message as an `.eml` file under `home/mail/`, and the readers behind `paitho mail list` and
`paitho mail last --to ADDRESS`. Local use only; nothing here sends anything anywhere.
"""

from __future__ import annotations

import email.policy
import os
import secrets
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from chalicelib.errors import PlatformUnavailable


def mail_dir(home: Path) -> Path:
    return home / "mail"


class _SaveHandler:
    def __init__(self, directory: Path) -> None:
        self._dir = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        name = f"{time.time_ns():020d}-{secrets.token_hex(4)}.eml"
        tmp = self._dir / (name + ".tmp")
        data = envelope.content if isinstance(envelope.content, bytes) else b""
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        tmp.rename(self._dir / name)
        return "250 Message accepted for delivery"


@dataclass
class MailSink:
    port: int
    directory: Path
    _controller: Any

    def stop(self) -> None:
        self._controller.stop()


def start_mail_sink(home: Path, host: str = "127.0.0.1", port: int = 0) -> MailSink:
    """Start the sink on loopback (port 0 picks a free one); the handle has .port and .stop()."""
    from aiosmtpd.controller import Controller

    directory = mail_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    if port == 0:
        import socket

        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
    controller = Controller(_SaveHandler(directory), hostname=host, port=port)
    try:
        controller.start()
    except (OSError, RuntimeError) as exc:
        raise PlatformUnavailable(f"could not start the mail sink on {host}:{port}: {exc}") from exc
    return MailSink(port=port, directory=directory, _controller=controller)


@dataclass(frozen=True)
class MailSummary:
    path: Path
    received_at: float
    to: str
    subject: str


def _parse(path: Path) -> EmailMessage:
    with path.open("rb") as fh:
        msg = BytesParser(policy=email.policy.default).parse(fh)
    assert isinstance(msg, EmailMessage)
    return msg


def _files(home: Path) -> list[Path]:
    directory = mail_dir(home)
    if not directory.is_dir():
        return []
    return sorted(directory.glob("*.eml"))


def list_mail(home: Path) -> list[MailSummary]:
    """Every saved message, oldest first."""
    out = []
    for path in _files(home):
        msg = _parse(path)
        out.append(
            MailSummary(path, path.stat().st_mtime, str(msg["To"] or ""), str(msg["Subject"] or ""))
        )
    return out


def last_mail(home: Path, to: str) -> EmailMessage | None:
    """The newest message addressed to `to` (case-insensitive), or None."""
    wanted = to.strip().lower()
    for path in reversed(_files(home)):
        msg = _parse(path)
        recipients = [a.addr_spec.lower() for a in msg["To"].addresses] if msg["To"] else []
        if wanted in recipients:
            return msg
    return None


def message_text(msg: EmailMessage) -> str:
    body = msg.get_body(preferencelist=("plain",))
    return body.get_content() if body is not None else ""
