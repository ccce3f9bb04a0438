"""Signed link tokens expire, are single-use, resist forgery; CSRF tokens bind to the session."""

from __future__ import annotations

import pytest

from chalicelib.cpconfig import Secret
from chalicelib.errors import TokenInvalid
from chalicelib.stores import MemoryTable
from chalicelib.tokens import FormTokens, LinkTokens, TokenSigner
from tests.cp_support import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def links(clock: Clock) -> LinkTokens:
    return LinkTokens(TokenSigner(Secret(b"k" * 32), clock), MemoryTable("tokens"), clock)


def test_a_token_verifies_once_then_is_refused(links: LinkTokens) -> None:
    """Consuming a token twice fails the second time with 'already been used'."""
    token = links.issue("verify", "ann@example.com", 60)
    assert links.consume(token, "verify").subject == "ann@example.com"
    with pytest.raises(TokenInvalid, match="already been used"):
        links.consume(token, "verify")


def test_an_expired_token_is_refused(links: LinkTokens, clock: Clock) -> None:
    """A token past its expiry fails with 'expired' and is not recorded as used."""
    token = links.issue("verify", "ann@example.com", 60)
    clock.advance(61)
    with pytest.raises(TokenInvalid, match="expired"):
        links.consume(token, "verify")


def test_a_token_for_one_purpose_does_not_work_for_another(links: LinkTokens) -> None:
    """A verification token cannot be used as a password-reset token."""
    token = links.issue("verify", "ann@example.com", 60)
    with pytest.raises(TokenInvalid):
        links.consume(token, "reset")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: "x" + t,
        lambda t: t.split(".")[0],
        lambda t: "",
        lambda t: "a.b.c",
        lambda t: "é" * 10,
        lambda t: t * 100,
    ],
)
def test_forged_or_malformed_tokens_are_refused(links: LinkTokens, mangle: object) -> None:
    """Any change to a token, or garbage in its place, gives TokenInvalid (never another error)."""
    token = links.issue("verify", "ann@example.com", 60)
    with pytest.raises(TokenInvalid):
        links.consume(mangle(token), "verify")  # type: ignore[operator]


def test_a_token_signed_with_another_key_is_refused(clock: Clock) -> None:
    """Tokens from a different key never verify."""
    other = TokenSigner(Secret(b"o" * 32), clock).issue("verify", "ann@example.com", 60)
    signer = TokenSigner(Secret(b"k" * 32), clock)
    with pytest.raises(TokenInvalid):
        signer.verify(other, "verify")


def test_peek_does_not_spend_the_token(links: LinkTokens) -> None:
    """Showing the reset form (peek) leaves the token usable once."""
    token = links.issue("reset", "ann@example.com", 60)
    links.peek(token, "reset")
    links.consume(token, "reset")
    with pytest.raises(TokenInvalid):
        links.peek(token, "reset")


def test_csrf_tokens_bind_to_the_session(clock: Clock) -> None:
    """A CSRF token issued for one session (or none) fails for another, and expires."""
    forms = FormTokens(TokenSigner(Secret(b"k" * 32), clock), ttl_s=100)
    mine = forms.issue("session-a")
    forms.check(mine, "session-a")
    with pytest.raises(TokenInvalid):
        forms.check(mine, "session-b")
    with pytest.raises(TokenInvalid):
        forms.check(mine, None)
    anonymous = forms.issue(None)
    forms.check(anonymous, None)
    clock.advance(101)
    with pytest.raises(TokenInvalid):
        forms.check(anonymous, None)


def test_the_secret_never_prints() -> None:
    """A Secret's repr and str hide the value."""
    secret = Secret(b"super-secret-key")
    assert "super" not in repr(secret) and "super" not in str(secret)
