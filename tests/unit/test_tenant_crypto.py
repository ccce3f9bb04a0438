"""Pure tenant cryptography: passphrases, blind indexes, key handling (no I/O)."""

from __future__ import annotations

import pickle

import pytest
from paitho_tenant import crypto
from paitho_tenant.errors import WeakPassphrase


def test_generated_passphrase_is_diceware_like_and_unique() -> None:
    """A generated passphrase has 7 pronounceable words, over 128 bits, and never repeats."""
    phrases = {crypto.generate_passphrase() for _ in range(200)}
    assert len(phrases) == 200
    words = next(iter(phrases)).split("-")
    assert len(words) == 7 and all(len(w) == 6 and w.isalpha() for w in words)
    assert crypto.generated_passphrase_bits() > 128


def test_generated_passphrase_passes_the_strength_check() -> None:
    """What we generate is accepted by our own strength check."""
    crypto.check_passphrase(crypto.generate_passphrase())


@pytest.mark.parametrize(
    "weak",
    [
        "short-one",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "correct horse battery staple",
        "MyPassword2024!!!!",
    ],
)
def test_weak_passphrases_are_refused(weak: str) -> None:
    """Short, repetitive or common-word passphrases raise WeakPassphrase (HTTP 400)."""
    with pytest.raises(WeakPassphrase) as info:
        crypto.check_passphrase(weak)
    assert info.value.status == 400
    assert weak not in info.value.message


def test_blind_index_normalises_and_is_keyed() -> None:
    """Case and surrounding space do not change the index; another key gives another index."""
    key = crypto.DataKey(bytes(range(32)))
    assert key.email_index(" Ada@Example.COM ") == key.email_index("ada@example.com")
    assert len(key.email_index("ada@example.com")) == 32
    other = crypto.DataKey(bytes(range(1, 33)))
    assert other.email_index("ada@example.com") != key.email_index("ada@example.com")
    assert key.email_index("ada@example.com") != key.email_index("ada@example.org")


def test_index_key_is_derived_not_the_data_key() -> None:
    """The blind index is not a plain HMAC under the data key itself (domain separation)."""
    import hashlib
    import hmac

    raw = bytes(range(32))
    key = crypto.DataKey(raw)
    plain = hmac.new(raw, b"ada@example.com", hashlib.sha256).digest()
    assert key.email_index("ada@example.com") != plain


def test_data_key_never_prints_or_pickles() -> None:
    """repr() hides the key and pickling refuses, so it cannot reach a log or a cache file."""
    key = crypto.DataKey.generate()
    assert key.column_key not in repr(key) and "redacted" in repr(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(ValueError):
        crypto.DataKey(b"short")
    assert len(key.column_key) == 64
