"""Accounts: argon2id hashes, login to the billing portal with a DESIGN point-10 cookie, lockout
with growing delays, password reset with single-use links, and the audit trail."""

from __future__ import annotations

import pytest

from chalicelib.mailer import MemoryMailer
from tests.cp_support import (
    FORM_HEADERS,
    STRONG,
    Clock,
    FakeTenants,
    client_for,
    csrf_from,
    link_from,
    plane,
    post_form,
    signup_fields,
)

HOST = {"Host": "localhost:8000"}


@pytest.fixture
def mailer() -> MemoryMailer:
    return MemoryMailer()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cp(mailer: MemoryMailer, clock: Clock):  # type: ignore[no-untyped-def]
    return plane(mailer=mailer, tenants=FakeTenants(), clock=clock)


@pytest.fixture
def client(cp, mailer: MemoryMailer):  # type: ignore[no-untyped-def]
    c = client_for(cp)
    post_form(c, "/signup", signup_fields())
    token = link_from(mailer.outbox[-1].text, "/verify")
    assert c.http.get(f"/verify?token={token}", headers=HOST).status_code == 303
    return c


def login(client, password: str = STRONG, email: str = "ann@example.com"):  # type: ignore[no-untyped-def]
    return post_form(client, "/login", {"email": email, "password": password})


def cookie_of(resp) -> str:  # type: ignore[no-untyped-def]
    return str(resp.headers["Set-Cookie"]).split(";")[0]


def test_passwords_are_stored_as_argon2id_hashes(cp, client) -> None:  # type: ignore[no-untyped-def]
    """The account item holds an $argon2id$ hash and never the password."""
    item = cp.stores.accounts.get("ann@example.com")
    assert item["password_hash"].startswith("$argon2id$")
    assert STRONG not in str(item)


def test_login_sets_a_strict_httponly_cookie_and_opens_the_portal(client) -> None:  # type: ignore[no-untyped-def]
    """A right password gives a 303 to /billing with an HttpOnly SameSite=Strict cookie."""
    resp = login(client)
    assert resp.status_code == 303 and resp.headers["Location"] == "/billing"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie and not cookie.startswith("__Host-")  # plain-HTTP loopback
    page = client.http.get("/billing", headers={**HOST, "Cookie": cookie_of(resp)})
    assert page.status_code == 200 and b"acme" in page.body and b"trialing" in page.body
    assert b'<span id="tenant-state">(running)</span>' in page.body
    assert b"1 workspace(s) \xc2\xb7 5 seats \xc2\xb7 10 mailboxes" in page.body


def test_over_https_the_cookie_is_host_prefixed_and_secure() -> None:
    """With the public scheme https the session cookie is __Host- prefixed and Secure."""
    cp = plane(public_scheme="https", edge_port=443)
    session = cp.sessions.start("ann@example.com")
    cookie = cp.sessions.set_cookie(session)
    assert cookie.startswith("__Host-paitho_session=") and "Secure" in cookie


def test_the_session_id_is_stored_only_as_a_hash(cp, client) -> None:  # type: ignore[no-untyped-def]
    """The sessions table never holds the cookie value itself."""
    value = cookie_of(login(client)).split("=", 1)[1]
    assert all(value not in str(item) for item in cp.stores.sessions.scan())


