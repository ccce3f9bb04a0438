"""The signup flow through the routes: inline errors, no 500 on any input, one account and one
tenant for a double submission, verification provisions and redirects to the tenant's setup."""

from __future__ import annotations

import re
import threading
from urllib.parse import urlencode

import pytest

from chalicelib.mailer import MemoryMailer
from tests.cp_support import (
    FORM_HEADERS,
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
def tenants() -> FakeTenants:
    return FakeTenants()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cp(mailer: MemoryMailer, tenants: FakeTenants, clock: Clock):  # type: ignore[no-untyped-def]
    return plane(mailer=mailer, tenants=tenants, clock=clock)


@pytest.fixture
def client(cp):  # type: ignore[no-untyped-def]
    return client_for(cp)


def test_landing_lists_the_four_plans(client) -> None:  # type: ignore[no-untyped-def]
    """The landing page shows Starter, Pro, Agency and Enterprise with links to sign up."""
    body = client.http.get("/", headers=HOST).body.decode()
    for plan in ("starter", "pro", "agency", "enterprise"):
        assert f'href="/signup?plan={plan}"' in body
    assert "Self-host option" in body and "10 workspaces" in body


def test_signup_form_has_exactly_the_six_fields(client) -> None:  # type: ignore[no-untyped-def]
    """The form posts email, password, company, subdomain, region, plan (plus the CSRF token)."""
    body = client.http.get("/signup?plan=agency", headers=HOST).body.decode()
    form = body[body.index("<form") : body.index("</form>")]
    names = set(re.findall(r'name="([a-z]+)"', form))
    assert names == {"csrf", "email", "password", "company", "subdomain", "region", "plan"}
    assert '<option value="agency" selected>' in body
    assert "<script" not in body


def test_signup_then_verify_lands_on_the_tenant_setup_page(  # type: ignore[no-untyped-def]
    client, mailer: MemoryMailer, tenants: FakeTenants
) -> None:
    """A valid signup mails a link; following it creates the tenant and 303s to its /setup."""
    resp = post_form(client, "/signup", signup_fields())
    assert resp.status_code == 200 and b"Check your mail" in resp.body
    mail = mailer.last_to("ann@example.com")
    assert mail is not None and tenants.records == {}
    token = link_from(mail.text, "/verify")
    resp = client.http.get(f"/verify?token={token}", headers=HOST)
    assert resp.status_code == 303
    assert resp.headers["Location"] == "http://acme.localhost:8000/setup"
    assert tenants.records["acme"].plan == "pro" and tenants.records["acme"].region == "eu"


def test_the_verification_link_works_once(client, mailer: MemoryMailer) -> None:  # type: ignore[no-untyped-def]
    """Following the link a second time shows a 400 page, not a second tenant."""
    post_form(client, "/signup", signup_fields())
    token = link_from(mailer.outbox[-1].text, "/verify")
    assert client.http.get(f"/verify?token={token}", headers=HOST).status_code == 303
    again = client.http.get(f"/verify?token={token}", headers=HOST)
    assert again.status_code == 400 and b"already been used" in again.body


def test_an_expired_verification_link_is_refused(  # type: ignore[no-untyped-def]
    client, mailer: MemoryMailer, clock: Clock, tenants: FakeTenants
) -> None:
    """After 24 hours the link is refused and nothing is provisioned."""
    post_form(client, "/signup", signup_fields())
    token = link_from(mailer.outbox[-1].text, "/verify")
    clock.advance(24 * 3600 + 1)
    resp = client.http.get(f"/verify?token={token}", headers=HOST)
    assert resp.status_code == 400 and b"expired" in resp.body
    assert tenants.records == {}


def test_invalid_fields_come_back_inline_with_the_values(client) -> None:  # type: ignore[no-untyped-def]
    """Errors render next to their fields (422), keep what was typed, never echo the password."""
    resp = post_form(
        client, "/signup", signup_fields(subdomain="www", email="nope", password="hunter2hunter")
    )
    body = resp.body.decode()
    assert resp.status_code == 422
    assert 'id="subdomain-error"' in body and "reserved" in body
    assert 'id="email-error"' in body and 'value="nope"' in body
    assert "hunter2hunter" not in body


def test_markup_is_escaped_when_echoed(client) -> None:  # type: ignore[no-untyped-def]
    """A company name with markup is shown escaped, never as live HTML."""
    resp = post_form(client, "/signup", signup_fields(company="<script>x</script>", email="bad"))
    assert b"<script>x</script>" not in resp.body
    assert b"&lt;script&gt;" in resp.body


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"email=&password=&company=&subdomain=&region=&plan=",
        b"\x00\xff\xfe\x80" * 100,
        b"email=%ff%fe&subdomain=%c0%af&company=%00",
        b"email=" + b"a" * 15_000,
        b"subdomain=acme'%20OR%201=1;--&company=Robert');DROP TABLE accounts;--",
        b"&&&===&&&",
        b"a=" + b"&a=" * 5000,
        b"email=<img src=x onerror=alert(1)>&company=<svg/onload=alert(1)>",
    ],
)
def test_no_body_produces_a_500(client, body: bytes) -> None:  # type: ignore[no-untyped-def]
    """Empty, binary, huge, SQL and markup bodies get a 4xx page, never a server error."""
    page = client.http.get("/signup", headers=HOST)
    csrf = csrf_from(page.body)
    for payload in (body, body + b"&csrf=" + csrf.encode()):
        resp = client.http.post("/signup", headers=FORM_HEADERS, body=payload)
        assert 400 <= resp.status_code < 500, resp.body[:300]


