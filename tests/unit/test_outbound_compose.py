"""Composed messages, Message-ID tokens, unsubscribe tokens and quote stripping."""

from __future__ import annotations

import datetime as dt

import pytest
from paitho_tenant.crypto import DataKey
from paitho_tenant.outbound import compose, tokens
from paitho_tenant.outbound.errors import TokenInvalid
from paitho_tenant.outbound.quotes import strip_quoted


def _draft(thread: tuple[str, ...] = ()) -> compose.Draft:
    return compose.Draft(
        from_address="sales@acme.test",
        from_name="Alice at Acme",
        to_address="lead@prospect.test",
        subject="Hello",
        body="Hi Ada,\nshort note.",
        token=tokens.new_token(),
        thread_tokens=thread,
        unsubscribe_url="https://acme.paitho.test/u/TOKEN",
        postal_address="Acme Ltd, 1 Main St, Springfield",
    )


def test_every_message_has_one_click_unsubscribe_and_footer() -> None:
    """List-Unsubscribe (HTTPS + mailto), List-Unsubscribe-Post and the postal footer."""
    msg = compose.build(_draft(), dt.datetime(2027, 6, 7, 9, tzinfo=dt.UTC))
    assert msg["List-Unsubscribe"] == (
        "<https://acme.paitho.test/u/TOKEN>, <mailto:sales@acme.test?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    body = msg.get_content()
    assert "Acme Ltd, 1 Main St, Springfield" in body
    assert "https://acme.paitho.test/u/TOKEN" in body
    assert msg["In-Reply-To"] is None


def test_follow_up_threads_under_the_first_message() -> None:
    """In-Reply-To names the latest earlier message; References lists the thread in order."""
    first, second = tokens.new_token(), tokens.new_token()
    msg = compose.build(_draft((first, second)), dt.datetime(2027, 6, 7, tzinfo=dt.UTC))
    assert msg["In-Reply-To"] == f"<pto.{second}@acme.test>"
    assert msg["References"] == f"<pto.{first}@acme.test> <pto.{second}@acme.test>"
    assert tokens.tokens_in(str(msg["Message-ID"])) != (first,)


def test_message_id_tokens_round_trip() -> None:
    """A token put into a Message-ID is found again in header text, case-insensitively."""
    token = tokens.new_token()
    assert len(token) == 26
    header = tokens.message_id(token, "acme.test").upper()
    assert tokens.tokens_in(f"foo {header} bar") == (token,)


def test_unsubscribe_token_verifies_and_resists_tampering() -> None:
    """A token verifies under its key only; any changed byte or another key is refused."""
    key = DataKey.generate()
    signer = tokens.UnsubscribeSigner(key)
    token = signer.sign(3, 12345)
    assert tokens.well_formed(token)
    assert signer.verify(token) == (3, 12345)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad in (flipped, token[:-1], "not-a-token", token + "AA"):
        with pytest.raises(TokenInvalid):
            signer.verify(bad)
    with pytest.raises(TokenInvalid):
        tokens.UnsubscribeSigner(DataKey.generate()).verify(token)
    assert "redacted" in repr(signer)


def test_strip_quoted_history() -> None:
    """Quoted lines and the attribution line are dropped; the new text stays."""
    text = "Yes please.\n\nOn Mon, Jun 7, 2027 Alice <a@acme.test> wrote:\n> Hi\n> there\n"
    assert strip_quoted(text) == "Yes please."
    outlook = "Ok.\n\n-----Original Message-----\nFrom: Alice\nSent: today\n\nHi"
    assert strip_quoted(outlook) == "Ok."