def test_a_wrong_password_is_refused_with_one_message(client) -> None:  # type: ignore[no-untyped-def]
    """Unknown email and wrong password give the same 401 message."""
    wrong = login(client, "not-the-right-password")
    unknown = login(client, STRONG, "nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert b"email or password is not right" in wrong.body
    assert b"email or password is not right" in unknown.body


def test_login_locks_out_with_growing_delays(client, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    """After 5 failures the account is locked 2 s, then 4 s, then 8 s; the right password waits."""
    for _ in range(5):
        assert login(client, "not-the-right-password").status_code == 401
    locked = login(client)
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "2"
    clock.advance(2.1)
    assert login(client, "not-the-right-password").status_code == 401
    assert login(client).headers["Retry-After"] == "4"
    clock.advance(4.1)
    login(client, "not-the-right-password")
    assert login(client).headers["Retry-After"] == "8"
    clock.advance(8.1)
    assert login(client).status_code == 303


def test_the_portal_requires_a_session(client) -> None:  # type: ignore[no-untyped-def]
    """Without a cookie /billing redirects to /login; a forged cookie does too."""
    assert client.http.get("/billing", headers=HOST).headers["Location"] == "/login"
    forged = {**HOST, "Cookie": "paitho_session=forged"}
    assert client.http.get("/billing", headers=forged).headers["Location"] == "/login"


def test_logout_ends_the_session(client) -> None:  # type: ignore[no-untyped-def]
    """After logout the old cookie no longer opens the portal."""
    cookie = cookie_of(login(client))
    headers = {**HOST, "Cookie": cookie}
    csrf = csrf_from(client.http.get("/billing", headers=headers).body)
    resp = client.http.post(
        "/logout", headers={**FORM_HEADERS, "Cookie": cookie}, body=f"csrf={csrf}".encode()
    )
    assert resp.status_code == 303 and "Max-Age=0" in resp.headers["Set-Cookie"]
    assert client.http.get("/billing", headers=headers).status_code == 303


def test_portal_forms_need_the_session_bound_csrf_token(client) -> None:  # type: ignore[no-untyped-def]
    """A plan change with an anonymous CSRF token is refused; with the session's it applies."""
    cookie = cookie_of(login(client))
    anon = csrf_from(client.http.get("/login", headers=HOST).body)
    hdrs = {**FORM_HEADERS, "Cookie": cookie}
    bad = client.http.post("/billing/plan", headers=hdrs, body=f"csrf={anon}&plan=agency".encode())
    assert bad.status_code == 400
    good_csrf = csrf_from(client.http.get("/billing", headers={**HOST, "Cookie": cookie}).body)
    ok = client.http.post(
        "/billing/plan", headers=hdrs, body=f"csrf={good_csrf}&plan=agency".encode()
    )
    assert ok.status_code == 303
    page = client.http.get("/billing", headers={**HOST, "Cookie": cookie}).body
    assert b'<dd id="plan">agency</dd>' in page


def test_password_reset_works_once_and_changes_the_password(  # type: ignore[no-untyped-def]
    client, mailer: MemoryMailer
) -> None:
    """The reset link sets a new password once; the old password stops working."""
    post_form(client, "/reset/request", {"email": "ann@example.com"}, csrf_page="/reset")
    token = link_from(mailer.last_to("ann@example.com").text, "/reset")  # type: ignore[union-attr]
    form_page = f"/reset?token={token}"
    new = "violet-mountain-orchard-7"
    resp = post_form(client, "/reset", {"token": token, "password": new}, csrf_page=form_page)
    assert resp.status_code == 200 and b"Password changed" in resp.body
    assert login(client, STRONG).status_code == 401
    assert login(client, new).status_code == 303
    again = post_form(
        client, "/reset", {"token": token, "password": "another-long-phrase-1"}, "/reset"
    )
    assert again.status_code == 400 and b"already been used" in again.body


def test_reset_rejects_a_weak_new_password_without_spending_the_link(  # type: ignore[no-untyped-def]
    client, mailer: MemoryMailer
) -> None:
    """A weak new password is refused inline (422) and the link still works afterwards."""
    post_form(client, "/reset/request", {"email": "ann@example.com"}, csrf_page="/reset")
    token = link_from(mailer.last_to("ann@example.com").text, "/reset")  # type: ignore[union-attr]
    weak = post_form(client, "/reset", {"token": token, "password": "short"}, "/reset")
    assert weak.status_code == 422 and b"at least 12" in weak.body
    ok = post_form(
        client, "/reset", {"token": token, "password": "violet-mountain-orchard-7"}, "/reset"
    )
    assert ok.status_code == 200


def test_a_reset_request_does_not_reveal_whether_an_account_exists(  # type: ignore[no-untyped-def]
    client, mailer: MemoryMailer
) -> None:
    """Known and unknown emails get the same page; only the known one gets mail."""
    sent = len(mailer.outbox)
    unknown = post_form(client, "/reset/request", {"email": "nobody@example.com"}, "/reset")
    known = post_form(client, "/reset/request", {"email": "ann@example.com"}, "/reset")
    assert unknown.body == known.body
    assert len(mailer.outbox) == sent + 1


def test_reset_requests_are_rate_limited(client) -> None:  # type: ignore[no-untyped-def]
    """Past five requests in an hour the reset form answers 429."""
    codes = [
        post_form(client, "/reset/request", {"email": "ann@example.com"}, "/reset").status_code
        for _ in range(6)
    ]
    assert codes[:5] == [200] * 5 and codes[5] == 429


def test_auth_and_admin_actions_are_audited_without_secrets(cp, client) -> None:  # type: ignore[no-untyped-def]
    """Signup, verify, failed and good logins leave audit entries holding no password or email."""
    login(client, "not-the-right-password")
    login(client)
    actions = [(e.action, e.outcome) for e in cp.audit.entries()]
    assert ("signup", "ok") in actions and ("verify", "ok") in actions
    assert ("login", "denied") in actions and ("login", "ok") in actions
    dump = str(cp.stores.audit.scan())
    assert STRONG not in dump and "ann@example.com" not in dump


def test_the_audit_log_cannot_overwrite_an_entry(cp) -> None:  # type: ignore[no-untyped-def]
    """The audit table only accepts new ids: re-putting an existing id is refused."""
    from chalicelib.errors import Conflict

    entry = cp.audit.record("test", "operator")
    with pytest.raises(Conflict):
        cp.stores.audit.put_new({"event_id": entry.event_id, "at": "x", "action": "forged"})
    assert not hasattr(cp.audit, "delete") and not hasattr(cp.audit, "update")


def test_a_password_reset_ends_every_open_session(client, mailer: MemoryMailer) -> None:  # type: ignore[no-untyped-def]
    """Sessions opened before a reset stop working once the password changes."""
    cookie = cookie_of(login(client))
    headers = {**HOST, "Cookie": cookie}
    assert client.http.get("/billing", headers=headers).status_code == 200
    post_form(client, "/reset/request", {"email": "ann@example.com"}, csrf_page="/reset")
    token = link_from(mailer.last_to("ann@example.com").text, "/reset")  # type: ignore[union-attr]
    post_form(client, "/reset", {"token": token, "password": "violet-mountain-orchard-7"}, "/reset")
    assert client.http.get("/billing", headers=headers).headers["Location"] == "/login"


def test_a_failed_start_can_be_retried_from_the_portal() -> None:
    """If provisioning fails at verification, the page says so and the portal retries it."""
    from tests.cp_support import FlakyTenants

    mailer, tenants = MemoryMailer(), FlakyTenants(failures=1)
    cp = plane(mailer=mailer, tenants=tenants)
    client = client_for(cp)
    post_form(client, "/signup", signup_fields())
    token = link_from(mailer.outbox[-1].text, "/verify")
    resp = client.http.get(f"/verify?token={token}", headers=HOST)
    assert resp.status_code == 502 and b"Start my workspace" in resp.body
    assert b"postgres" not in resp.body  # the launcher's reason stays in the operator's log
    cookie = cookie_of(login(client))
    page = client.http.get("/billing", headers={**HOST, "Cookie": cookie})
    assert b'<span id="tenant-state">(failed)</span>' in page.body
    csrf = csrf_from(page.body)
    resp = client.http.post(
        "/billing/start", headers={**FORM_HEADERS, "Cookie": cookie}, body=f"csrf={csrf}".encode()
    )
    assert resp.status_code == 303 and tenants.records["acme"].state == "running"
    assert cp.billing.get("acme").state == "trialing"


def test_the_production_hasher_is_argon2id_at_owasp_strength() -> None:
    """The default hasher is argon2id with at least 19 MiB, 2 passes (OWASP minimum)."""
    from argon2 import Type

    from chalicelib.accounts import default_hasher

    hasher = default_hasher()
    assert hasher.type is Type.ID
    assert hasher.memory_cost >= 19456 and hasher.time_cost >= 2
    assert hasher.hash("x" * 12).startswith("$argon2id$v=19$m=19456,t=2,p=1$")
