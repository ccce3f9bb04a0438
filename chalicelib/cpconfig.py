"""The control plane's web-side configuration: one frozen value filled by the composition root.

Nothing here reads the environment; `chalicelib/factory.py` resolves settings once and builds a
CpConfig. Secrets are wrapped in `Secret` so they never print.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class Secret:
    """A secret value that never shows in repr, str or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


@dataclass(frozen=True)
class RateRule:
    """`limit` hits per `window_s`; each hit beyond doubles a delay from `base_delay_s`."""

    limit: int
    window_s: int
    base_delay_s: float
    max_delay_s: float


@dataclass(frozen=True)
class TableNames:
    """DynamoDB table names; the defaults are `TableNames.with_prefix("paitho")` and match
    infra/aws/controlplane.yaml."""

    accounts: str = "paitho-accounts"
    claims: str = "paitho-claims"
    sessions: str = "paitho-sessions"
    tokens: str = "paitho-tokens"
    ratelimits: str = "paitho-ratelimits"
    audit: str = "paitho-audit"
    subscriptions: str = "paitho-subscriptions"
    stripe_events: str = "paitho-stripe_events"
    licences: str = "paitho-licences"
    changelog: str = "paitho-changelog"
    status: str = "paitho-status"

    @classmethod
    def with_prefix(cls, prefix: str) -> TableNames:
        return cls(**{name: f"{prefix}-{name}" for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class CpConfig:
    token_key: Secret
    domain: str = "localhost"
    public_scheme: str = "http"
    edge_port: int = 8000
    region: str = "us-east-1"
    mail_from: str = "Paitho <no-reply@paitho.localhost>"
    security_contact: str = "mailto:security@paitho.ai"
    tables: TableNames = field(default_factory=TableNames)
    verify_ttl_s: int = 24 * 3600
    reset_ttl_s: int = 3600
    session_ttl_s: int = 12 * 3600
    form_token_ttl_s: int = 2 * 3600
    max_body_bytes: int = 16 * 1024
    login_rule: RateRule = RateRule(limit=5, window_s=900, base_delay_s=2.0, max_delay_s=3600.0)
    signup_rule: RateRule = RateRule(limit=30, window_s=3600, base_delay_s=2.0, max_delay_s=3600.0)
    reset_rule: RateRule = RateRule(limit=5, window_s=3600, base_delay_s=2.0, max_delay_s=3600.0)
    trial_days: int = 14
    grace_days: int = 14
    notice_days: int = 30
    stripe_webhook_secret: Secret | None = None
    stripe_tolerance_s: int = 300
    licence_ttl_days: int = 35

    @property
    def secure_cookies(self) -> bool:
        """`__Host-` and `Secure` only make sense over HTTPS; plain-HTTP loopback drops them."""
        return self.public_scheme == "https"

    @property
    def port_suffix(self) -> str:
        default = 443 if self.public_scheme == "https" else 80
        return "" if self.edge_port == default else f":{self.edge_port}"

    @property
    def public_base(self) -> str:
        return f"{self.public_scheme}://{self.domain}{self.port_suffix}"

    def tenant_url(self, slug: str, path: str = "/") -> str:
        return f"{self.public_scheme}://{slug}.{self.domain}{self.port_suffix}{path}"

    @property
    def allowed_origins(self) -> frozenset[str]:
        base = self.public_base
        return frozenset(
            {
                base,
                f"{self.public_scheme}://marketplace.{self.domain}{self.port_suffix}",
                f"{self.public_scheme}://127.0.0.1{self.port_suffix}",
            }
        )
