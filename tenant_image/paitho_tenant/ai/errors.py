"""Errors of the AI stages. Part of the tenant's tree (paitho_tenant.errors.TenantError):

    TenantError
    └── AIError (502)                 an AI stage could not complete
        ├── ProviderError (502)       the provider failed: 5xx or a refused request
        │   ├── ProviderTimeout (504)     no answer within the timeout, after the retries
        │   ├── RateLimited (429)         still rate limited after the retries
        │   ├── KeyRejected (424)         the provider refused the workspace's key
        │   └── MalformedResponse (502)   the HTTP body was not the provider's documented shape
        ├── InvalidOutput (502)       the model's answer failed validation (after one retry)
        ├── BudgetExceeded (402)      the workspace's monthly AI budget is spent
        ├── NoProviderKey (409)       no usable key of that kind in the workspace's keychain
        └── EnrichmentDisabled (403)  enrichment was not opted in for this workspace

Messages are written for the customer and are safe to store on a stage run: they never quote
a key, a prompt, a lead value or any part of a provider's response body. Vendor exceptions are
translated where they are caught and NOT chained (`from None`): their text carries the
provider's error body, which can echo part of the key.
"""

from __future__ import annotations

from paitho_tenant.errors import TenantError


class AIError(TenantError):
    status = 502
    code = "ai_error"
    retryable: bool = False

    def __init__(
        self, message: str, *, retry_after: float | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        if retryable is not None:
            self.retryable = retryable


class ProviderError(AIError):
    code = "provider_error"


class ProviderUnavailable(ProviderError):
    code = "provider_unavailable"
    retryable = True


class ProviderTimeout(ProviderError):
    status = 504
    code = "provider_timeout"
    retryable = True


class RateLimited(ProviderError):
    status = 429
    code = "provider_rate_limited"
    retryable = True


class KeyRejected(ProviderError):
    status = 424
    code = "provider_key_rejected"


class MalformedResponse(ProviderError):
    code = "provider_malformed_response"


class InvalidOutput(AIError):
    code = "invalid_output"


class BudgetExceeded(AIError):
    status = 402
    code = "ai_budget_exceeded"


class NoProviderKey(AIError):
    status = 409
    code = "no_provider_key"


class EnrichmentDisabled(AIError):
    status = 403
    code = "enrichment_disabled"
