"""Signup to ready: from the signup form's submission to the new tenant answering /healthz at
its own subdomain through the edge, p50 over 10 signups on the whole local stack.

Each signup is timed as a person lives it: POST /signup, the verification mail read from the
local sink (home/mail), GET of the mailed link (which provisions the tenant), then /healthz at
`{slug}.localhost` through HAProxy until it answers 200. The baseline, measured on the same
signups, is the provisioning part alone (link followed → tenant answering); the ratio is the
whole flow over it, so it shows what signup, mail and verification add.

Uses the stack at PAITHO_E2E_BASE with PAITHO_HOME if both are set; otherwise starts
`paitho up` in a scratch home (tests/e2e/conftest.py) and stops it afterwards.

    .venv/bin/python -m bench bench_signup
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bench.common import median, percentile, record
from chalicelib.mailsink import last_mail, message_text

N = 10
READY_TIMEOUT_S = 60.0


def _wait_for_link(home: Path, email: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        msg = last_mail(home, email)
        if msg is not None:
            match = re.search(r"(https?://\S+/verify\?token=\S+)", message_text(msg))
            if match:
                return match.group(1)
        time.sleep(0.01)
    raise RuntimeError(f"no verification mail for {email} under {home / 'mail'}")


def one_signup(client: httpx.Client, base: str, home: Path, slug: str) -> tuple[float, float]:
    """Returns (submission → ready, link followed → ready) in seconds."""
    port = urlsplit(base).port or 80
    form = client.get(base + "/signup").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    if csrf is None:
        raise RuntimeError(f"{base}/signup serves no signup form: is the control plane wired?")
    email = f"{slug}@bench.example.com"
    began = time.perf_counter()
    resp = client.post(
        base + "/signup",
        data={
            "csrf": csrf.group(1),
            "email": email,
            "password": "quiet-harbour-lantern-92",
            "company": "Bench Co",
            "subdomain": slug,
            "region": "eu",
            "plan": "starter",
        },
    )
    if resp.status_code != 200 or "Check your mail" not in resp.text:
        raise RuntimeError(f"signup of {slug} failed with {resp.status_code}")
    link = _wait_for_link(home, email)
    link = link.replace(f"//localhost:{port}", f"//127.0.0.1:{port}", 1)
    followed = time.perf_counter()
    verify = client.get(link)
    if verify.status_code != 303:
        raise RuntimeError(f"verification of {slug} answered {verify.status_code}")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            health = client.get(
                f"http://127.0.0.1:{port}/healthz", headers={"Host": f"{slug}.localhost:{port}"}
            )
            if health.status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{slug} did not answer within {READY_TIMEOUT_S}s")
        time.sleep(0.02)
    ready = time.perf_counter()
    return ready - began, ready - followed


def measure(base: str, home: Path) -> None:
    run = secrets.token_hex(3)
    totals, provisioning = [], []
    with httpx.Client(timeout=60, follow_redirects=False) as client:
        for i in range(N):
            total, prov = one_signup(client, base, home, f"b{run}{i:02d}")
            totals.append(total)
            provisioning.append(prov)
    p50, base_p50 = median(totals), median(provisioning)
    record("signup_to_ready_p50_s", p50, "s", p50 / base_p50)
    record("signup_to_ready_p95_s", percentile(totals, 95), "s")
    record("signup_verify_to_ready_p50_s", base_p50, "s")


def main() -> None:
    base, home = os.environ.get("PAITHO_E2E_BASE"), os.environ.get("PAITHO_HOME")
    if base and home:
        measure(base.rstrip("/"), Path(home))
        return
    from tests.conftest import free_port
    from tests.e2e.conftest import start_stack, stop_stack

    root = Path(tempfile.mkdtemp(prefix="paitho-bench-signup-"))
    os.chmod(root, 0o755)  # noqa: S103 - the cluster user must traverse it
    stack = start_stack(root / "home", free_port())
    try:
        measure(f"http://127.0.0.1:{stack.edge_port}", stack.home)
    finally:
        stop_stack(stack)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
