"""The whole customer journey in one headless-Chromium session on the whole platform (`paitho up`,
with the tenant's outbound engine cycling every second): sign up on the control plane, the
verification link from the mail sink, the tenant's setup page at its own subdomain, the one-time
passphrase, seal and unlock, log in, import a CSV, a brand with its postal address, a provider key
pointed at the fake OpenAI-compatible provider, a mailbox on loopback SMTP (aiosmtpd) and IMAP
(Dovecot), a campaign qualified and drafted by the fake provider, the draft approved in the
review queue and then sent by the engine through SMTP (that exact subject, the brand's postal
address in the footer), the lead's threaded reply delivered to Dovecot and shown in the inbox
with the lead stopped, and the export (leads and messages) downloaded.

Every main page is screenshotted as tests/artifacts/journey_*.png, and every request the pages
make is recorded: on the signup pages they go to the control plane's origin (and the tenant's, the
verification link's redirect), everywhere after that to the tenant's own origin.

Two deliberate choices, both forced by the platform rather than by the test:
- The tenant app runs in its own process with a clean environment (the launcher passes only
  PAITHO_OUTBOUND_INTERVAL), so it cannot be told to trust a throwaway CA: the mailbox uses the
  plain mode the mailbox code allows on loopback only (SMTP AUTH and IMAP LOGIN without TLS).
- The keychain page has no field for an OpenAI-compatible key's base URL; the page sets it with
  the tenant's own JSON API (`PUT /api/ai/endpoints/{key_id}`, same origin, from the page).
"""

from __future__ import annotations

import re
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiosmtpd.controller import Controller

from chalicelib.mailsink import last_mail
from tests.conftest import free_port
from tests.e2e import test_cp_e2e as cp
from tests.e2e.conftest import Stack, start_stack, stop_stack
from tests.e2e.web_browser import ARTIFACTS, chromium_page
from tests.fakes.fake_llm import FakeLLM
from tests.functional.outbound_servers import Dovecot, SmtpHandler, make_cert

pytestmark = pytest.mark.e2e

T = TypeVar("T")
SLUG = "journey"
SIGNUP_EMAIL, SIGNUP_PASSWORD = "journey-ann@example.com", "quiet-harbour-lantern-41"
OWNER_PASSWORD = "owner-password-journey-1"
SALES, SALES_PASSWORD = "sales@journey.test", "mailbox-password-journey-7"
LEAD = "ann@prospect.io"
LEADS_CSV = (
    "E-mail;Vorname;Firma\n"
    f"{LEAD};Ann;Prospect Inc\n"
    "bob@prospect.io;Bob;Prospect Inc\n"
    "cleo@other.io;Cleo;Other GmbH\n"
)
WAIT = 90.0  # seconds for anything a background process does, on a loaded 2-core machine


