"""The control plane's web side: the services it is built from (`ControlPlane`) and its routes.

`build(app, services)` registers every route on a Chalice app; `services` is a ControlPlane or a
zero-argument callable returning one (resolved on the first request, so importing app.py builds
no client). Routes only parse, call one service and render; errors map to pages by their
status attribute, and anything unexpected is logged with its traceback and answered with a 500.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from chalice.app import Chalice, Rate, Response
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jinja2 import Environment

from chalicelib import pages
from chalicelib.accounts import AccountService, default_hasher
from chalicelib.audit import AuditLog
from chalicelib.auth import AuthService
from chalicelib.billing import BillingService
from chalicelib.cpconfig import CpConfig
from chalicelib.errors import PaithoError
from chalicelib.licences import LicenceIssuer
from chalicelib.mailer import Mailer
from chalicelib.payments import ManualProvider, PaymentProvider, StripeProvider, StripeWebhooks
from chalicelib.ports import TenantPort, iso
from chalicelib.posture import Changelog, StatusBoard
from chalicelib.ratelimit import RateLimited, RateLimiter
from chalicelib.sessions import SessionService
from chalicelib.signup import SignupService
from chalicelib.stores import Stores
from chalicelib.tokens import FormTokens, LinkTokens, TokenSigner
from chalicelib.webroutes import register_routes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControlPlane:
    config: CpConfig
    stores: Stores
    tenants: TenantPort
    mailer: Mailer
    signup: SignupService
    auth: AuthService
    sessions: SessionService
    forms: FormTokens
    billing: BillingService
    manual: ManualProvider
    provider: PaymentProvider  # Stripe when configured, else the manual provider
    stripe: StripeWebhooks | None
    licences: LicenceIssuer | None
    changelog: Changelog
    status: StatusBoard
    audit: AuditLog
    templates: Environment
    clock: Callable[[], float]


def build_control_plane(
    config: CpConfig,
    stores: Stores,
    tenants: TenantPort,
    mailer: Mailer,
    clock: Callable[[], float] = time.time,
    hasher: PasswordHasher | None = None,
    licence_keys: Mapping[str, Ed25519PrivateKey] | None = None,
    licence_kid: str | None = None,
    stripe_client: Any = None,
    stripe_prices: Mapping[str, str] | None = None,
) -> ControlPlane:
    """Wire the services from their collaborators (the composition root calls this)."""

    def iso_now() -> str:
        return iso(clock())

    signer = TokenSigner(config.token_key, clock)
    links = LinkTokens(signer, stores.tokens, clock)
    limiter = RateLimiter(stores.ratelimits, clock)
    audit = AuditLog(stores.audit, iso_now)
    accounts = AccountService(stores.accounts, hasher or default_hasher(), iso_now)
    sessions = SessionService(stores.sessions, config.session_ttl_s, config.secure_cookies, clock)
    billing = BillingService(
        stores.subscriptions,
        tenants,
        mailer,
        audit,
        clock,
        config.grace_days,
        config.notice_days,
        config.trial_days,
    )
    stripe = None
    if config.stripe_webhook_secret is not None:
        stripe = StripeWebhooks(
            config.stripe_webhook_secret,
            config.stripe_tolerance_s,
            stores.stripe_events,
            billing,
            clock,
        )
    manual = ManualProvider(billing)
    provider: PaymentProvider = manual
    if stripe_client is not None:
        provider = StripeProvider(stripe_client, billing, stripe_prices or {})
    licences = None
    if licence_keys:
        kid = licence_kid or sorted(licence_keys)[-1]
        licences = LicenceIssuer(licence_keys, kid, stores.licences, clock, config.licence_ttl_days)
    return ControlPlane(
        config=config,
        stores=stores,
        tenants=tenants,
        mailer=mailer,
        signup=SignupService(
            config,
            accounts,
            stores.claims,
            links,
            mailer,
            tenants,
            limiter,
            audit,
            billing,
            iso_now,
        ),
        auth=AuthService(config, accounts, sessions, links, mailer, limiter, audit),
        sessions=sessions,
        forms=FormTokens(signer, config.form_token_ttl_s),
        billing=billing,
        manual=manual,
        provider=provider,
        stripe=stripe,
        licences=licences,
        changelog=Changelog(stores.changelog, lambda: datetime.fromtimestamp(clock(), UTC).date()),
        status=StatusBoard(stores.status, iso_now),
        audit=audit,
        templates=pages.environment(),
        clock=clock,
    )


class Injected:
    """Holds a provider the local platform injects into app.py (see `app.use`)."""

    def __init__(self) -> None:
        self.provider: Callable[[], ControlPlane] | None = None


class Lazy:
    """Resolves the ControlPlane once, on first use, thread-safely."""

    def __init__(self, source: ControlPlane | Callable[[], ControlPlane]) -> None:
        self._source = source
        self._value: ControlPlane | None = source if isinstance(source, ControlPlane) else None
        self._lock = threading.Lock()

    def get(self) -> ControlPlane:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    assert callable(self._source)
                    self._value = self._source()
        return self._value


def error_page(cp: ControlPlane, exc: PaithoError) -> Response:
    """4xx messages are written for the person and shown; 5xx ones only when marked public."""
    public = exc.status < 500 or bool(getattr(exc, "public", False))
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    return pages.html(
        cp.templates,
        "message.html",
        status=exc.status,
        headers=headers,
        title="Something needs your attention" if exc.status < 500 else "Something went wrong",
        message=exc.message if public else "Please try again in a minute.",
        config=cp.config,
    )


def guarded(lazy: Lazy, view: Callable[..., Response]) -> Callable[..., Response]:
    """Map project errors to pages by status; log anything else with its traceback."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        cp = lazy.get()
        try:
            return view(cp, *args, **kwargs)
        except PaithoError as exc:
            if exc.status >= 500:
                log.error("%s: %s", type(exc).__name__, exc.message)
            return error_page(cp, exc)
        except Exception:
            log.exception("unhandled error in %s", view.__name__)
            return error_page(cp, PaithoError("internal error"))

    return wrapper


@dataclass(frozen=True)
class Handlers:
    """Lambda handlers besides the API: app.py binds each to a module-level name, because the
    deployed Lambda's handler string is `app.<name>`."""

    billing_tick: Callable[..., Any]


def build(app: Chalice, services: ControlPlane | Callable[[], ControlPlane]) -> Handlers:
    """Register the control plane's web routes, and the hourly billing clock, on `app`."""
    lazy = Lazy(services)
    register_routes(app, lazy, guarded)

    @app.schedule(Rate(1, unit=Rate.HOURS), name="billing_tick")
    def billing_tick(event: Any) -> None:
        """Grace expiry → suspension, notice expiry → deletion (locally: call billing.tick())."""
        changed = lazy.get().billing.tick()
        log.info("billing tick over %d subscriptions", len(changed))

    return Handlers(billing_tick=billing_tick)
