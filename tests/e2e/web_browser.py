"""Browser helpers for the tenant web app's e2e tests: the distribution's Chromium through
Playwright (never a downloaded browser), axe-core from the npm registry (cached under
.venv/share/axe), a recorder of every request the pages make, and a tenant served on a loopback
port whose origin is the one the browser uses."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from paitho_tenant.app import Settings, create_app
from starlette.applications import Starlette

from tests.conftest import RunningCluster

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
AXE_DIR = ROOT / ".venv" / "share" / "axe"
AXE_SPEC = "axe-core@4"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def axe_script() -> Path:
    """axe.min.js, fetched once with `npm pack` from the npm registry when missing."""
    target = AXE_DIR / "axe.min.js"
    if target.is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed once to fetch axe-core (apt-get install npm)")
    AXE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [npm, "pack", AXE_SPEC, "--silent", "--pack-destination", tmp],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        tgz = Path(tmp) / out.stdout.strip().splitlines()[-1]
        with tarfile.open(tgz) as archive:
            member = archive.extractfile("package/axe.min.js")
            assert member is not None
            partial = target.with_suffix(".part")
            partial.write_bytes(member.read())
            partial.replace(target)
    return target


@dataclass
class Recorder:
    """Every request a page makes, and every console error (CSP violations show up there)."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("request", lambda r: self.requests.append(r.url))
        page.on(
            "console",
            lambda m: self.console_errors.append(m.text) if m.type == "error" else None,
        )

    def foreign(self, origin: str) -> list[str]:
        return [
            u
            for u in self.requests
            if not (u == origin or u.startswith(origin + "/"))
            and not u.startswith(("data:", "blob:"))
        ]


def run_axe(page: Any, axe_source: str) -> list[dict[str, Any]]:
    """axe-core on the current page: the serious and critical violations (empty = pass).
    Evaluated over the DevTools protocol, which the page's CSP does not apply to, so the page
    keeps its real policy while it is checked."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source + "\n;undefined")
    result = page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})); }"
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


def describe(violations: list[dict[str, Any]]) -> str:
    return json.dumps(violations, indent=1)


@contextmanager
def serve_tenant(cluster: RunningCluster, port: int) -> Iterator[tuple[str, Starlette]]:
    """The tenant app on 127.0.0.1:port with that as its own origin; yields (origin, app)."""
    origin = f"http://127.0.0.1:{port}"
    app = create_app(Settings(admin_conninfo=cluster.conninfo(), slug="acme", origin=origin))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield origin, app
    finally:
        server.should_exit = True
        thread.join(15)


@contextmanager
def chromium_page() -> Iterator[tuple[Any, Any]]:
    """(browser context, page) in the distribution's headless Chromium."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        raise RuntimeError("Debian's chromium is required (infra/local/bootstrap.sh installs it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        try:
            yield context, context.new_page()
        finally:
            context.close()
            browser.close()
