"""What an incoming message is: a bounce, an auto-reply (out-of-office or other), an
unsubscribe request, or a human reply. Pure: bytes in, a Classification out.

Order of evidence: an RFC 3464 delivery status notification first (the structured report),
then flufl.bounce's detectors for the unstructured shapes (Exim, qmail, old Exchange ...),
then RFC 3834 auto-reply headers and out-of-office phrases, then unsubscribe wording.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import re
from dataclasses import dataclass, field, replace
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

from flufl.bounce import all_failures

from paitho_tenant.outbound import autoreply
from paitho_tenant.outbound.tokens import tokens_in

log = logging.getLogger(__name__)

REPLY, AUTO_REPLY, BOUNCE, UNSUBSCRIBE = "reply", "auto_reply", "bounce", "unsubscribe"

_BOUNCE_SENDERS = re.compile(r"^(mailer-daemon|postmaster|mail delivery (sub)?system)", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|delivery status notification|mail delivery failed|returned mail"
    r"|failure notice|delivery failure|delivery has failed|non[- ]?deliver|non[- ]?remis"
    r"|unzustellbar|no se puede entregar)",
    re.I,
)
_UNSUBSCRIBE = re.compile(
    r"^\W*(unsubscribe|remove me|please remove|take me off|stop|opt[- ]?out|abmelden"
    r"|austragen|bitte entfernen|desabonner|desinscri|me desinscribo|darme de baja"
    r"|dar de baja|baja)\b",
    re.I,
)


@dataclass(frozen=True)
class Classification:
    kind: str
    permanent: bool = False  # bounces: a permanent failure (5.x.x / failed)
    status: str | None = None  # bounces: the RFC 3463 status code, if stated
    recipients: tuple[str, ...] = ()  # bounces: the failed original recipients
    out_of_office: bool = False
    return_date: dt.date | None = None
    tokens: tuple[str, ...] = ()  # our Message-ID tokens this message refers to
    sender: str = ""
    subject: str = ""
    text: str = field(default="", repr=False)  # the plain-text body, never logged


def parse(raw: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def plain_text(msg: Message) -> str:
    """The first text/plain part (or text/html stripped of tags) as text."""
    for part in msg.walk():
        if part.get_content_maintype() == "multipart":
            continue
        if part.get_content_type() in ("message/delivery-status", "message/rfc822"):
            continue
        if part.get_content_type() == "text/plain":
            return _decoded(part)
    for part in msg.walk():
        if part.get_content_type() == "text/html":
            return re.sub(r"<[^>]+>", " ", _decoded(part))
    return ""


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def normalised_subject(subject: str) -> str:
    """Subject without reply/forward prefixes in several languages, folded, for matching."""
    text = autoreply.fold(subject)
    prefix = re.compile(r"^\s*((re|aw|wg|fw|fwd|tr|rv|sv|antw|r)\s*(\[\d+\])?\s*:\s*)+", re.I)
    return re.sub(r"\s+", " ", prefix.sub("", text)).strip()


def classify(raw: bytes, received: dt.date | None = None) -> Classification:
    return classify_message(parse(raw), received, raw)


def classify_message(
    msg: EmailMessage, received: dt.date | None = None, raw: bytes | None = None
) -> Classification:
    subject = str(msg.get("Subject", ""))
    sender = email.utils.parseaddr(str(msg.get("From", "")))[1].lower()
    text = plain_text(msg)
    refs = tokens_in(" ".join(str(msg.get(h, "")) for h in ("In-Reply-To", "References")))
    when = received or _date_of(msg) or dt.datetime.now(dt.UTC).date()
    base = Classification(REPLY, sender=sender, subject=subject, text=text, tokens=refs)

    dsn = _delivery_status(msg)
    if dsn is not None:
        permanent, status, recipients, original = dsn
        return replace(
            base,
            kind=BOUNCE,
            permanent=permanent,
            status=status,
            recipients=recipients,
            tokens=original or refs,
        )
    temporary, permanent_set = _flufl(msg, raw) if _maybe_bounce(msg, sender, subject) else _NONE
    if permanent_set or temporary or _looks_like_bounce(sender, subject):
        recipients = tuple(sorted(a.decode("utf-8", "replace") for a in permanent_set | temporary))
        original = tokens_in(_original_headers_text(msg) or _message_id_lines(text))
        return replace(
            base,
            kind=BOUNCE,
            permanent=bool(permanent_set) or not temporary,
            recipients=recipients,
            tokens=original or refs,
        )
    if autoreply.is_auto_submitted(msg) or autoreply.looks_out_of_office(subject, text):
        ooo = autoreply.looks_out_of_office(subject, text)
        back = autoreply.return_date(text, when) if ooo else None
        return replace(base, kind=AUTO_REPLY, out_of_office=ooo, return_date=back)
    first_line = _first_own_line(text)
    if _UNSUBSCRIBE.search(autoreply.fold(first_line)) or _UNSUBSCRIBE.search(
        autoreply.fold(normalised_subject(subject))
    ):
        return replace(base, kind=UNSUBSCRIBE)
    return base


def _date_of(msg: Message) -> dt.date | None:
    try:
        parsed = email.utils.parsedate_to_datetime(str(msg.get("Date", "")))
    except (TypeError, ValueError):
        return None
    return parsed.date() if parsed else None


def _first_own_line(text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(">"):
            return stripped
    return ""


def _looks_like_bounce(sender: str, subject: str) -> bool:
    local = sender.split("@")[0]
    return bool(_BOUNCE_SENDERS.match(local)) and bool(_BOUNCE_SUBJECT.search(subject))


_NONE: tuple[frozenset[bytes], frozenset[bytes]] = (frozenset(), frozenset())


def _maybe_bounce(msg: Message, sender: str, subject: str) -> bool:
    """Worth running the bounce detectors on: machine senders, bounce subjects, reports or
    an empty return path. Human replies skip them (faster, and no false positives)."""
    local = sender.split("@")[0]
    return bool(
        _BOUNCE_SENDERS.match(local)
        or _BOUNCE_SUBJECT.search(subject)
        or msg.get_content_type() == "multipart/report"
        or msg.get("X-Failed-Recipients") is not None
        or str(msg.get("Return-Path", "")).strip() == "<>"
        or not sender
    )


def _flufl(msg: Message, raw: bytes | None) -> tuple[frozenset[bytes], frozenset[bytes]]:
    if raw is not None:  # the detectors read many headers: compat32 strings are much cheaper
        msg = BytesParser(policy=policy.compat32).parsebytes(raw)
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector choking on odd input must not stop ingestion
        log.warning("bounce detectors failed on a message; treating it as not a bounce")
        return frozenset(), frozenset()
    return frozenset(temporary), frozenset(permanent)


def _delivery_status(
    msg: Message,
) -> tuple[bool, str | None, tuple[str, ...], tuple[str, ...]] | None:
    """RFC 3464: (permanent, status, failed recipients, original tokens), or None."""
    if msg.get_content_type() != "multipart/report":
        return None
    if str(msg.get_param("report-type", "")).lower() != "delivery-status":
        return None
    failed: list[str] = []
    statuses: list[str] = []
    permanent = False
    found = False
    original = ""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            for block in _status_blocks(part):
                action = str(block.get("Action", "")).strip().lower()
                status = str(block.get("Status", "")).strip().split(" ")[0]
                if not action:
                    continue
                found = True
                if action in ("failed", "delayed"):
                    recipient = str(
                        block.get("Final-Recipient") or block.get("Original-Recipient") or ""
                    )
                    failed.append(recipient.split(";", 1)[-1].strip().strip("<>").lower())
                    statuses.append(status)
                    if action == "failed" and not status.startswith("4"):
                        permanent = True
        elif ctype in ("message/rfc822", "text/rfc822-headers") and not original:
            original = _part_text(part)
    if not found or not failed:
        return None  # not a report, or a success notice (delivered, relayed, expanded)
    return permanent, statuses[0] or None, tuple(failed), tokens_in(_message_id_lines(original))


def _status_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    parser = BytesParser(policy=policy.compat32)
    return [parser.parsebytes(chunk.encode()) for chunk in re.split(r"\r?\n\r?\n", text)]


def _part_text(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return "\n".join(f"{k}: {v}" for k, v in payload[0].items())
    if isinstance(payload, str):
        return payload
    decoded = part.get_payload(decode=True)
    return decoded.decode("utf-8", "replace") if isinstance(decoded, bytes) else ""


def _message_id_lines(text: str) -> str:
    """Only the Message-ID lines of returned headers (In-Reply-To there names older mail)."""
    return (
        "\n".join(line for line in text.splitlines() if line.lower().startswith("message-id:"))
        or text
    )


def _original_headers_text(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            return _message_id_lines(_part_text(part))
    return ""
