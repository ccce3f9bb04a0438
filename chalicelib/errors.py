"""The control plane's exceptions. Each carries the HTTP status it maps to.

    PaithoError (500)
    ├── InvalidInput (422)      bad input; the message says what was wrong and what to do
    ├── NotFound (404)
    ├── Conflict (409)          e.g. a slug that is already taken
    ├── Forbidden (403)
    ├── TooManyRequests (429)
    ├── RegistryError (503)     the tenant registry could not be read or written
    ├── LaunchError (502)       a launcher could not do what was asked; the reason is actionable
    └── PlatformUnavailable (503)  the local platform (`make up`) is not running

Vendor errors (botocore's ClientError, OSError) are translated where they are caught.
"""

from __future__ import annotations


class PaithoError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(PaithoError):
    status = 422


class NotFound(PaithoError):
    status = 404


class Conflict(PaithoError):
    status = 409


class Forbidden(PaithoError):
    status = 403


class TooManyRequests(PaithoError):
    status = 429


class RegistryError(PaithoError):
    status = 503


class LaunchError(PaithoError):
    status = 502


class PlatformUnavailable(PaithoError):
    status = 503


# -- control plane web side (signup, accounts, billing, licences) -----------------------------


class StoreError(PaithoError):
    """A control-plane table could not be read or written, or a write named a forbidden field."""

    status = 503


class TokenInvalid(PaithoError):
    """A signed link or form token is malformed, forged, expired or already used."""

    status = 400


class SignatureInvalid(PaithoError):
    """A payment provider's webhook failed signature or timestamp verification."""

    status = 400


class LicenceInvalid(PaithoError):
    """A licence token does not verify against any known public key, or is malformed."""

    status = 400


class Unauthorized(PaithoError):
    status = 401


class PayloadTooLarge(PaithoError):
    status = 413


class PaymentProviderError(PaithoError):
    """The payment provider's API refused or could not be reached; the reason names which."""

    status = 502
