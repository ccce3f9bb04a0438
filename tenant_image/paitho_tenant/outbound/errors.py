"""The outbound engine's exception tree (subclasses of the tenant's, so the app maps them):

    TenantError
    ├── BadRequest (400)
    │   └── TemplateError (400)        a variable without fallback is missing, or bad syntax
    ├── MailboxCheckFailed (422)       saving a mailbox: which check failed (dns, tcp, tls,
    │                                  auth, folder) and why, never the password
    ├── CampaignRefused (409)          a guard rail refused to start a campaign
    └── TokenInvalid (404)             an unsubscribe token that does not verify

Messages never contain an address, a body or a secret.
"""

from __future__ import annotations

from paitho_tenant.errors import BadRequest, Conflict, NotFound, TenantError


class TemplateError(BadRequest):
    code = "template_error"


class MailboxCheckFailed(TenantError):
    status = 422
    code = "mailbox_check_failed"

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


class CampaignRefused(Conflict):
    code = "campaign_refused"


class TokenInvalid(NotFound):
    code = "token_invalid"
