"""Web security decisions, as pure functions: own origin, CSRF, session cookie, headers.

CSRF rule for every mutating request (POST, PUT, PATCH, DELETE):
  - the `Origin` header must equal the tenant's own origin (for an HTML form from a browser,
    which sends `Origin: null` under our no-referrer policy, `Sec-Fetch-Site: same-origin`
    instead), and
  - a JSON/API client must send `X-Requested-With: XMLHttpRequest`; an HTML form (the setup,
    unlock, login and logout pages, and every page of the web app under /app) must instead
    carry a `csrf_token` field: before login equal to the `csrf` cookie its page set (double
    submit), after login equal to the session's own token. The handler checks it (verdict
    "form"). Anything else is refused with 403.
Exempt: RFC 8058 one-click unsubscribe (`POST /u/{token}`), which mail providers send without
an Origin; the unguessable token in the path is its authority and it needs no session.
And the control plane's signed job requests (`POST /internal/jobs/...`, see jobs.py).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from urllib.parse import urlsplit

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_PATHS = frozenset({"/setup", "/setup/confirm", "/unlock", "/login", "/logout"})
APP_PREFIX = "/app"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
CSRF_COOKIE = "csrf"
CSRF_EXEMPT_PREFIXES = ("/u/", "/internal/jobs/")

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": (
        "accelerometer=(), autoplay=(), camera=(), display-capture=(), encrypted-media=(), "
        "fullscreen=(), geolocation=(), gyroscope=(), hid=(), magnetometer=(), microphone=(), "
        "midi=(), payment=(), picture-in-picture=(), publickey-credentials-get=(), "
        "screen-wake-lock=(), serial=(), usb=(), xr-spatial-tracking=(), interest-cohort=()"
    ),
    "Cache-Control": "no-store",
}
HSTS = "max-age=31536000; includeSubDomains"


def own_origin(configured: str | None, scheme: str, host: str | None) -> str:
    """The configured public origin, else the one the request itself was addressed to."""
    if configured:
        parts = urlsplit(configured)
        return f"{parts.scheme}://{parts.netloc}".lower()
    return f"{scheme}://{host or ''}".lower()


def is_https(origin: str) -> bool:
    return origin.startswith("https://")


def session_cookie_name(origin: str) -> str:
    """`__Host-session` on HTTPS; plain `session` on plain-HTTP loopback (no Secure there)."""
    return "__Host-session" if is_https(origin) else "session"


def csrf_verdict(method: str, path: str, headers: Mapping[str, str], origin: str) -> str:
    """'ok', 'form' (allowed if the handler then validates the form token) or 'refuse'."""
    if method.upper() not in MUTATING or path.startswith(CSRF_EXEMPT_PREFIXES):
        return "ok"
    sent_origin = headers.get("origin", "").lower().rstrip("/")
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    is_form = content_type in FORM_TYPES and is_form_path(path)
    if sent_origin != origin or not sent_origin:
        # Under `Referrer-Policy: no-referrer` a browser sends `Origin: null` with its own
        # form posts; for those (still token-checked) the browser's unforgeable
        # `Sec-Fetch-Site: same-origin` stands in for the Origin.
        same_site = headers.get("sec-fetch-site", "") == "same-origin"
        if not (is_form and sent_origin in ("", "null") and same_site):
            return "refuse"
        return "form"
    if headers.get("x-requested-with", "") == "XMLHttpRequest":
        return "ok"
    if is_form:
        return "form"
    return "refuse"


def is_form_path(path: str) -> bool:
    return path in FORM_PATHS or path == APP_PREFIX or path.startswith(APP_PREFIX + "/")


def form_token_ok(cookie_value: str | None, form_value: str | None) -> bool:
    if not cookie_value or not form_value:
        return False
    return hmac.compare_digest(cookie_value.encode(), form_value.encode())
