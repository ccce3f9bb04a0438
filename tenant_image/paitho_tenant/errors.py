"""The tenant's exception tree. Each class carries the HTTP status the web edge answers with.

    TenantError (500)
    ├── BadRequest (400)
    │   ├── WeakPassphrase (400)
    │   └── ImportFailed (400)          whole-file CSV problems; never carries a cell value
    ├── Unauthorized (401)
    │   └── WrongPassphrase (401)
    ├── Forbidden (403)
    ├── NotFound (404)
    ├── Conflict (409)
    │   └── AlreadyInitialized (409)
    ├── Sealed (423)                    the vault is sealed or not set up
    ├── TooManyAttempts (429)
    ├── UnsafeDatabase (500)            Postgres settings would leak secrets; refuse to unseal
    └── DatabaseUnavailable (503)

Messages are written for the person who reads them and never contain a secret, a passphrase,
a lead value or a message body.
"""

from __future__ import annotations


class TenantError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(TenantError):
    status = 400
    code = "bad_request"


class WeakPassphrase(BadRequest):
    code = "weak_passphrase"


class ImportFailed(BadRequest):
    code = "import_failed"


class Unauthorized(TenantError):
    status = 401
    code = "unauthorized"


class WrongPassphrase(Unauthorized):
    code = "wrong_passphrase"


class Forbidden(TenantError):
    status = 403
    code = "forbidden"


class NotFound(TenantError):
    status = 404
    code = "not_found"


class Conflict(TenantError):
    status = 409
    code = "conflict"


class AlreadyInitialized(Conflict):
    code = "already_initialized"


class Sealed(TenantError):
    status = 423
    code = "sealed"


class TooManyAttempts(TenantError):
    status = 429
    code = "too_many_attempts"


class UnsafeDatabase(TenantError):
    status = 500
    code = "unsafe_database"


class DatabaseUnavailable(TenantError):
    status = 503
    code = "database_unavailable"
