"""The tenant's web app (issue 8) over real clusters: setup with the one-time passphrase and its
confirmation, login, every page behind the guard, CSRF on every form, security headers on every
response, leads (keyset pages, exact-email search, import with preview and progress), keychain
write-only, audit chain status, DSAR, and read-only mode under an expired licence."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paitho_tenant.app import Settings, create_app

from tests.conftest import RunningCluster
from tests.functional.test_tenant_support import (
    ORIGIN,
    client_for,
    make_app,
    tenant_cluster,  # noqa: F401  (fixture)
    tenant_template,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.functional

FORM = {"Origin": ORIGIN, "X-Requested-With": ""}
EMAIL, PASSWORD = "owner@acme.test", "owner-password-123"
APP_PAGES = (
    "/app",
    "/app/leads",
    "/app/leads/import",
    "/app/brands",
    "/app/keychain",
    "/app/audit",
    "/app/export",
    "/app/workspaces",
    "/app/licence",
)


def token_of(html: str) -> str:
    match = re.search(r"name=\"?csrf_token\"? value=['\"]([^'\"]+)['\"]", html)
    assert match, "no csrf_token field on the page"
    return match.group(1)


def ui_setup_and_login(client: httpx.Client) -> str:
    """Drive the setup form (generated passphrase), its confirmation and the login form."""
    page = client.get("/setup")
    assert page.status_code == 200
    shown = client.post(
        "/setup",
        data={"owner_email": EMAIL, "owner_password": PASSWORD, "csrf_token": token_of(page.text)},
        headers=FORM,
    )
    assert shown.status_code == 201, shown.text
    passphrase = re.search(r'id="passphrase-text"[^>]*>([^<]+)<', shown.text)
    assert passphrase
    confirmed = client.post(
        "/setup/confirm",
        data={"passphrase": passphrase.group(1), "csrf_token": token_of(shown.text)},
        headers=FORM,
    )
    assert confirmed.status_code == 303 and confirmed.headers["location"] == "/login"
    login_page = client.get("/login")
    logged = client.post(
        "/login",
        data={"email": EMAIL, "password": PASSWORD, "csrf_token": token_of(login_page.text)},
        headers=FORM,
    )
    assert logged.status_code == 303 and logged.headers["location"] == "/app"
    return passphrase.group(1)


@contextmanager
def browser_like(cluster: RunningCluster, **settings: object) -> Iterator[httpx.Client]:
    app = create_app(
        Settings(admin_conninfo=cluster.conninfo(), slug="acme", origin=ORIGIN, **settings)  # type: ignore[arg-type]
    )
    with client_for(app) as client:
        client.headers.pop("X-Requested-With")
        yield client


def post_form(client: httpx.Client, path: str, page_path: str, **fields: str) -> httpx.Response:
    token = token_of(client.get(page_path).text)
    return client.post(path, data={**fields, "csrf_token": token}, headers=FORM)


def test_setup_confirm_login_and_guard(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """The passphrase is shown once with copy/download, a wrong confirmation is refused, the
    right one leads to login; app pages redirect to setup, login or unlock as the state asks."""
    with browser_like(tenant_cluster) as client:
        assert client.get("/app").headers["location"] == "/setup"
        page = client.get("/setup")
        shown = client.post(
            "/setup",
            data={
                "owner_email": EMAIL,
                "owner_password": PASSWORD,
                "csrf_token": token_of(page.text),
            },
            headers=FORM,
        )
        assert 'data-copy="passphrase-text"' in shown.text and "data-download" in shown.text
        wrong = client.post(
            "/setup/confirm",
            data={"passphrase": "not-it", "csrf_token": token_of(shown.text)},
            headers=FORM,
        )
        assert wrong.status_code == 401 and "passphrase-text" not in wrong.text
        assert client.get("/setup").headers["location"] == "/"
        assert client.get("/app").headers["location"] == "/login"
        bad_login = post_form(client, "/login", "/login", email=EMAIL, password="wrong-password-x")
        assert bad_login.status_code == 401 and "Wrong email or password" in bad_login.text
        ok = post_form(client, "/login", "/login", email=EMAIL, password=PASSWORD)
        assert ok.status_code == 303
        for path in APP_PAGES:
            response = client.get(path)
            assert response.status_code == 200, (path, response.text[:300])
        out = post_form(client, "/logout", "/app")
        assert out.status_code == 303 and client.get("/app").headers["location"] == "/login"


def test_headers_and_no_inline_code_on_every_page(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """Every response (page, static file, JSON, redirect, 404) carries the strict CSP and
    friends; pages hold no inline script, no style attribute and load nothing from elsewhere."""
    with browser_like(tenant_cluster) as client:
        ui_setup_and_login(client)
        responses = [
            client.get(p)
            for p in (
                *APP_PAGES,
                "/static/app.css",
                "/static/htmx.min.js",
                "/healthz",
                "/",
                "/nowhere",
                "/static/../web.py",
            )
        ]
        for response in responses:
            h = response.headers
            csp = h["content-security-policy"]
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
            assert h["referrer-policy"] == "no-referrer"
            assert (
                "camera=()" in h["permissions-policy"]
                and "geolocation=()" in h["permissions-policy"]
            )
            assert h["x-content-type-options"] == "nosniff"
            assert "strict-transport-security" not in h  # plain-HTTP loopback
        for response in responses[: len(APP_PAGES)]:
            html = response.text
            assert not re.search(r"<script(?![^>]*\ssrc=)", html), "inline script"
            assert " style=" not in html and "<style" not in html
            assert not re.search(r"(src|href)=\"?(https?:)?//", html), "a third-party URL"
            for form in re.findall(r"<form[^>]*method=\"post\".*?</form>", html, re.S):
                assert 'name="csrf_token"' in form
        assert responses[-1].status_code == 404


def test_hsts_over_https(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """With an https origin, HSTS is sent and the session cookie is __Host- and Secure."""
    origin = "https://acme.paitho.test"
    app = make_app(tenant_cluster, origin=origin)
    with client_for(app) as client:
        client.headers["Origin"] = origin
        response = client.get("/healthz")
        assert "max-age=" in response.headers["strict-transport-security"]
        made = client.post("/setup", json={"owner_email": EMAIL, "owner_password": PASSWORD})
        assert made.status_code == 201
        login = client.post("/login", json={"email": EMAIL, "password": PASSWORD})
        cookie = login.headers["set-cookie"].lower()
        assert cookie.startswith("__host-session=") and "; secure" in cookie
        assert "httponly" in cookie and "samesite=strict" in cookie and "domain=" not in cookie
        assert "max-age=" in client.get("/login").headers["strict-transport-security"]


def test_forms_need_the_session_token(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """An app form posted without the session's token, or from another origin, changes nothing."""
    with browser_like(tenant_cluster) as client:
        ui_setup_and_login(client)
        forged = client.post(
            "/app/brands", data={"name": "Forged", "csrf_token": "x" * 43}, headers=FORM
        )
        assert forged.status_code == 403
        cross = client.post(
            "/app/brands", data={"name": "Cross"}, headers={"Origin": "http://evil.example"}
        )
        assert cross.status_code == 403
        made = post_form(
            client,
            "/app/brands",
            "/app/brands",
            name="Acme Sales",
            voice="plain",
            sending_identity="Ana <ana@acme.test>",
        )
        assert made.status_code == 303
        page = client.get("/app/brands").text
        assert "Acme Sales" in page and "Forged" not in page and "Cross" not in page


