"""The tenant web app in a real browser (headless Chromium through Playwright): set up with the
one-time passphrase, confirm it, log in, seal and unlock, create a brand, store a provider key,
import a CSV through the mapping preview and live progress, page and search the leads, check the
audit chain, run a DSAR, download the export, switch workspaces, log out. Every main page is
screenshotted under tests/artifacts/, checked with axe-core (no serious or critical violation),
and every request the pages make goes to the tenant's own origin."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningCluster, free_port
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
    with serve_tenant(tenant_cluster, free_port()) as origin, chromium_page() as (_, page):
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
        page.click("button:has-text('Apply')")
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
