"""The platform-wide canary: markers driven through the real stack (edge → tenant HTTP API →
its own Postgres → nightly backup workflow) never appear in plaintext anywhere the platform
writes: the tenant's data directory (heap, WAL, logs), its app log, the backup objects, the
control plane's stores (the local DynamoDB snapshot), the mail sink, the edge, the job log and
the platform's own output."""

from __future__ import annotations

import base64
import io
import time
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def _variants(marker: str) -> list[bytes]:
    raw = marker.encode()
    return [raw, raw.hex().encode(), base64.b64encode(raw), marker.encode("utf-16-le")]


def _scan(root: Path, markers: dict[str, str]) -> list[str]:
    hits = []
    for path in [root] if root.is_file() else sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for name, marker in markers.items():
            if any(v in data for v in _variants(marker)):
                hits.append(f"{name} in {path}")
    return hits


def test_no_marker_reaches_any_file_the_platform_writes(stack: Stack) -> None:
    """Setup, a wrong unlock, unlock, login, import (with a failing row), keychain, messages,
    stage runs, then a backup: zero plaintext hits across every store."""
    tag = uuid.uuid4().hex[:12]
    markers = {
        "passphrase": f"Quartz-Lantern-{tag}-Meadow-Oboe-9!",
        "wrong_passphrase": f"Wrong-Harbor-{tag}-Violet-Kiwi-7?",
        "password": f"Owner-Pw-{tag}-Xylo!",
        "lead_email": f"zanzibar.{tag}@example.com",
        "lead_name": f"Zanzibarqx{tag}",
        "bad_row": f"notanemail{tag}",
        "api_key": f"sk-canary-{tag}-SECRETKEY",
        "body": f"Hello canary body {tag}",
        "prompt": f"canary prompt {tag}",
        "response": f"canary response {tag}",
    }
    slug = f"canary{tag[:6]}"
    stack.paitho("tenants", "create", slug)
    origin = f"http://{slug}.localhost:{stack.edge_port}"
    headers = {
        "Host": f"{slug}.localhost:{stack.edge_port}",
        "Origin": origin,
        "X-Requested-With": "XMLHttpRequest",
    }
    with httpx.Client(
        base_url=f"http://127.0.0.1:{stack.edge_port}", headers=headers, timeout=60
    ) as http:
        r = http.post(
            "/setup",
            json={
                "owner_email": f"owner{tag}@example.com",
                "owner_password": markers["password"],
                "passphrase": markers["passphrase"],
            },
        )
        assert r.status_code == 201, r.text
        http.post("/seal")
        assert (
            http.post("/unlock", json={"passphrase": markers["wrong_passphrase"]}).status_code
            == 401
        )
        r = http.post("/unlock", json={"passphrase": markers["passphrase"]})
        assert r.status_code == 204, r.text
        r = http.post(
            "/login", json={"email": f"owner{tag}@example.com", "password": markers["password"]}
        )
        assert r.status_code == 204, r.text
        csv = (
            "Email,First Name\n"
            f"{markers['lead_email']},{markers['lead_name']}\n"
            f"{markers['bad_row']},Someone\n"
        )
        r = http.post("/api/leads/import", files={"file": ("leads.csv", io.BytesIO(csv.encode()))})
        assert r.status_code == 200, r.text
        assert r.json()["imported"] == 1 and r.json()["errors"]
        r = http.post(
            "/api/keychain", json={"kind": "openai", "label": "main", "secret": markers["api_key"]}
        )
        assert r.status_code in (200, 201), r.text
        assert markers["api_key"] not in r.text
        r = http.post(
            "/api/messages",
            json={
                "direction": "sent",
                "body": markers["body"],
                "headers": {"Subject": markers["body"]},
            },
        )
        assert r.status_code == 201, r.text
        r = http.post(
            "/api/stage-runs",
            json={
                "stage": "draft",
                "model": "m",
                "prompt": markers["prompt"],
                "response": markers["response"],
                "input_tokens": 10,
                "duration_ms": 120,
                "output_tokens": 5,
            },
        )
        assert r.status_code == 201, r.text

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (stack.home / "tenants" / slug / "backup-recipient.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    done = stack.paitho("workflows", "run", "backup")
    assert f" {slug} " in done.stdout and "execution SUCCEEDED" in done.stdout, done.stdout
    stack.paitho("tenants", "suspend", slug)  # stops the cluster: heap flushed by the checkpoint
    time.sleep(2.5)  # the local AWS snapshot is written every second

    roots = [
        stack.home / "tenants" / slug,  # pgdata (heap, WAL, pg_stat, server log) and app log
        stack.home / "backups" / slug,
        stack.home / "aws",  # every control-plane table
        stack.home / "mail",
        stack.home / "edge",
        stack.home / "logs",
        stack.home / "run",
        stack.log_path,
    ]
    scanned = sum(1 for r in roots if r.exists())
    assert scanned >= 6
    hits = [hit for root in roots if root.exists() for hit in _scan(root, markers)]
    assert hits == []
    # the scanner itself works: the slug (metadata, not a secret) is found in the registry
    assert _scan(stack.home / "aws", {"slug": slug})
