"""A real headless Chromium (the distribution's, driven by Playwright) signs up without
JavaScript help, sees inline errors, reads the mail from the sink, follows the link and lands on
the tenant's setup page. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.mailsink import last_mail, message_text
from tests.cp_stack import MiniStack, mini_stack

pytestmark = pytest.mark.functional

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


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Debian's chromium is required: apt-get install chromium (see bootstrap)"
    return path


@pytest.fixture
def stack() -> Iterator[MiniStack]:
    with mini_stack() as s:
        yield s


@pytest.fixture
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        context = browser.new_context(java_script_enabled=False)
        yield context.new_page()
        context.close()
        browser.close()


def test_browser_signup_reaches_the_tenant_setup_page(stack: MiniStack, page: Any) -> None:
    """Landing → plan → form (with one inline error first) → mail link → tenant /setup."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(stack.base + "/")
    page.click("a[href='/signup?plan=agency']")
    page.fill("#email", "ann@example.com")
    page.fill("#password", "quiet-harbour-lantern-92")
    page.fill("#company", "Acme <Ltd>")
    page.fill("#subdomain", "admin")
    page.click("button[type=submit]")
    assert "reserved" in page.inner_text("#subdomain-error")
    assert page.input_value("#company") == "Acme <Ltd>"
    page.screenshot(path=str(ARTIFACTS / "cp_signup_inline_error.png"), full_page=True)
    page.fill("#password", "quiet-harbour-lantern-92")
    page.fill("#subdomain", "acme")
    page.click("button[type=submit]")
    assert "ann@example.com" in page.inner_text("#check-mail")
    msg = last_mail(stack.home, "ann@example.com")
    assert msg is not None
    link = next(w for w in message_text(msg).split() if "/verify?token=" in w)
    assert link.startswith(stack.base + "/verify?token=")
    page.goto(link)
    assert page.url == f"http://acme.localhost:{stack.port}/setup"
    assert page.inner_text("h1") == "Set up acme"
    page.screenshot(path=str(ARTIFACTS / "cp_signup_setup_page.png"), full_page=True)
    assert stack.tenants.records["acme"].plan == "agency"


def test_browser_login_opens_the_billing_portal(stack: MiniStack, page: Any) -> None:
    """After verification the person logs in and sees the portal; the cookie is HttpOnly."""
    page.goto(stack.base + "/signup?plan=pro")
    page.fill("#email", "bob@example.com")
    page.fill("#password", "violet-mountain-orchard-7")
    page.fill("#company", "Bob Co")
    page.fill("#subdomain", "bobco")
    page.click("button[type=submit]")
    msg = last_mail(stack.home, "bob@example.com")
    assert msg is not None
    page.goto(next(w for w in message_text(msg).split() if "/verify?token=" in w))
    page.goto(stack.base + "/login")
    page.fill("#email", "bob@example.com")
    page.fill("#password", "violet-mountain-orchard-7")
    page.click("button[type=submit]")
    assert page.url == stack.base + "/billing"
    assert page.inner_text("#subscription-state") == "trialing"
    cookies = page.context.cookies()
    assert [c["name"] for c in cookies] == ["paitho_session"]
    assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict"
    page.screenshot(path=str(ARTIFACTS / "cp_billing_portal.png"), full_page=True)
