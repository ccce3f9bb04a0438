"""Key material and the pure parts of the tenant's cryptography (no I/O).

Key hierarchy (DESIGN.md, trust model points 1 and 3):

    passphrase --(pgcrypto S2K, sha256, 65011712 bytes hashed, once per unlock)--> wraps
    data key (32 random bytes, only in process memory while unsealed)
        ├── column key   = hex(data key): the pgp_sym_encrypt password for every column
        ├── index key    = HKDF-SHA256(data key, "paitho/blind-index/v1"): blind index HMACs
        └── period keys  = 32 random bytes per stage-run period, stored wrapped under the
                           column key; destroying one makes that period's prompts unreadable
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import unicodedata

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from paitho_tenant.errors import WeakPassphrase

# Literal option strings; they go into SQL text (they are not secrets).
COLUMN_OPTIONS = "cipher-algo=aes256, s2k-mode=1"
WRAP_OPTIONS = "cipher-algo=aes256, s2k-digest-algo=sha256, s2k-count=65011712"

KEY_BYTES = 32
INDEX_INFO = b"paitho/blind-index/v1"

_CONSONANTS = "bdfghjklmnprstvz"
_VOWELS = "aeiou"
GENERATED_WORDS = 7
SYLLABLES_PER_WORD = 3
MIN_PASSPHRASE_LENGTH = 16
MIN_PASSPHRASE_BITS = 80.0
_DENYLIST = ("password", "passphrase", "qwerty", "123456", "letmein", "paitho", "correcthorse")


class DataKey:
    """The unwrapped data key. Never printed, never logged, never pickled."""

    __slots__ = ("_index_key", "_raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != KEY_BYTES:
            raise ValueError("a data key is 32 bytes")
        self._raw = raw
        self._index_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=INDEX_INFO
        ).derive(raw)

    @classmethod
    def generate(cls) -> DataKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @property
    def raw(self) -> bytes:
        return self._raw

    @property
    def column_key(self) -> str:
        """The pgcrypto password for column encryption (sent only as a bind parameter)."""
        return self._raw.hex()

    def blind_index(self, normalised: str) -> bytes:
        """HMAC-SHA256 of an already-normalised value under the derived index key."""
        return hmac.new(self._index_key, normalised.encode("utf-8"), hashlib.sha256).digest()

    def email_index(self, email: str) -> bytes:
        return self.blind_index(normalise_for_index(email))

    def __repr__(self) -> str:
        return "DataKey(<redacted>)"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a DataKey cannot be pickled")


def normalise_for_index(email: str) -> str:
    """The one normalisation every email blind index uses: NFKC, trimmed, lower-cased."""
    return unicodedata.normalize("NFKC", email).strip().lower()


def generate_passphrase(words: int = GENERATED_WORDS) -> str:
    """Diceware-style passphrase of pronounceable random words (about 133 bits for 7 words)."""
    out = []
    for _ in range(words):
        word = "".join(
            secrets.choice(_CONSONANTS) + secrets.choice(_VOWELS) for _ in range(SYLLABLES_PER_WORD)
        )
        out.append(word)
    return "-".join(out)


def generated_passphrase_bits(words: int = GENERATED_WORDS) -> float:
    return words * SYLLABLES_PER_WORD * math.log2(len(_CONSONANTS) * len(_VOWELS))


def estimate_bits(passphrase: str) -> float:
    """A conservative strength estimate: character pool size over a repetition-capped length."""
    pool = 0
    if any(c.islower() for c in passphrase):
        pool += 26
    if any(c.isupper() for c in passphrase):
        pool += 26
    if any(c.isdigit() for c in passphrase):
        pool += 10
    if any(not c.isalnum() for c in passphrase):
        pool += 33
    effective = min(len(passphrase), 3 * len(set(passphrase)))
    return effective * math.log2(pool) if pool else 0.0


def check_passphrase(passphrase: str) -> None:
    """Raise WeakPassphrase unless the customer's passphrase is strong enough."""
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise WeakPassphrase(
            f"the passphrase must be at least {MIN_PASSPHRASE_LENGTH} characters; "
            "leave it out to get a generated one"
        )
    folded = "".join(c for c in passphrase.lower() if c.isalnum())
    if any(word in folded for word in _DENYLIST):
        raise WeakPassphrase("the passphrase contains a common word or sequence; choose another")
    if estimate_bits(passphrase) < MIN_PASSPHRASE_BITS:
        raise WeakPassphrase(
            "the passphrase is too predictable (too few distinct characters); use several "
            "random words or leave it out to get a generated one"
        )