def test_an_oversized_form_is_refused_with_413(client) -> None:  # type: ignore[no-untyped-def]
    """A body over the limit is answered 413 with a readable page."""
    resp = client.http.post("/signup", headers=FORM_HEADERS, body=b"company=" + b"x" * 20_000)
    assert resp.status_code == 413


def test_a_post_without_a_csrf_token_is_refused(client, mailer: MemoryMailer) -> None:  # type: ignore[no-untyped-def]
    """A form post lacking a valid CSRF token creates nothing and asks to resubmit."""
    resp = client.http.post(
        "/signup", headers=FORM_HEADERS, body=urlencode(signup_fields()).encode()
    )
    assert resp.status_code == 400 and b"expired" in resp.body
    assert mailer.outbox == []


def test_a_cross_site_post_is_refused(client, mailer: MemoryMailer) -> None:  # type: ignore[no-untyped-def]
    """An Origin naming another site is refused with 403."""
    csrf = csrf_from(client.http.get("/signup", headers=HOST).body)
    resp = client.http.post(
        "/signup",
        headers={**FORM_HEADERS, "Origin": "http://evil.example"},
        body=urlencode({"csrf": csrf, **signup_fields()}).encode(),
    )
    assert resp.status_code == 403 and mailer.outbox == []


def test_double_submission_gives_one_account_and_one_tenant(  # type: ignore[no-untyped-def]
    cp, client, mailer: MemoryMailer, tenants: FakeTenants
) -> None:
    """The same form sent four times at once yields one account, one mail, one tenant."""
    csrf = csrf_from(client.http.get("/signup", headers=HOST).body)
    body = urlencode({"csrf": csrf, **signup_fields()}).encode()
    statuses: list[int] = []

    def submit() -> None:
        statuses.append(client.http.post("/signup", headers=FORM_HEADERS, body=body).status_code)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 4
    assert len(cp.stores.accounts.scan()) == 1 and len(cp.stores.claims.scan()) == 1
    assert len(mailer.outbox) == 1
    token = link_from(mailer.outbox[0].text, "/verify")
    client.http.get(f"/verify?token={token}", headers=HOST)
    assert [c for c in tenants.calls if c[0] == "create"] == [("create", "acme")]


def test_a_taken_subdomain_is_refused_inline(client, tenants: FakeTenants) -> None:  # type: ignore[no-untyped-def]
    """A subdomain claimed by another signup, or an existing tenant, is reported as taken."""
    post_form(client, "/signup", signup_fields())
    resp = post_form(client, "/signup", signup_fields(email="bob@example.com"))
    assert resp.status_code == 422 and b"already taken" in resp.body
    tenants.create("globex")
    resp = post_form(client, "/signup", signup_fields(email="cy@example.com", subdomain="globex"))
    assert resp.status_code == 422 and b"already taken" in resp.body


def test_an_email_with_an_account_cannot_claim_a_second_subdomain(  # type: ignore[no-untyped-def]
    cp, client
) -> None:
    """The same email with a different subdomain is refused, and the new claim is released."""
    post_form(client, "/signup", signup_fields())
    resp = post_form(client, "/signup", signup_fields(subdomain="other"))
    assert resp.status_code == 422 and b"already exists" in resp.body
    assert [c["subdomain"] for c in cp.stores.claims.scan()] == ["acme"]


