"""Login to the billing portal, logout, password reset — rate limited and audited.

Login failures count per email and per client address; after the rule's limit each further
failure doubles a lockout delay. A reset request answers the same whether or not the email has
an account, so the form cannot be used to find out who has signed up.
"""

from __future__ import annotations

from chalicelib.accounts import Account, AccountService
from chalicelib.audit import AuditLog
from chalicelib.cpconfig import CpConfig
from chalicelib.errors import InvalidInput, Unauthorized
from chalicelib.mailer import Mailer
from chalicelib.ratelimit import RateLimiter
from chalicelib.sessions import Session, SessionService
from chalicelib.tokens import LinkTokens
from chalicelib.validation import MAX_LEN, check_password, normalise_email


class AuthService:
    def __init__(
        self,
        config: CpConfig,
        accounts: AccountService,
        sessions: SessionService,
        links: LinkTokens,
        mailer: Mailer,
        limiter: RateLimiter,
        audit: AuditLog,
    ) -> None:
        self._config = config
        self._accounts = accounts
        self._sessions = sessions
        self._links = links
        self._mailer = mailer
        self._limiter = limiter
        self._audit = audit

    def login(self, email: str, password: str, client_ip: str) -> Session:
        email = normalise_email(email)[: MAX_LEN["email"]]
        buckets = (f"login:{email}", f"login-ip:{client_ip}")
        for bucket in buckets:
            self._limiter.check(bucket)
        if not email or not password or len(password) > MAX_LEN["password"]:
            raise Unauthorized("The email or password is not right.")
        try:
            account = self._accounts.authenticate(email, password)
        except Unauthorized:
            for bucket in buckets:
                self._limiter.hit(bucket, self._config.login_rule)
            self._audit.record("login", "anonymous", "", outcome="denied")
            raise
        if account.state != "active":
            raise Unauthorized("Confirm your email first: follow the link we sent you.")
        self._limiter.reset(buckets[0], self._config.login_rule)
        session = self._sessions.start(account.email)
        self._audit.record("login", account.account_id)
        return session

    def logout(self, session: Session) -> None:
        self._sessions.end(session)
        self._audit.record("logout", self._accounts.get(session.email).account_id)

    def account_for(self, session: Session) -> Account:
        return self._accounts.get(session.email)

    def request_reset(self, email: str, client_ip: str) -> None:
        """Mail a reset link when the account exists; the caller shows the same page either way."""
        for bucket in (f"reset-ip:{client_ip}", f"reset:{normalise_email(email)[:254]}"):
            self._limiter.check(bucket)
            self._limiter.hit(bucket, self._config.reset_rule)
        account = self._accounts.find(normalise_email(email)[: MAX_LEN["email"]])
        if account is None:
            return
        token = self._links.issue("reset", account.email, self._config.reset_ttl_s)
        self._mailer.send(
            account.email,
            "Reset your Paitho password",
            "Someone asked to reset the password of your Paitho billing account.\n\n"
            f"{self._config.public_base}/reset?token={token}\n\n"
            f"The link works once and expires in {self._config.reset_ttl_s // 60} minutes.\n"
            "If it was not you, ignore this message; your password stays as it is.\n",
        )
        self._audit.record("reset-requested", account.account_id)

    def check_reset(self, token: str) -> None:
        self._links.peek(token, "reset")

    def reset(self, token: str, password: str) -> None:
        claims = self._links.peek(token, "reset")
        problem = check_password(password, claims.subject)
        if problem:
            raise InvalidInput(problem)
        self._links.consume(token, "reset")
        self._accounts.set_password(claims.subject, password)
        ended = self._sessions.end_all(claims.subject)
        self._audit.record(
            "password-reset",
            self._accounts.get(claims.subject).account_id,
            detail=f"sessions ended: {ended}",
        )