def test_keychain_is_write_only_and_audit_chain_verifies(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """A stored key never comes back in a page (only its last four); the audit page shows the
    chain verified, with the key's addition in it."""
    secret = "sk-test-" + "q" * 20 + "WXYZ"
    with browser_like(tenant_cluster) as client:
        ui_setup_and_login(client)
        stored = post_form(
            client,
            "/app/keychain",
            "/app/keychain",
            kind="openai",
            label="Fake provider",
            secret=secret,
        )
        assert stored.status_code == 303
        page = client.get(stored.headers["location"]).text
        assert "Fake provider" in page and "WXYZ" in page and secret not in page
        assert "Key stored" in page
        audit_page = client.get("/app/audit").text
        assert "Chain verified" in audit_page and "keychain.added" in audit_page
        assert secret not in audit_page


def _import(client: httpx.Client, csv_bytes: bytes, mapping: dict[str, str] | None = None) -> str:
    page = client.get("/app/leads/import")
    preview = client.post(
        "/app/leads/import",
        data={"csrf_token": token_of(page.text)},
        files={"file": ("leads.csv", csv_bytes, "text/csv")},
        headers=FORM,
    )
    assert preview.status_code == 200, preview.text
    action = re.search(r'action="(/app/leads/import/[^"]+)"', preview.text)
    assert action
    fields = dict(
        re.findall(
            r'<select id="(map-\d+)"[^>]*>.*?<option value="([^"]+)" selected', preview.text, re.S
        )
    )
    fields.update(mapping or {})
    started = client.post(
        action.group(1), data={**fields, "csrf_token": token_of(preview.text)}, headers=FORM
    )
    assert started.status_code == 303
    deadline = time.monotonic() + 60
    while True:
        progress = client.get(started.headers["location"], headers={"HX-Request": "true"})
        if "import-done" in progress.text or 'role="alert"' in progress.text:
            return progress.text
        assert 'hx-trigger="every 500ms"' in progress.text
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_leads_import_preview_progress_pages_and_search(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """A CSV with an unusual email header is previewed, mapped by hand, imported with progress;
    the list pages by key (50 a page, next and previous), filters, and finds an exact email."""
    rows = "\n".join(f"Person {i},p{i:04d}@leadsco.io,Co {i}" for i in range(120))
    csv_bytes = ("Name,Contact,Company\n" + rows + "\n").encode()
    with browser_like(tenant_cluster) as client:
        ui_setup_and_login(client)
        page = client.get("/app/leads/import")
        preview = client.post(
            "/app/leads/import",
            data={"csrf_token": token_of(page.text)},
            files={"file": ("l.csv", csv_bytes, "text/csv")},
            headers=FORM,
        )
        assert "no email column" in preview.text and 'id="map-1"' in preview.text
        done = _import(client, csv_bytes, {"map-1": "email", "map-2": "company"})
        assert "120 imported" in done, done
        first = client.get("/app/leads").text
        assert (
            "120 leads" in first and "p0000@leadsco.io" in first and "p0050@leadsco.io" not in first
        )
        next_link = re.search(r'href="(/app/leads\?after=\d+)" rel="next"', first)
        assert next_link
        second = client.get(next_link.group(1)).text
        assert "p0050@leadsco.io" in second and "p0000@leadsco.io" not in second
        prev_link = re.search(r'href="(/app/leads\?before=\d+)" rel="prev"', second)
        assert prev_link and "p0000@leadsco.io" in client.get(prev_link.group(1)).text
        next_again = re.search(r'href="(/app/leads\?after=\d+)" rel="next"', second)
        assert next_again
        third = client.get(next_again.group(1)).text
        assert "p0119@leadsco.io" in third and 'rel="next"' not in third
        found = post_form(client, "/app/leads", "/app/leads", email="P0077@Leadsco.io").text
        assert "Lead found" in found and "p0077@leadsco.io" in found and "Co 77" in found
        missing = post_form(client, "/app/leads", "/app/leads", email="p0077@leadsco.i").text
        assert "No lead with that email" in missing
        ignored = client.get("/app/leads", params={"email": "p0077@leadsco.io"}).text
        assert "Lead found" not in ignored  # an address in the URL is not a search
        filtered = client.get("/app/leads", params={"status": "replied"}).text
        assert "No leads match these filters" in filtered
        partial = client.get("/app/leads", headers={"HX-Request": "true", "HX-Target": "leads"})
        assert partial.text.startswith('<div id="leads"') and "<html" not in partial.text
        assert "Chain verified" in client.get("/app/audit").text


def test_dsar_access_and_dashboard(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """DSAR access from the export page returns the person's rows; the dashboard counts them
    and draws its charts as SVG with a text alternative."""
    with browser_like(tenant_cluster) as client:
        ui_setup_and_login(client)
        _import(client, b"email,first_name\nzed@people.io,Zed\n")
        result = post_form(client, "/app/dsar", "/app/export", kind="access", email="zed@people.io")
        assert result.status_code == 200 and "zed@people.io" in result.text
        dash = client.get("/app").text
        assert '<svg id="chart-leads"' in dash and "<desc" in dash and ">1</span>" in dash


def test_expired_licence_means_read_only(tenant_cluster: RunningCluster, work_root: Path) -> None:  # noqa: F811
    """An expired licence shows the banner, refuses app changes and API writes (402), and still
    allows login, export and DSAR; a current one shows no banner."""
    import base64
    import json

    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes_raw()

    def token(exp: int) -> str:
        def b64(d: dict[str, object]) -> str:
            text = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(text).rstrip(b"=").decode()

        signing = (
            b64({"alg": "EdDSA", "kid": "k1", "typ": "paitho-licence"})
            + "."
            + b64(
                {
                    "lid": "lic_1",
                    "tenant": "acme",
                    "plan": "starter",
                    "limits": {},
                    "iat": 0,
                    "exp": exp,
                }
            )
        )
        sig = base64.urlsafe_b64encode(private.sign(signing.encode())).rstrip(b"=").decode()
        return f"{signing}.{sig}"

    licence_file = work_root / f"licence-{time.monotonic_ns()}.txt"
    licence_file.write_text(token(int(time.time()) - 10))
    settings = {"licence_file": licence_file, "licence_keys": (("k1", raw),)}
    with browser_like(tenant_cluster, **settings) as client:
        ui_setup_and_login(client)
        page = client.get("/app/brands")
        assert "Read-only." in page.text and "has expired" in page.text
        refused = post_form(client, "/app/brands", "/app/brands", name="Blocked")
        assert refused.status_code == 402 and "Blocked" not in client.get("/app/brands").text
        api = client.post(
            "/api/brands", json={"name": "x"}, headers={"X-Requested-With": "XMLHttpRequest"}
        )
        assert api.status_code == 402
        assert client.get("/api/export").status_code == 200
        access = post_form(client, "/app/dsar", "/app/export", kind="access", email="a@b.io")
        assert access.status_code == 200
        licence_file.write_text(token(int(time.time()) + 3600))
        assert "Read-only." not in client.get("/app/brands").text
        assert "Current" in client.get("/app/licence").text


def test_workspace_switch_scopes_the_pages(tenant_cluster: RunningCluster) -> None:  # noqa: F811
    """An agency's second workspace appears in the switcher; switching shows only its brands;
    the choice lives in the session (the only cookies are the session and the form token)."""
    with browser_like(tenant_cluster) as client:
        ui_setup_and_login(client)
        post_form(client, "/app/brands", "/app/brands", name="Default brand")
        made = post_form(client, "/app/workspaces", "/app/workspaces", name="Client B", region="us")
        assert made.status_code == 303
        page = client.get("/app/brands").text
        assert 'id="ws-switch"' in page and "Client B (US)" in page
        assert "Default brand" not in page  # the new workspace is current
        post_form(client, "/app/brands", "/app/brands", name="Client B brand")
        ids = re.findall(r'<option value="(\d+)"', client.get("/app").text)
        switched = post_form(client, "/app/workspace/switch", "/app", workspace=ids[0])
        assert switched.status_code == 303
        page = client.get("/app/brands").text
        assert "Default brand" in page and "Client B brand" not in page
        bad = post_form(client, "/app/workspace/switch", "/app", workspace="999")
        assert bad.status_code == 400
        assert {c.name for c in client.cookies.jar} <= {"session", "csrf"}
