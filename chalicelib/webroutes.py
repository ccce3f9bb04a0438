"""The routes. Each parses the request, calls one service, renders (thin edges)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chalice.app import Chalice, Request, Response

from chalicelib import pages, posture
from chalicelib.billing import PLANS
from chalicelib.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    PaithoError,
    TokenInvalid,
    Unauthorized,
)
from chalicelib.sessions import Session
from chalicelib.validation import FIELDS

if TYPE_CHECKING:
    from chalicelib.webapp import ControlPlane, Lazy

FORM = "application/x-www-form-urlencoded"
Guard = Callable[["Lazy", Callable[..., Response]], Callable[..., Response]]


def register_routes(app: Chalice, lazy: Lazy, guarded: Guard) -> None:
    def route(
        path: str, method: str = "GET", content_type: str | None = None
    ) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
        def deco(view: Callable[..., Response]) -> Callable[..., Response]:
            kwargs: dict[str, Any] = {"methods": [method]}
            if content_type:
                kwargs["content_types"] = [content_type]
            app.route(path, **kwargs)(guarded(lazy, view))
            return view

        return deco

    def request() -> Request:
        req = app.current_request
        assert req is not None
        return req

    def headers() -> Mapping[str, str]:
        return request().headers

    def body() -> bytes:
        raw = request().raw_body
        return raw if isinstance(raw, bytes) else str(raw or "").encode("utf-8", "replace")

    def query(name: str) -> str:
        params: Mapping[str, str] = request().query_params or {}
        value = params.get(name, "")
        return value if isinstance(value, str) else ""

    def client_ip() -> str:
        identity = (request().context or {}).get("identity") or {}
        return str(identity.get("sourceIp") or "unknown")

    def posted(cp: ControlPlane, session: Session | None = None) -> dict[str, str]:
        """Parse a form post; refuse cross-site posts and stale or forged CSRF tokens."""
        pages.check_origin(headers(), cp.config.public_scheme)
        fields = pages.form_fields(body(), cp.config.max_body_bytes)
        cp.forms.check(fields.get("csrf", ""), session.session_id if session else None)
        return fields

    def render(cp: ControlPlane, template: str, status: int = 200, **ctx: Any) -> Response:
        session = cp.sessions.lookup(headers())
        return pages.html(
            cp.templates, template, status=status, config=cp.config, logged_in=bool(session), **ctx
        )

    def message(cp: ControlPlane, title: str, text: str, status: int = 200, **ctx: Any) -> Response:
        return render(cp, "message.html", status=status, title=title, message=text, **ctx)

    def require_session(cp: ControlPlane) -> Session:
        session = cp.sessions.lookup(headers())
        if session is None:
            raise Unauthorized("Log in to see your billing portal.")
        return session

    # -- marketplace and signup -------------------------------------------------------------
    @route("/")
    def landing(cp: ControlPlane) -> Response:
        return render(cp, "landing.html", plans=list(PLANS.values()))

    def signup_form(
        cp: ControlPlane, values: Mapping[str, str], errors: Mapping[str, str], status: int
    ) -> Response:
        shown = {k: values.get(k, "") for k in FIELDS if k != "password"}
        return render(
            cp,
            "signup.html",
            status=status,
            values=shown,
            errors=errors,
            plans=list(PLANS.values()),
            csrf=cp.forms.issue(None),
        )

    @route("/signup")
    def signup_page(cp: ControlPlane) -> Response:
        plan = query("plan")
        return signup_form(cp, {"plan": plan if plan in PLANS else "starter"}, {}, 200)

    @route("/signup", "POST", FORM)
    def signup_post(cp: ControlPlane) -> Response:
        try:
            fields = posted(cp)
        except TokenInvalid as exc:
            raw = pages.form_fields(body(), cp.config.max_body_bytes)
            return signup_form(cp, raw, {"form": exc.message}, 400)
        outcome = cp.signup.submit(fields, client_ip())
        if not outcome.ok:
            return signup_form(cp, fields, outcome.errors, 422)
        return render(cp, "check_mail.html", email=outcome.email)

    @route("/verify")
    def verify(cp: ControlPlane) -> Response:
        url = cp.signup.verify(query("token"))
        return pages.redirect(url)

    # -- login, portal, reset ---------------------------------------------------------------
    def login_form(
        cp: ControlPlane, error: str = "", email: str = "", status: int = 200
    ) -> Response:
        return render(
            cp, "login.html", status=status, error=error, email=email, csrf=cp.forms.issue(None)
        )

    @route("/login")
    def login_page(cp: ControlPlane) -> Response:
        return login_form(cp)

    @route("/login", "POST", FORM)
    def login_post(cp: ControlPlane) -> Response:
        try:
            fields = posted(cp)
        except TokenInvalid as exc:
            return login_form(cp, exc.message, status=400)
        email = fields.get("email", "")[:254]
        try:
            session = cp.auth.login(email, fields.get("password", ""), client_ip())
        except Unauthorized as exc:
            return login_form(cp, exc.message, email, status=401)
        return pages.redirect("/billing", {"Set-Cookie": cp.sessions.set_cookie(session)})

    @route("/logout", "POST", FORM)
    def logout(cp: ControlPlane) -> Response:
        session = require_session(cp)
        posted(cp, session)
        cp.auth.logout(session)
        return pages.redirect("/", {"Set-Cookie": cp.sessions.clear_cookie()})

    @route("/billing")
    def portal(cp: ControlPlane) -> Response:
        session = cp.sessions.lookup(headers())
        if session is None:
            return pages.redirect("/login")
        account = cp.auth.account_for(session)
        try:
            tenant_state = cp.tenants.show(account.subdomain).state
        except NotFound:
            tenant_state = "not provisioned"
        subscription = cp.billing.find(account.subdomain)
        plan = PLANS[subscription.plan if subscription else account.plan]
        return render(
            cp,
            "portal.html",
            account=account,
            tenant_state=tenant_state,
            plan=plan,
            subscription=subscription,
            plans=list(PLANS.values()),
            tenant_url=cp.config.tenant_url(account.subdomain, "/"),
            csrf=cp.forms.issue(session.session_id),
        )

    @route("/billing/plan", "POST", FORM)
    def change_plan(cp: ControlPlane) -> Response:
        session = require_session(cp)
        fields = posted(cp, session)
        plan = fields.get("plan", "")
        if plan not in PLANS:
            raise InvalidInput("Choose a plan: Starter, Pro, Agency or Enterprise.")
        account = cp.auth.account_for(session)
        cp.provider.change_plan(account.subdomain, plan)
        return pages.redirect("/billing")

    @route("/billing/start", "POST", FORM)
    def start_workspace(cp: ControlPlane) -> Response:
        session = require_session(cp)
        posted(cp, session)
        cp.signup.start_workspace(cp.auth.account_for(session))
        return pages.redirect("/billing")

    @route("/billing/cancel", "POST", FORM)
    def cancel(cp: ControlPlane) -> Response:
        session = require_session(cp)
        posted(cp, session)
        account = cp.auth.account_for(session)
        cp.billing.cancel(account.subdomain, account.account_id)
        return pages.redirect("/billing")

    @route("/reset")
    def reset_page(cp: ControlPlane) -> Response:
        token = query("token")
        if not token:
            return render(cp, "reset_request.html", csrf=cp.forms.issue(None))
        cp.auth.check_reset(token)
        return render(cp, "reset_form.html", token=token, error="", csrf=cp.forms.issue(None))

    @route("/reset/request", "POST", FORM)
    def reset_request(cp: ControlPlane) -> Response:
        fields = posted(cp)
        cp.auth.request_reset(fields.get("email", ""), client_ip())
        return message(
            cp,
            "Check your mail",
            "If an account exists for that address, we have sent it a link to reset the "
            "password. The link works once and expires in an hour.",
        )

    @route("/reset", "POST", FORM)
    def reset_post(cp: ControlPlane) -> Response:
        fields = posted(cp)
        token = fields.get("token", "")
        try:
            cp.auth.reset(token, fields.get("password", ""))
        except InvalidInput as exc:
            return render(
                cp,
                "reset_form.html",
                status=422,
                token=token,
                error=exc.message,
                csrf=cp.forms.issue(None),
            )
        return message(cp, "Password changed", "Your password is changed; log in with it now.")

    # -- payment provider webhooks and licences (JSON) --------------------------------------
    def as_json(body: object, status: int = 200) -> Response:
        return pages.text(json.dumps(body), "application/json", status)

    @route("/webhooks/stripe", "POST", "application/json")
    def stripe_webhook(cp: ControlPlane) -> Response:
        if cp.stripe is None:
            raise NotFound("Stripe is not configured here")
        try:
            outcome = cp.stripe.handle(body(), headers().get("stripe-signature"))
        except PaithoError as exc:
            return as_json({"error": exc.message}, exc.status)
        return as_json({"outcome": outcome})

    @route("/licences/{slug}")
    def licence(cp: ControlPlane, slug: str) -> Response:
        if cp.licences is None:
            raise NotFound("licences are not configured here")
        sub = cp.billing.get(slug[:64])
        if sub.deleted_at is not None or sub.state in ("canceled", "suspended"):
            raise Forbidden(f"no current licence for {slug!r}: the subscription is {sub.state}")
        return as_json({"licence": cp.licences.issue(sub.slug, sub.plan)})

    @route("/licence-keys")
    def licence_keys(cp: ControlPlane) -> Response:
        if cp.licences is None:
            raise NotFound("licences are not configured here")
        keys = cp.licences.public_keys()
        return as_json({kid: base64.b64encode(k).decode() for kid, k in keys.items()})

    # -- posture pages ----------------------------------------------------------------------
    @route("/trust")
    def trust(cp: ControlPlane) -> Response:
        return render(
            cp,
            "trust.html",
            inventory=posture.INVENTORY,
            not_stored=posture.NOT_STORED,
            sections=posture.SECTIONS,
            subprocessors=posture.SUBPROCESSORS,
            compliance=posture.COMPLIANCE,
            window=posture.DISCLOSURE_WINDOW_DAYS,
            ack=posture.ACK_HOURS,
        )

    @route("/changelog")
    def changelog(cp: ControlPlane) -> Response:
        return render(cp, "changelog.html", entries=cp.changelog.entries())

    @route("/status")
    def status(cp: ControlPlane) -> Response:
        return render(cp, "status.html", board=cp.status.snapshot())

    @route("/status.json")
    def status_json(cp: ControlPlane) -> Response:
        return as_json(cp.status.snapshot())

    @route("/.well-known/security.txt")
    def security_txt(cp: ControlPlane) -> Response:
        now = datetime.fromtimestamp(cp.clock(), UTC)
        return pages.text(
            posture.security_txt(cp.config.public_base, cp.config.security_contact, now)
        )

    @route("/security-policy")
    def security_policy(cp: ControlPlane) -> Response:
        return render(
            cp,
            "security_policy.html",
            window=posture.DISCLOSURE_WINDOW_DAYS,
            ack=posture.ACK_HOURS,
            contact=cp.config.security_contact,
        )

    @route("/hall-of-fame")
    def hall_of_fame(cp: ControlPlane) -> Response:
        return render(cp, "hall_of_fame.html", names=posture.HALL_OF_FAME)

    @route("/static/site.css")
    def stylesheet(cp: ControlPlane) -> Response:
        css = (pages.TEMPLATES / "site.css").read_text()
        return pages.text(css, "text/css; charset=utf-8")

    @route("/healthz")
    def healthz(cp: ControlPlane) -> Response:
        return as_json({"state": "ok"})
