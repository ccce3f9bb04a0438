"""Signup on the whole local stack (`paitho up`, the `stack` fixture): a real browser and then
curl sign up, read the verification mail from the local sink, follow the link and reach the
new tenant at its own subdomain through the edge."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.mailsink import last_mail, message_text
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def control_plane_wired(stack: Stack) -> bool:
    try:
        status, _, body = stack.get(f"localhost:{stack.edge_port}", "/signup")
    except (OSError, urllib.error.URLError):
        return False
    return status == 200 and b'name="csrf"' in body


@pytest.fixture
def cp_stack(stack: Stack) -> Stack:
    if not control_plane_wired(stack):
        pytest.skip(
            "`paitho up` does not serve the signup pages yet: the platform must inject the "
            "control plane (app.use(lambda: cpwiring.local_control_plane(settings, tenants, "
            "dynamodb, mail_sink.port))) and start chalicelib.mailsink.start_mail_sink(home)"
        )
    return stack


def verify_link(stack: Stack, email: str) -> str:
    msg = last_mail(stack.home, email)
    assert msg is not None, f"no mail for {email} under {stack.home / 'mail'}"
    match = re.search(r"(http://\S+/verify\?token=\S+)", message_text(msg))
    assert match, "the verification mail has no link"
    return match.group(1)


@pytest.fixture
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is required (infra/local/bootstrap.sh installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(java_script_enabled=False)
        yield context.new_page()
        context.close()
        browser.close()


def test_browser_signs_up_and_lands_on_the_tenant_setup_page(cp_stack: Stack, page: Any) -> None:
    """Landing → Pro → form → mail from the sink → link → http://e2eacme.localhost:PORT/setup."""
    base = f"http://localhost:{cp_stack.edge_port}"
    page.goto(base + "/")
    page.click("a[href='/signup?plan=pro']")
    page.fill("#email", "e2e-ann@example.com")
    page.fill("#password", "quiet-harbour-lantern-92")
    page.fill("#company", "Acme E2E")
    page.fill("#subdomain", "e2eacme")
    page.click("button[type=submit]")
    assert "e2e-ann@example.com" in page.inner_text("#check-mail")
    link = verify_link(cp_stack, "e2e-ann@example.com")
    response = page.goto(link)
    assert page.url == f"http://e2eacme.localhost:{cp_stack.edge_port}/setup"
    assert response is not None and response.status == 200
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "cp_e2e_tenant_setup.png"), full_page=True)
    status, _, _ = cp_stack.get(f"e2eacme.localhost:{cp_stack.edge_port}", "/healthz")
    assert status == 200


def test_curl_signs_up_against_127_0_0_1(cp_stack: Stack) -> None:
    """curl: GET the form, POST it, follow the mailed link, tenant healthy at its subdomain."""
    curl = shutil.which("curl")
    assert curl, "curl is required"
    base = f"http://127.0.0.1:{cp_stack.edge_port}"

    def run(*args: str) -> str:
        return subprocess.run(
            [curl, "-sS", *args], capture_output=True, text=True, check=True, timeout=120
        ).stdout

    form = run(base + "/signup")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    page = run(
        "-X", "POST", base + "/signup",
        "--data-urlencode", f"csrf={csrf.group(1)}",
        "--data-urlencode", "email=e2e-curl@example.com",
        "--data-urlencode", "password=violet-mountain-orchard-7",
        "--data-urlencode", "company=Curl Co",
        "--data-urlencode", "subdomain=e2ecurl",
        "--data-urlencode", "region=us",
        "--data-urlencode", "plan=starter",
    )  # fmt: skip
    assert "Check your mail" in page
    link = verify_link(cp_stack, "e2e-curl@example.com").replace("localhost", "127.0.0.1", 1)
    out = run("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", link)
    assert out == f"303 http://e2ecurl.localhost:{cp_stack.edge_port}/setup"
    health = run(
        "-o", "/dev/null", "-w", "%{http_code}",
        "-H", f"Host: e2ecurl.localhost:{cp_stack.edge_port}", base + "/healthz",
    )  # fmt: skip
    assert health == "200"


def test_posture_pages_answer_through_the_edge(cp_stack: Stack) -> None:
    """/trust, /status.json and security.txt are served at localhost through the edge."""
    host = f"localhost:{cp_stack.edge_port}"
    for path in ("/trust", "/status.json", "/.well-known/security.txt", "/changelog"):
        status, _, _ = cp_stack.get(host, path)
        assert status == 200, path