def poll(what: str, probe: Callable[[], T | None], timeout: float = WAIT) -> T:
    """`probe()` until it returns something truthy; fails naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


@dataclass
class PlainMail:
    """Dovecot (IMAP LOGIN without TLS on its loopback listener, which Dovecot counts as secure)
    and aiosmtpd with AUTH over plain loopback SMTP; accepted messages are filed in Sent."""

    dovecot: Dovecot
    handler: SmtpHandler
    smtp_port: int


@contextmanager
def plain_mail(root: Path) -> Iterator[PlainMail]:
    users = {SALES: SALES_PASSWORD}
    dovecot = Dovecot(root / "dovecot", make_cert(root / "cert"), users)

    def file_sent(user: str, raw: bytes) -> None:
        dovecot.deliver(user, users[user], raw, "Sent")

    handler = SmtpHandler(users=dict(users), file_sent=file_sent)
    port = free_port()
    try:
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=port,
            authenticator=handler.authenticate,
            auth_required=True,
            auth_require_tls=False,
        )
        controller.start()
        try:
            yield PlainMail(dovecot, handler, port)
        finally:
            controller.stop()
    finally:
        dovecot.stop()


@contextmanager
def journey_stack(root: Path) -> Iterator[Stack]:
    stack = start_stack(root / "platform", free_port(), extra_env={"PAITHO_OUTBOUND_INTERVAL": "1"})
    try:
        if not cp.control_plane_wired(stack):
            pytest.skip("`paitho up` does not serve the control plane's signup pages")
        yield stack
    finally:
        stop_stack(stack)


class Requests:
    """Every request the page makes, tagged with the phase of the journey it belongs to."""

    def __init__(self, page: Any) -> None:
        self.phase = "signup"
        self.seen: list[tuple[str, str]] = []
        page.on("request", lambda r: self.seen.append((self.phase, r.url)))

    def outside(self, phase: str, *origins: str) -> list[str]:
        return [
            url
            for p, url in self.seen
            if p == phase
            and not url.startswith(("data:", "blob:"))
            and not any(url == o or url.startswith(o + "/") for o in origins)
        ]


def _reply(frm: str, to: str, subject: str, text: str, in_reply_to: str) -> bytes:
    return (
        f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <reply-journey@prospect.io>"
        f"\r\nIn-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n"
        "Date: Fri, 04 Dec 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{text}\r\n"
    ).encode()


# The loopback SMTP server takes AUTH without TLS on purpose (see the module's docstring).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_the_whole_customer_journey_in_chromium(work_root: Path, tmp_path: Path) -> None:
    """Signup to export in one browser session on `paitho up`: the engine really sends through
    SMTP, the threaded reply through Dovecot stops the lead, and no page leaves its origin."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    root = work_root / "jrny"  # short: unix socket paths under the platform's home are limited
    root.mkdir()
    csv_path = tmp_path / "leads.csv"
    csv_path.write_text(LEADS_CSV, encoding="utf-8")
    with (
        FakeLLM() as fake,
        plain_mail(root) as mail,
        journey_stack(root) as stack,
        chromium_page() as (_, page),
    ):
        page.set_default_timeout(60_000)
        cp_origin = f"http://localhost:{stack.edge_port}"
        origin = f"http://{SLUG}.localhost:{stack.edge_port}"
        seen = Requests(page)
        shots: list[str] = []

        def shot(name: str) -> None:
            page.screenshot(path=str(ARTIFACTS / f"journey_{name}.png"), full_page=True)
            shots.append(name)

        def go(path: str) -> None:
            page.goto(origin + path)

        # -- The control plane: sign up, then the link mailed to the local sink. --
        page.goto(cp_origin + "/signup?plan=pro")
        shot("signup")
        page.fill("#email", SIGNUP_EMAIL)
        page.fill("#password", SIGNUP_PASSWORD)
        page.fill("#company", "Journey Ltd")
        page.fill("#subdomain", SLUG)
        page.click("button[type=submit]")
        assert SIGNUP_EMAIL in page.inner_text("#check-mail")
        shot("check_mail")
        poll("the verification mail", lambda: last_mail(stack.home, SIGNUP_EMAIL))
        page.goto(cp.verify_link(stack, SIGNUP_EMAIL))
        assert page.url == origin + "/setup"
        seen.phase = "tenant"

        # -- Setup: the passphrase is shown once and must be typed back; then seal and unlock. --
        shot("setup")
        page.fill("#owner_email", SIGNUP_EMAIL)
        page.fill("#owner_password", OWNER_PASSWORD)
        page.click("button:has-text('Set up')")
        passphrase = page.inner_text("#passphrase-text").strip()
        assert len(passphrase) >= 20
        shot("passphrase")
        page.fill("#confirm", passphrase)
        page.click("button:has-text('I saved it')")
        assert page.url == origin + "/login"

        def log_in() -> None:
            page.fill("#email", SIGNUP_EMAIL)
            page.fill("#password", OWNER_PASSWORD)
            page.click("button:has-text('Log in')")
            assert page.url == origin + "/app"

        log_in()
        go("/app/settings")
        page.click("button:has-text('Seal Paitho')")
        assert page.url == origin + "/unlock"
        shot("unlock")
        page.fill("#passphrase", passphrase)
        page.click("button:has-text('Unlock')")
        assert page.url == origin + "/login"
        shot("login")
        log_in()
        shot("dashboard")

        # -- Leads from a CSV, through the column-mapping preview. --
        go("/app/leads/import")
        page.set_input_files("#csv-file", str(csv_path))
        page.click("button:has-text('Preview')")
        assert page.input_value("#map-0") == "email"
        page.select_option("#map-1", "first_name")
        page.select_option("#map-2", "company")
        shot("import_preview")
        page.click("button:has-text('Import')")
        page.wait_for_selector("#import-done", timeout=WAIT * 1000)
        assert "3 imported" in page.inner_text("#import-done")
        page.click("a:has-text('See the leads')")
        assert "3 leads" in page.inner_text("#leads")
        shot("leads")

        # -- A brand with its postal address (the footer of every email). --
        go("/app/brands")
        page.fill("#brand-name", "Journey")
        page.fill("#brand-identity", "Ana from Journey <sales@journey.test>")
        page.fill("#brand-postal", "Journey Ltd, 1 Main Street, 10115 Berlin")
        page.fill("#brand-icp", "Heads of sales at B2B software companies.")
        page.click("button:has-text('Create brand')")
        assert "Journey" in page.inner_text("table")
        shot("brands")

        # -- The provider key (write-only), pointed at the fake OpenAI-compatible server. --
        secret = "sk-journey-fake-000000000000WXYZ"
        go("/app/keychain")
        page.select_option("#key-kind", "openai_compatible")
        page.fill("#key-label", "Fake LLM")
        page.fill("#key-secret", secret)
        page.click("button:has-text('Store key')")
        assert "WXYZ" in page.inner_text("table") and secret not in page.content()
        shot("keychain")
        key_id = page.input_value("form:has(button:has-text('Remove Fake LLM')) input[name=key_id]")
        # No field on the keychain page for the base URL: the tenant's own JSON API, same origin.
        status = page.evaluate(
            """async ([id, url]) => (await fetch('/api/ai/endpoints/' + id, {
                method: 'PUT', referrerPolicy: 'same-origin',
                headers: {'Content-Type': 'application/json',
                          'X-Requested-With': 'XMLHttpRequest'},
                body: JSON.stringify({base_url: url})})).status""",
            [key_id, fake.openai_base],
        )
        assert status == 204, f"setting the provider's base URL answered {status}"

        # -- The mailbox: plain SMTP AUTH and IMAP LOGIN, allowed on loopback only. --
        go("/app/mailboxes")
        fields = {
            "#mb-label": "Sales", "#mb-from": SALES, "#mb-user": SALES,
            "#mb-pass": SALES_PASSWORD, "#mb-smtp": "127.0.0.1",
            "#mb-smtp-port": str(mail.smtp_port), "#mb-imap": "127.0.0.1",
            "#mb-imap-port": str(mail.dovecot.starttls_port),
        }  # fmt: skip
        for selector, value in fields.items():
            page.fill(selector, value)
        page.select_option("#mb-smtp-sec", "none")
        page.select_option("#mb-imap-sec", "none")
        page.click("button:has-text('Test and save')")
        assert SALES in page.inner_text("table"), page.inner_text("main")
        page.click("button:has-text('Test Sales')")
        assert "Sales: SMTP and IMAP both answered" in page.inner_text("main")
        shot("mailboxes")

        # -- A campaign: schedule, one sequence step, the leads enrolled, AI qualify and draft. --
        go("/app/campaigns")
        page.fill("#c-name", "Launch")
        page.fill("#c-start", "00:00")
        page.fill("#c-end", "23:59")
        for day in range(1, 8):
            page.check(f"input[name=day-{day}]")
        page.click("button:has-text('Create campaign')")
        page.fill("#s-subject-A", "Quick question, {{first_name|there}}")
        page.fill("#s-body-A", "Hi {{first_name|there}}, how does {{company}} do outbound?")
        page.click("button:has-text('Add step')")
        page.fill("#s-delay", "3")
        page.fill("#s-body-A", "Following up, {{first_name|there}}.")
        page.click("button:has-text('Add step')")
        assert "3 days later" in page.inner_text("main")  # the lead is still active on a reply
        page.click("button:has-text('Enrol leads')")
        page.select_option("#ai-key", key_id)
        page.fill("#ai-model", "gpt-journey")
        page.click("button:has-text('Save AI settings')")
        page.click("button:has-text('Qualify leads')")
        assert LEAD in page.inner_text("#qualifications")
        assert any(r.api_key == secret for r in fake.requests), "the fake provider was not called"
        shot("campaign_qualified")
        page.click("button:has-text('Draft and audit')")
        assert page.url.split("?")[0] == origin + "/app/review"
        assert "Audit passed." in page.inner_text("article.draft")
        shot("review")
        draft = page.locator(f"article.draft:has-text('{LEAD}')")
        draft_subject = draft.locator("input[name=subject]").input_value()
        assert draft_subject, "the fake provider's draft has no subject"
        draft.locator("button:has-text('Approve')").click()
        assert "Decision recorded." in page.inner_text("main")

        page.click("a:has-text('Approved')")
        assert "queued" in page.locator(f"article.draft:has-text('{LEAD}')").inner_text()

        # Started, the engine (every second, PAITHO_OUTBOUND_INTERVAL=1) sends the approved draft
        # as the lead's first step, with the brand's postal address in the footer.
        go("/app/campaigns")
        page.click("a:has-text('Launch')")
        page.click("button:has-text('Start')")
        assert page.inner_text("#campaign-status") == "active"
        shot("campaign")

        def sent_to_lead() -> list[EmailMessage]:
            return [
                message_from_bytes(m.raw, _class=EmailMessage, policy=policy.default)
                for m in mail.handler.messages()
                if LEAD in m.rcpt_tos
            ]

        sent = poll("the engine to send to the lead through SMTP", sent_to_lead)[0]
        assert SALES in str(sent["From"])
        assert str(sent["Subject"]) == draft_subject
        text = sent.get_body(preferencelist=("plain",))
        assert text is not None and "Journey Ltd, 1 Main Street" in text.get_content()

        # -- The lead replies in the thread; the engine reads it from Dovecot. --
        mail.dovecot.deliver(
            SALES,
            SALES_PASSWORD,
            _reply(LEAD, SALES, "Re: " + str(sent["Subject"]), "Yes, call me on Tuesday.",
                   str(sent["Message-ID"])),
        )  # fmt: skip

        thread = page.locator("article.thread:has-text('Yes, call me on Tuesday.')")

        def reply_in_inbox() -> bool:
            go("/app/inbox")
            return bool(thread.count())

        def lead_stopped() -> bool:
            if not reply_in_inbox():
                return False
            return bool(thread.first.locator(".lead-status").inner_text() == "replied")

        poll("the reply in the inbox", reply_in_inbox)
        assert LEAD in thread.first.inner_text()
        poll("the lead stopped (status replied) in the inbox", lead_stopped)
        shot("inbox")
        go("/app")
        shot("dashboard_after_reply")

        # -- Export: the download holds the leads and the messages. --
        go("/app/export")
        shot("export")
        with page.expect_download() as download:
            page.click("a:has-text('Download the export')")
        zipped = tmp_path / "export.zip"
        download.value.save_as(zipped)
        with zipfile.ZipFile(zipped) as archive:
            names = archive.namelist()
        assert any(n.startswith("leads") for n in names), names
        assert any("messages" in n for n in names), names

    assert not seen.outside("signup", cp_origin, origin), seen.outside("signup", cp_origin, origin)
    assert not seen.outside("tenant", origin), seen.outside("tenant", origin)
    assert any(p == "signup" and url.startswith(cp_origin + "/") for p, url in seen.seen)
    assert any(p == "tenant" and url.endswith("/static/htmx.min.js") for p, url in seen.seen)
    assert not re.search(re.escape(secret), " ".join(url for _, url in seen.seen))
    assert len(shots) >= 15
