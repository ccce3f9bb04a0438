"""Build the outgoing message (pure): headers for threading and RFC 8058 one-click
unsubscribe, the personalised body and the brand's postal address footer."""

from __future__ import annotations

import datetime as dt
import email.utils
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP

from paitho_tenant.outbound.tokens import message_id


@dataclass(frozen=True)
class Draft:
    from_address: str
    from_name: str | None
    to_address: str
    subject: str
    body: str
    token: str
    thread_tokens: tuple[str, ...]  # earlier messages of this lead's thread, oldest first
    unsubscribe_url: str
    postal_address: str


def domain_of(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


def footer(postal_address: str, unsubscribe_url: str) -> str:
    return f"\n\n--\n{postal_address.strip()}\nUnsubscribe: {unsubscribe_url}\n"


def build(draft: Draft, now: dt.datetime) -> EmailMessage:
    domain = domain_of(draft.from_address)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = email.utils.formataddr((draft.from_name or "", draft.from_address))
    msg["To"] = draft.to_address
    msg["Subject"] = draft.subject
    msg["Date"] = email.utils.format_datetime(now.astimezone(dt.UTC))
    msg["Message-ID"] = message_id(draft.token, domain)
    if draft.thread_tokens:
        ids = [message_id(t, domain) for t in draft.thread_tokens]
        msg["In-Reply-To"] = ids[-1]
        msg["References"] = " ".join(ids)
    mailto = f"mailto:{draft.from_address}?subject=unsubscribe"
    msg["List-Unsubscribe"] = f"<{draft.unsubscribe_url}>, <{mailto}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(draft.body.rstrip() + footer(draft.postal_address, draft.unsubscribe_url))
    return msg


def stored_headers(msg: EmailMessage) -> dict[str, str]:
    """The headers kept (encrypted) with the sent message's row."""
    keep = ("From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References")
    return {name: str(msg[name]) for name in keep if msg[name] is not None}
