"""The tenant web app in a real browser (headless Chromium through Playwright, the
distribution's binary).

1. The journey on a tenant served alone: set up with the one-time passphrase (downloaded,
   confirmed), log in, seal and unlock, brand, provider key, CSV import through the mapping
   preview and live progress, keyset pages and exact-email search, audit chain, DSAR, export,
   workspaces, every page on a phone-sized screen too.
2. Outbound and AI: a mailbox tested against aiosmtpd and Dovecot, a campaign with two steps,
   the lead qualified and an AI draft by the fake provider approved in the review queue, the
   engine sending, the reply through Dovecot in the inbox with the lead stopped, the export
   holding the messages.
3. The whole platform: sign up on the control plane, the mailed link to the tenant's subdomain
   through the edge, setup, import.

Every main page is screenshotted under tests/artifacts/ and checked with axe-core (no serious or
critical violation); every request the tenant's pages make goes to the tenant's own origin and
no Content-Security-Policy violation is reported."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningCluster, free_port
from tests.e2e import test_cp_e2e as cp
from tests.e2e.conftest import Stack
from tests.e2e.web_browser import (
    ARTIFACTS,
    Recorder,
    axe_script,
    chromium_page,
    describe,
    run_axe,
    serve_tenant,
)
from tests.functional.test_tenant_support import (
    tenant_cluster,  # noqa: F401  (fixture)
    tenant_template,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.e2e
cp_stack = cp.cp_stack  # fixture: the whole platform with the control plane wired

EMAIL, PASSWORD = "owner@acme-e2e.io", "owner-password-123"
LEADS_CSV = "E-mail;Vorname;Firma\n" + "".join(
    f"lead{i:03d}@prospects.io;Name{i};Firma {i}\n" for i in range(75)
)


class Journey:
    def __init__(self, page: Any, origin: str, axe: str) -> None:
        self.page, self.origin, self.axe = page, origin, axe
        self.checked: list[str] = []

    def go(self, path: str) -> None:
        self.page.goto(self.origin + path)

    def check(self, name: str) -> None:
        """Screenshot the page and run axe-core on it."""
        self.page.screenshot(path=str(ARTIFACTS / f"web_{name}.png"), full_page=True)
        violations = run_axe(self.page, self.axe)
        assert not violations, f"{name}: {describe(violations)}"
        self.checked.append(name)


def test_tenant_journey_in_chromium(tenant_cluster: RunningCluster, tmp_path: Path) -> None:  # noqa: F811
    """The main pages work in a browser, pass axe, and make no request off the tenant's origin."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    axe = axe_script().read_text(encoding="utf-8")
    recorder = Recorder()
    csv_path = tmp_path / "leads.csv"
    csv_path.write_text(LEADS_CSV, encoding="utf-8")
    with serve_tenant(tenant_cluster, free_port()) as (origin, _), chromium_page() as (_, page):
        recorder.attach(page)
        j = Journey(page, origin, axe)

        # Setup: the passphrase is shown once, downloadable, and must be typed back.
        j.go("/")
        assert page.url.endswith("/setup")
        j.check("setup")
        page.fill("#owner_email", EMAIL)
        page.fill("#owner_password", PASSWORD)
        page.click("button:has-text('Set up')")
        passphrase = page.inner_text("#passphrase-text").strip()
        assert len(passphrase) >= 20
        j.check("passphrase")
        with page.expect_download() as download:
            page.click("button[data-download]")
        saved = tmp_path / "passphrase.txt"
        download.value.save_as(saved)
        assert saved.read_text().strip() == passphrase
        page.fill("#confirm", passphrase)
        page.click("button:has-text('I saved it')")
        assert page.url.endswith("/login")
        j.check("login")

        def log_in() -> None:
            page.fill("#email", EMAIL)
            page.fill("#password", PASSWORD)
            page.click("button:has-text('Log in')")
            assert page.url.endswith("/app")

        log_in()
        j.check("dashboard")

        # Seal from the settings page, then unlock with the passphrase.
        j.go("/app/settings")
        j.check("settings")
        page.click("button:has-text('Seal Paitho')")
        assert page.url.endswith("/unlock")
        j.check("unlock")
        page.fill("#passphrase", "not the passphrase")
        page.click("button:has-text('Unlock')")
        assert "Wrong passphrase" in page.inner_text("main")
        page.fill("#passphrase", passphrase)
        page.click("button:has-text('Unlock')")
        assert page.url.endswith("/login")
        log_in()

        # A brand and a provider key (write-only).
        j.go("/app/brands")
        page.fill("#brand-name", "Acme Outbound")
        page.fill("#brand-identity", "Ana from Acme <ana@acme-e2e.io>")
        page.fill("#brand-postal", "Acme GmbH, Hauptstrasse 1, 10115 Berlin")
        page.fill("#brand-voice", "Short, plain, friendly.")
        page.fill("#brand-icp", "Heads of sales at 20-200 person SaaS companies.")
        page.click("button:has-text('Create brand')")
        assert "Acme Outbound" in page.inner_text("table")
        j.check("brands")
        secret = "sk-fake-provider-0000000000XYZW"
        j.go("/app/keychain")
        page.select_option("#key-kind", "openai_compatible")
        page.fill("#key-label", "Fake LLM")
        page.fill("#key-secret", secret)
        page.click("button:has-text('Store key')")
        assert "XYZW" in page.inner_text("table") and secret not in page.content()
        j.check("keychain")

        # Import: preview with the detected mapping, then live progress until done.
        j.go("/app/leads/import")
        j.check("import_upload")
        page.set_input_files("#csv-file", str(csv_path))
        page.click("button:has-text('Preview')")
        assert page.input_value("#map-0") == "email"
        page.select_option("#map-1", "first_name")
        page.select_option("#map-2", "company")
        j.check("import_preview")
        page.click("button:has-text('Import')")
        page.wait_for_selector("#import-done", timeout=30_000)
        assert "75 imported" in page.inner_text("#import-done")
        j.check("import_done")

        # Leads: keyset pages and exact-email search (htmx swap of the table).
        page.click("a:has-text('See the leads')")
        assert "75 leads" in page.inner_text("#leads")
        j.check("leads")
        page.click("a[rel=next]")
        assert "lead050@prospects.io" in page.inner_text("#leads")
        page.fill("#lead-email", "Lead042@Prospects.io")
        page.click("button:has-text('Search')")
        page.wait_for_selector("caption:has-text('Lead found')")
        assert "Firma 42" in page.inner_text("#leads")
        j.check("leads_search")

        # Audit chain, DSAR, export.
        j.go("/app/audit")
        assert "Chain verified" in page.inner_text("#chain-status")
        j.check("audit")
        j.go("/app/export")
        page.fill("#dsar-email", "lead007@prospects.io")
        page.click("button:has-text('Run the request')")
        assert "lead007@prospects.io" in page.inner_text("pre.result")
        j.check("export_dsar")
        with page.expect_download() as download:
            page.click("a:has-text('Download the export')")
        zipped = tmp_path / "export.zip"
        download.value.save_as(zipped)
        with zipfile.ZipFile(zipped) as archive:
            assert any(n.startswith("leads") for n in archive.namelist())

        # Workspaces: a second one appears in the switcher; switching scopes the data.
        j.go("/app/workspaces")
        page.fill("#ws-name", "Client B")
        page.select_option("#ws-region", "us")
        page.click("button:has-text('Create workspace')")
        j.check("workspaces")
        page.select_option("#ws-switch", label="default (EU)")
        page.click("button:has-text('Switch')")
        j.go("/app/leads")
        assert "75 leads" in page.inner_text("#leads")
        j.go("/app/licence")
        j.check("licence")
        for name in ("mailboxes", "campaigns", "review", "inbox", "runs"):
            j.go(f"/app/{name}")
            j.check(name)

        # A phone-sized viewport still works.
        page.set_viewport_size({"width": 390, "height": 844})
        j.go("/app/leads")
        j.check("leads_phone")
        page.set_viewport_size({"width": 1280, "height": 900})

        page.click("button:has-text('Log out')")
        assert page.url.endswith("/login")

    foreign = recorder.foreign(origin)
    assert not foreign, f"requests off the tenant's origin: {foreign}"
    assert any(u.endswith("/static/htmx.min.js") for u in recorder.requests)
    csp = [m for m in recorder.console_errors if "Content Security Policy" in m]
    assert not csp, f"CSP violations: {csp}"
    assert len(j.checked) >= 15
    assert not re.search(r"sk-fake-provider", " ".join(recorder.requests))


