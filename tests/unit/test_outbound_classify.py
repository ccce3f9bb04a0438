"""The corpus of bounces, auto-replies, replies and unsubscribe requests in tests/data/mail:
each message is classified as its entry in expected.json says."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from paitho_tenant.outbound import autoreply
from paitho_tenant.outbound.classify import AUTO_REPLY, BOUNCE, REPLY, classify, normalised_subject
from paitho_tenant.outbound.quotes import strip_quoted

CORPUS = Path(__file__).resolve().parents[1] / "data" / "mail"
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text())


def test_corpus_is_complete() -> None:
    """Every .eml of the corpus has an expectation and the corpus spans the required shapes."""
    files = {p.name for p in CORPUS.glob("*.eml")}
    assert files == set(EXPECTED)
    kinds = {e["kind"] for e in EXPECTED.values()}
    assert kinds == {"bounce", "auto_reply", "reply", "unsubscribe"}
    assert len(files) >= 15


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_message_is_classified(name: str) -> None:
    """The message is classified with the kind, failure, recipients, return date and tokens
    its expectation states."""
    want = EXPECTED[name]
    got = classify((CORPUS / name).read_bytes())
    assert got.kind == want["kind"]
    if "permanent" in want:
        assert got.permanent is want["permanent"]
    if "status" in want:
        assert got.status == want["status"]
    if "recipients" in want:
        assert list(got.recipients) == want["recipients"]
    if "out_of_office" in want:
        assert got.out_of_office is want["out_of_office"]
    if "return_date" in want:
        stated = got.return_date.isoformat() if got.return_date else None
        assert stated == want["return_date"]
    assert set(got.tokens) == set(want["tokens"])
    if "visible" in want:
        assert strip_quoted(got.text) == want["visible"]


def test_plain_reply_without_auto_headers_is_a_reply() -> None:
    """A short human answer with no machine headers and no absence phrase is a reply."""
    raw = (
        b"From: x@prospect.test\r\nTo: s@acme.test\r\nSubject: Re: hello\r\n"
        b"In-Reply-To: <pto.abcdefghijklmnopqrstuvwxyz@acme.test>\r\n\r\nYes, call me.\r\n"
    )
    got = classify(raw)
    assert got.kind == REPLY
    assert got.tokens == ("abcdefghijklmnopqrstuvwxyz",)


def test_auto_submitted_no_is_not_an_auto_reply() -> None:
    """`Auto-Submitted: no` (RFC 3834) marks a human message, so it stays a reply."""
    raw = b"From: x@p.test\r\nAuto-Submitted: no\r\nSubject: Re: hi\r\n\r\nSure.\r\n"
    assert classify(raw).kind == REPLY


def test_precedence_bulk_is_an_auto_reply() -> None:
    """Precedence: bulk is one of the auto-reply markers the classifier honours."""
    raw = b"From: x@p.test\r\nPrecedence: bulk\r\nSubject: Re: hi\r\n\r\nNoted.\r\n"
    got = classify(raw)
    assert got.kind == AUTO_REPLY
    assert not got.out_of_office


def test_mailer_daemon_without_structure_is_a_bounce() -> None:
    """A mailer-daemon 'Undeliverable' notice that no detector parses is still a bounce."""
    raw = (
        b"From: MAILER-DAEMON@mx.test\r\nSubject: Undeliverable: hello\r\n\r\n"
        b"Something went wrong, sorry.\r\n"
    )
    got = classify(raw)
    assert got.kind == BOUNCE
    assert got.permanent


@pytest.mark.parametrize(
    ("text", "received", "want"),
    [
        ("I am out of the office until Monday, 14 June.", "2027-06-07", "2027-06-14"),
        ("Back on 3 January", "2027-12-20", "2028-01-03"),
        ("Ich bin ab dem 5. Juli wieder im Büro", "2027-06-07", "2027-07-05"),
        ("Je serai de retour le 2 août 2027", "2027-06-07", "2027-08-02"),
        ("Regresaré el 9/7/2027", "2027-06-07", "2027-07-09"),
        ("returning on 6/21/2027", "2027-06-07", "2027-06-21"),
        ("No date given at all", "2027-06-07", None),
    ],
)
def test_return_date_extraction(text: str, received: str, want: str | None) -> None:
    """The stated return date is found in four languages; a missing year rolls forward."""
    got = autoreply.return_date(text, dt.date.fromisoformat(received))
    assert (got.isoformat() if got else None) == want


def test_normalised_subject_drops_prefixes() -> None:
    """Re:/AW:/WG:/TR:/RV: prefixes and case go, so a rewritten subject still matches."""
    assert normalised_subject("AW: WG: Re: Quick  Question") == "quick question"
    assert normalised_subject("RV: Pregunta rápida") == "pregunta rapida"
