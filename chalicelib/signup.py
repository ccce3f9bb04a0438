"""Signup: validate, claim the subdomain, create the pending account, mail a verification link;
then verification provisions the tenant and sends the person to its own setup page.

Double submission is safe by construction: the subdomain claim and the account are conditional
creates, so two identical submissions yield one account, one claim, one tenant. A claim or a
pending account whose verification link has expired unused is stale: a new signup may take it
over, so nobody can hold a subdomain by signing up and never verifying. The control plane never
sees the tenant's passphrase: the person sets it on the tenant's setup page.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from chalicelib.accounts import Account, AccountService
from chalicelib.audit import AuditLog
from chalicelib.cpconfig import CpConfig
from chalicelib.errors import Conflict, NotFound, PaithoError, TokenInvalid
from chalicelib.mailer import Mailer
from chalicelib.ports import TenantPort
from chalicelib.ratelimit import RateLimiter
from chalicelib.stores import Table
from chalicelib.tokens import LinkTokens
from chalicelib.validation import SignupForm, validate_signup

log = logging.getLogger(__name__)


class TrialStarter(Protocol):
    def start_trial(self, slug: str, email: str, plan: str) -> None: ...


@dataclass(frozen=True)
class SignupOutcome:
    ok: bool
    email: str = ""
    errors: dict[str, str] = field(default_factory=dict)


TAKEN = "That subdomain is already taken; choose another."


class ProvisioningFailed(PaithoError):
    """The account is confirmed but its workspace did not start; the portal can retry."""

    status = 502
    public = True  # the message is written for the person, so the error page shows it


class SignupService:
    def __init__(
        self,
        config: CpConfig,
        accounts: AccountService,
        claims: Table,
        links: LinkTokens,
        mailer: Mailer,
        tenants: TenantPort,
        limiter: RateLimiter,
        audit: AuditLog,
        billing: TrialStarter,
        clock: Callable[[], str],
    ) -> None:
        self._config = config
        self._accounts = accounts
        self._claims = claims
        self._links = links
        self._mailer = mailer
        self._tenants = tenants
        self._limiter = limiter
        self._audit = audit
        self._billing = billing
        self._clock = clock

    def submit(self, raw: Mapping[str, str], client_ip: str) -> SignupOutcome:
        bucket = f"signup:{client_ip}"
        self._limiter.check(bucket)
        self._limiter.hit(bucket, self._config.signup_rule)
        form, errors = validate_signup(raw)
        if form is None:
            return SignupOutcome(False, errors=errors)
        claimed_now = self._claim(form)
        if claimed_now is None:
            return SignupOutcome(False, errors={"subdomain": TAKEN})
        try:
            account = self._create_account(form)
        except Conflict:
            existing = self._accounts.get(form.email)
            if existing.subdomain == form.subdomain and existing.state == "pending":
                return SignupOutcome(True, email=form.email)  # a double submission
            if claimed_now:
                self._claims.delete(form.subdomain)
            return SignupOutcome(
                False,
                errors={
                    "email": "An account with this email already exists; log in or reset "
                    "your password."
                },
            )
        self.send_verification(form.email)
        self._audit.record("signup", account.account_id, form.subdomain)
        return SignupOutcome(True, email=form.email)

    def _stale(self, created_at: str) -> bool:
        """True when a verification link issued at `created_at` has expired."""
        age = datetime.fromisoformat(self._clock()) - datetime.fromisoformat(created_at)
        return age.total_seconds() > self._config.verify_ttl_s

    def _create_account(self, form: SignupForm) -> Account:
        """Create the pending account; a stale pending one for the same email is replaced."""
        try:
            return self._accounts.create_pending(
                form.email, form.password, form.company, form.subdomain, form.region, form.plan
            )
        except Conflict:
            existing = self._accounts.find(form.email)
            if (
                existing is None
                or existing.state != "pending"
                or not self._stale(existing.created_at)
            ):
                raise
            holder = self._claims.get(existing.subdomain)
            if existing.subdomain != form.subdomain and holder and holder["email"] == form.email:
                self._claims.delete(existing.subdomain)
            self._accounts.discard_pending(form.email)
            return self._accounts.create_pending(
                form.email, form.password, form.company, form.subdomain, form.region, form.plan
            )

    def _claim(self, form: SignupForm) -> bool | None:
        """True: claimed now; False: already ours (double submission); None: taken."""
        try:
            self._tenants.show(form.subdomain)
            return None
        except NotFound:
            pass
        try:
            self._claims.put_new(
                {"subdomain": form.subdomain, "email": form.email, "created_at": self._clock()}
            )
            return True
        except Conflict:
            holder = self._claims.get(form.subdomain)
            if holder is None:
                return None
            if holder["email"] == form.email:
                return False
            return True if self._take_over(form, holder) else None

    def _take_over(self, form: SignupForm, holder: dict[str, str]) -> bool:
        """Take a stale claim whose holder never verified; a verified holder keeps it."""
        account = self._accounts.find(holder["email"])
        if account is not None and account.state != "pending":
            return False
        if not self._stale(holder["created_at"]):
            return False
        try:
            self._claims.update(
                form.subdomain,
                {"email": form.email, "created_at": self._clock()},
                expect={"email": holder["email"], "created_at": holder["created_at"]},
            )
        except Conflict:
            return False  # someone else took it over first
        if account is not None and account.subdomain == form.subdomain:
            self._accounts.discard_pending(account.email)
        return True

    def send_verification(self, email: str) -> None:
        token = self._links.issue("verify", email, self._config.verify_ttl_s)
        link = f"{self._config.public_base}/verify?token={token}"
        self._mailer.send(
            email,
            "Confirm your email to start your Paitho workspace",
            "Welcome to Paitho.\n\n"
            "Confirm your email address to start your workspace:\n\n"
            f"{link}\n\n"
            f"The link works once and expires in {self._config.verify_ttl_s // 3600} hours.\n"
            "If you did not sign up, ignore this message.\n",
        )

    def verify(self, token: str) -> str:
        """Spend the link, provision the tenant, return the tenant's setup URL."""
        claims = self._links.consume(token, "verify")
        pending = self._accounts.find(claims.subject)
        holder = self._claims.get(pending.subdomain) if pending is not None else None
        if pending is None or holder is None or holder["email"] != pending.email:
            raise TokenInvalid("This link is no longer valid; please sign up again.")
        account = self._accounts.mark_verified(pending.email)
        self._audit.record("verify", account.account_id, account.subdomain)
        self.start_workspace(account)
        return self._config.tenant_url(account.subdomain, "/setup")

    def start_workspace(self, account: Account) -> None:
        """Provision the account's tenant (or retry a failed start) and open its trial."""
        try:
            try:
                record = self._tenants.show(account.subdomain)
            except NotFound:
                # Conflict: a concurrent replay created it; this account's claim holds the name.
                with contextlib.suppress(Conflict):
                    self._tenants.create(account.subdomain, account.plan, account.region)
            else:
                if record.state == "failed":
                    self._tenants.resume(account.subdomain)
        except PaithoError as exc:
            log.error("workspace %s did not start: %s", account.subdomain, exc.message)
            self._audit.record("provision", account.account_id, account.subdomain, "failed")
            raise ProvisioningFailed(
                "Your email is confirmed, but your workspace did not start. Log in to billing "
                "and press “Start my workspace” to try again in a minute."
            ) from exc
        self._billing.start_trial(account.subdomain, account.email, account.plan)
