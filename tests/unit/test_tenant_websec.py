"""Web security decisions and in-memory state of the tenant: CSRF rule, cookie naming, unlock
throttle, sessions (no I/O)."""

from __future__ import annotations

import pytest
from paitho_tenant import websec
from paitho_tenant.accounts import Account, SessionStore
from paitho_tenant.vault import UnlockThrottle

OWN = "https://acme.paitho.ai"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("method", "path", "headers", "verdict"),
    [
        ("GET", "/api/export", {}, "ok"),
        ("POST", "/api/keychain", {"origin": OWN, "x-requested-with": "XMLHttpRequest"}, "ok"),
        ("POST", "/api/keychain", {"origin": OWN}, "refuse"),
        ("POST", "/api/keychain", {"x-requested-with": "XMLHttpRequest"}, "refuse"),
        (
            "POST",
            "/api/keychain",
            {"origin": "https://evil.example", "x-requested-with": "XMLHttpRequest"},
            "refuse",
        ),
        ("DELETE", "/api/keychain/1", {"origin": OWN}, "refuse"),
        (
            "POST",
            "/unlock",
            {"origin": OWN, "content-type": "application/x-www-form-urlencoded"},
            "form",
        ),
        ("POST", "/unlock", {"content-type": "application/x-www-form-urlencoded"}, "refuse"),
        (
            "POST",
            "/api/keychain",
            {"origin": OWN, "content-type": "application/x-www-form-urlencoded"},
            "refuse",
        ),
    ],
)
def test_csrf_verdicts(method: str, path: str, headers: dict[str, str], verdict: str) -> None:
    """Mutations need our Origin plus X-Requested-With, or (setup/unlock only) a form token."""
    assert websec.csrf_verdict(method, path, headers, OWN) == verdict


def test_own_origin_prefers_configuration() -> None:
    """The configured public origin wins over the Host header; else the request's own."""
    assert websec.own_origin("https://Acme.paitho.ai/", "http", "127.0.0.1:9") == OWN
    assert websec.own_origin(None, "http", "acme.localhost:8000") == "http://acme.localhost:8000"


def test_cookie_name_uses_host_prefix_on_https_only() -> None:
    """__Host- prefix (which requires Secure) on HTTPS; plain name on loopback HTTP."""
    assert websec.session_cookie_name(OWN) == "__Host-session"
    assert websec.session_cookie_name("http://acme.localhost:8000") == "session"


def test_form_token_comparison() -> None:
    """The form token must be present and equal to the cookie."""
    assert websec.form_token_ok("abc", "abc")
    assert not websec.form_token_ok("abc", "abd")
    assert not websec.form_token_ok(None, "abc")
    assert not websec.form_token_ok("abc", "")


def test_unlock_throttle_grows_and_resets() -> None:
    """Each failure doubles the wait (capped); a success clears it."""
    clock = Clock()
    throttle = UnlockThrottle(clock, base=0.5, cap=4.0)
    assert throttle.wait_time() == 0
    waits = []
    for _ in range(5):
        throttle.failed()
        waits.append(throttle.wait_time())
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0]
    clock.now += 4.0
    assert throttle.wait_time() == 0
    throttle.succeeded()
    throttle.failed()
    assert throttle.wait_time() == 0.5


def test_sessions_expire_and_store_no_token() -> None:
    """Sessions end after 30 idle minutes; the store keys on a hash, never the token."""
    clock = Clock()
    store = SessionStore(clock)
    token = store.create(Account(1, "owner"))
    assert token not in store._sessions
    assert store.get(token) is not None
    clock.now += SessionStore.IDLE + 1
    assert store.get(token) is None
    assert store.get(None) is None


def test_security_headers_forbid_third_parties() -> None:
    """The CSP allows only self, forbids objects, framing and base rewriting."""
    csp = websec.SECURITY_HEADERS["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "object-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
    assert "unsafe-inline" not in csp