def test_signups_from_one_address_are_rate_limited(mailer: MemoryMailer) -> None:
    """Past the signup rule's limit, a client gets 429 with Retry-After, growing each time."""
    from chalicelib.cpconfig import RateRule

    cp = plane(mailer=mailer, signup_rule=RateRule(3, 3600, 2.0, 60.0))
    client = client_for(cp)
    for i in range(3):
        assert (
            post_form(client, "/signup", signup_fields(company=f"c{i}", email="x")).status_code
            == 422
        )
    first = post_form(client, "/signup", signup_fields(email="x"))
    assert first.status_code == 429 and first.headers["Retry-After"] == "2"


def test_a_null_origin_post_is_refused(client, mailer: MemoryMailer) -> None:  # type: ignore[no-untyped-def]
    """`Origin: null` (a sandboxed frame or a no-referrer page elsewhere) is refused with 403."""
    csrf = csrf_from(client.http.get("/signup", headers=HOST).body)
    resp = client.http.post(
        "/signup",
        headers={**FORM_HEADERS, "Origin": "null"},
        body=urlencode({"csrf": csrf, **signup_fields()}).encode(),
    )
    assert resp.status_code == 403 and mailer.outbox == []


def test_a_same_origin_post_is_accepted(client, mailer: MemoryMailer) -> None:  # type: ignore[no-untyped-def]
    """The browser's own Origin for this host passes the check."""
    csrf = csrf_from(client.http.get("/signup", headers=HOST).body)
    resp = client.http.post(
        "/signup",
        headers={**FORM_HEADERS, "Origin": "http://localhost:8000"},
        body=urlencode({"csrf": csrf, **signup_fields()}).encode(),
    )
    assert resp.status_code == 200 and len(mailer.outbox) == 1


def test_an_unverified_claim_expires_and_can_be_taken_over(  # type: ignore[no-untyped-def]
    cp, client, mailer: MemoryMailer, clock: Clock, tenants: FakeTenants
) -> None:
    """A subdomain held by a signup never verified is free again once its link expired."""
    post_form(client, "/signup", signup_fields())
    stale_token = link_from(mailer.outbox[-1].text, "/verify")
    resp = post_form(client, "/signup", signup_fields(email="bob@example.com"))
    assert resp.status_code == 422  # still fresh: taken
    clock.advance(24 * 3600 + 1)
    resp = post_form(client, "/signup", signup_fields(email="bob@example.com"))
    assert resp.status_code == 200
    assert [c["email"] for c in cp.stores.claims.scan()] == ["bob@example.com"]
    assert [a["email"] for a in cp.stores.accounts.scan()] == ["bob@example.com"]
    assert client.http.get(f"/verify?token={stale_token}").status_code == 400
    bob = link_from(mailer.last_to("bob@example.com").text, "/verify")  # type: ignore[union-attr]
    assert client.http.get(f"/verify?token={bob}").status_code == 303
    assert tenants.records["acme"].state == "running"


def test_a_verified_claim_is_never_taken_over(  # type: ignore[no-untyped-def]
    client, mailer: MemoryMailer, clock: Clock
) -> None:
    """Once verified, the subdomain stays its owner's however much time passes."""
    post_form(client, "/signup", signup_fields())
    client.http.get(f"/verify?token={link_from(mailer.outbox[-1].text, '/verify')}")
    clock.advance(90 * 24 * 3600)
    resp = post_form(client, "/signup", signup_fields(email="bob@example.com"))
    assert resp.status_code == 422 and b"already taken" in resp.body


def test_a_stale_pending_account_can_sign_up_again(  # type: ignore[no-untyped-def]
    cp, client, mailer: MemoryMailer, clock: Clock
) -> None:
    """The same email, its first link expired, may sign up again with another subdomain."""
    post_form(client, "/signup", signup_fields())
    clock.advance(24 * 3600 + 1)
    resp = post_form(client, "/signup", signup_fields(subdomain="acme-two"))
    assert resp.status_code == 200
    assert [c["subdomain"] for c in cp.stores.claims.scan()] == ["acme-two"]
    assert cp.stores.accounts.get("ann@example.com")["subdomain"] == "acme-two"


def test_a_link_whose_claim_was_taken_over_is_refused(  # type: ignore[no-untyped-def]
    cp, client, mailer: MemoryMailer, tenants: FakeTenants
) -> None:
    """If the subdomain no longer belongs to the link's account, nothing is provisioned."""
    post_form(client, "/signup", signup_fields())
    token = link_from(mailer.outbox[-1].text, "/verify")
    cp.stores.claims.update("acme", {"email": "someone-else@example.com"})
    resp = client.http.get(f"/verify?token={token}")
    assert resp.status_code == 400 and b"sign up again" in resp.body
    assert tenants.records == {}