def _reply(frm: str, to: str, subject: str, text: str, in_reply_to: str) -> bytes:
    return (
        f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <r-{frm}>\r\n"
        f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n"
        "Date: Fri, 04 Dec 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{text}\r\n"
    ).encode()


def test_campaign_send_and_reply_in_chromium(
    tenant_cluster: RunningCluster,  # noqa: F811
    work_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In the browser: a brand with its footer, leads, a mailbox that passes its connection
    test against real SMTP (aiosmtpd) and IMAP (Dovecot), a campaign with two steps, an AI
    draft by the fake provider approved in the review queue, the campaign started; the engine
    sends through SMTP, the lead's reply arrives in Dovecot, and the inbox shows the thread with
    the reply classified and the lead stopped (replied); the export holds the messages."""
    from paitho_tenant.ai import web as ai_web
    from paitho_tenant.ai.providers import ProviderRegistry
    from paitho_tenant.ai.service import AIService
    from paitho_tenant.db import app_conninfo
    from paitho_tenant.outbound.engine import OutboundEngine

    from tests.fakes.fake_llm import FakeLLM
    from tests.functional.outbound_support import mail_servers

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    axe = axe_script().read_text(encoding="utf-8")
    recorder = Recorder()
    csv_path = tmp_path / "two.csv"
    csv_path.write_text("email,first_name,company\nann@prospect.io,Ann,Prospect Inc\n")
    user = "sales1@acme.test"
    with (
        FakeLLM() as fake,
        mail_servers(work_root) as world,
        serve_tenant(tenant_cluster, free_port()) as (origin, app),
        chromium_page() as (_, page),
    ):
        monkeypatch.setenv("SSL_CERT_FILE", str(world.cert.cert))
        c = app.state.components
        registry = ProviderRegistry({"openai": fake.openai_base}, timeout=10.0)
        ai_web.install(app, AIService(lambda: c.pool.connection(timeout=10), c.vault.key, registry))
        recorder.attach(page)
        j = Journey(page, origin, axe)
        j.go("/setup")
        page.fill("#owner_email", EMAIL)
        page.fill("#owner_password", PASSWORD)
        page.click("button:has-text('Set up')")
        page.fill("#confirm", page.inner_text("#passphrase-text").strip())
        page.click("button:has-text('I saved it')")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("button:has-text('Log in')")
        j.go("/app/brands")
        page.fill("#brand-name", "Acme")
        page.fill("#brand-identity", "Alice at Acme")
        page.fill("#brand-postal", "Acme Ltd, 1 Main Street, 10115 Berlin")
        page.click("button:has-text('Create brand')")
        j.go("/app/leads/import")
        page.set_input_files("#csv-file", str(csv_path))
        page.click("button:has-text('Preview')")
        page.click("button:has-text('Import')")
        page.wait_for_selector("#import-done")

        j.go("/app/mailboxes")
        fields = {
            "#mb-label": "Sales one", "#mb-from": user, "#mb-user": user,
            "#mb-pass": world.users[user], "#mb-smtp": "127.0.0.1",
            "#mb-smtp-port": str(world.smtp.port), "#mb-imap": "127.0.0.1",
            "#mb-imap-port": str(world.dovecot.port),
        }  # fmt: skip
        for selector, value in fields.items():
            page.fill(selector, value)
        page.select_option("#mb-smtp-sec", "starttls")
        page.select_option("#mb-imap-sec", "ssl")
        page.click("button:has-text('Test connection')")
        assert "SMTP and IMAP both answered" in page.inner_text("main")
        page.fill("#mb-pass", world.users[user])
        page.click("button:has-text('Test and save')")
        assert user in page.inner_text("table")
        page.click("button:has-text('Test Sales one')")
        assert "Sales one: SMTP and IMAP both answered" in page.inner_text("main")
        j.check("mailboxes_added")

        j.go("/app/campaigns")
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
        assert "3 days later" in page.inner_text("main")
        page.click("button:has-text('Enrol leads')")

        # The AI drafts for the enrolled lead with the fake provider; a person approves it.
        j.go("/app/keychain")
        page.fill("#key-label", "Fake OpenAI")
        page.fill("#key-secret", "sk-fake-e2e-0000000000000000")
        page.click("button:has-text('Store key')")
        j.go("/app/campaigns")
        page.click("a:has-text('Launch')")
        page.fill("#ai-model", "gpt-test")
        page.click("button:has-text('Save AI settings')")
        page.click("button:has-text('Qualify leads')")
        assert "ann@prospect.io" in page.inner_text("#qualifications")
        j.check("campaign_qualified")
        page.click("button:has-text('Draft and audit')")
        assert page.url.split("?")[0].endswith("/app/review")
        assert "Audit passed." in page.inner_text("article.draft")
        j.check("review")
        page.click("article.draft button:has-text('Approve')")
        assert "Decision recorded." in page.inner_text("main")
        page.click("a:has-text('Approved')")
        assert "queued" in page.inner_text("article.draft")
        j.go("/app/runs")
        assert "gpt-test" in page.inner_text("table")
        j.check("runs_after_draft")
        page.click("table a")
        assert "Prompt" in page.inner_text("main")
        j.check("run")
        assert fake.requests, "the fake provider was not called"

        j.go("/app/campaigns")
        page.click("a:has-text('Launch')")
        page.click("button:has-text('Start')")
        assert page.inner_text("#campaign-status") == "active"
        j.check("campaign")

        components = app.state.components
        engine = OutboundEngine(
            app_conninfo(tenant_cluster.conninfo()),
            components.vault,
            origin,
            world.cert.client_context,
        )
        engine.cycle()
        sent = [m.message for m in world.handler.messages()]
        assert len(sent) == 1 and sent[0]["To"] == "ann@prospect.io"
        # an AI campaign sends the approved draft (the fake provider's), never the step template
        assert "A question for Prospect Inc" in str(sent[0]["Subject"])
        assert "Quick question" not in str(sent[0]["Subject"])
        world.dovecot.deliver(
            user,
            world.users[user],
            _reply("ann@prospect.io", user, "Re: " + str(sent[0]["Subject"]),
                   "Yes, call me on Tuesday.", str(sent[0]["Message-ID"])),
        )  # fmt: skip
        engine.cycle()

        j.go("/app/inbox")
        thread = page.inner_text("article.thread")
        assert "ann@prospect.io" in thread and "Yes, call me on Tuesday." in thread
        assert "reply" in thread and page.inner_text(".lead-status") == "replied"
        j.check("inbox")
        j.go("/app")
        j.check("dashboard_after_reply")
        j.go("/app/export")
        with page.expect_download() as download:
            page.click("a:has-text('Download the export')")
        zipped = tmp_path / "export.zip"
        download.value.save_as(zipped)
        with zipfile.ZipFile(zipped) as archive:
            assert any("messages" in n for n in archive.namelist())

    assert not recorder.foreign(origin), recorder.foreign(origin)


def test_signup_on_the_control_plane_then_the_tenant_in_chromium(
    cp_stack: Stack, tmp_path: Path
) -> None:
    """The whole platform (`paitho up`): sign up on the control plane, follow the mailed link
    to the new tenant's subdomain through the edge, set it up, confirm the passphrase, log in,
    create a brand, store the provider key, import leads; every request the tenant's pages make
    goes to the tenant's own origin."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    axe = axe_script().read_text(encoding="utf-8")
    base = f"http://localhost:{cp_stack.edge_port}"
    tenant_origin = f"http://webacme.localhost:{cp_stack.edge_port}"
    csv_path = tmp_path / "leads.csv"
    csv_path.write_text(LEADS_CSV, encoding="utf-8")
    with chromium_page() as (_, page):
        page.goto(base + "/signup?plan=pro")
        page.fill("#email", "web-ann@example.com")
        page.fill("#password", "quiet-harbour-lantern-93")
        page.fill("#company", "Acme Web")
        page.fill("#subdomain", "webacme")
        page.click("button[type=submit]")
        assert "web-ann@example.com" in page.inner_text("#check-mail")
        page.goto(cp.verify_link(cp_stack, "web-ann@example.com"))
        assert page.url == tenant_origin + "/setup"
        recorder = Recorder()
        recorder.attach(page)
        j = Journey(page, tenant_origin, axe)
        j.check("stack_setup")
        page.fill("#owner_email", "web-ann@example.com")
        page.fill("#owner_password", "owner-password-web-1")
        page.click("button:has-text('Set up')")
        passphrase = page.inner_text("#passphrase-text").strip()
        page.fill("#confirm", passphrase)
        page.click("button:has-text('I saved it')")
        page.fill("#email", "web-ann@example.com")
        page.fill("#password", "owner-password-web-1")
        page.click("button:has-text('Log in')")
        assert page.url == tenant_origin + "/app"
        j.go("/app/brands")
        page.fill("#brand-name", "Acme Web")
        page.fill("#brand-postal", "Acme Web Ltd, 2 Side Street, Leeds")
        page.click("button:has-text('Create brand')")
        j.go("/app/keychain")
        page.fill("#key-label", "Provider")
        page.fill("#key-secret", "sk-stack-0000000000000000")
        page.click("button:has-text('Store key')")
        j.go("/app/leads/import")
        page.set_input_files("#csv-file", str(csv_path))
        page.click("button:has-text('Preview')")
        page.click("button:has-text('Import')")
        page.wait_for_selector("#import-done", timeout=30_000)
        assert "75 imported" in page.inner_text("#import-done")
        j.go("/app")
        assert "75" in page.inner_text(".stats")
        j.check("stack_dashboard")
    assert not recorder.foreign(tenant_origin), recorder.foreign(tenant_origin)
