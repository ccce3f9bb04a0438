"""THE CANARY TEST: drive every path that handles secrets or plaintext through the real HTTP app
(uvicorn, real cluster) with unique marker values, including the error paths (a wrong
passphrase, a failing import, a failed login), then stop the cluster and scan every byte of its
data directory (heap, WAL, server logs, statistics) and the app's captured log output. Any hit
of a marker, a passphrase or the data key fails the build."""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid
import zipfile
from pathlib import Path

import pytest

from tests.conftest import RunningCluster
from tests.functional.test_tenant_support import (
    client_for,
    make_app,
    superuser_conn,
    tenant_cluster,  # noqa: F401  (fixture)
    tenant_template,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.functional


def scan(root: Path, needles: dict[str, bytes]) -> list[str]:
    """Every (file, needle name) where a needle occurs, over all files under root."""
    hits = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        for name, needle in needles.items():
            if needle in data:
                hits.append(f"{path.relative_to(root)}: {name}")
    return hits


def test_canary_no_marker_reaches_disk_or_logs(
    tenant_cluster: RunningCluster,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """No marker, passphrase or data key appears in the data directory or the app's logs."""
    caplog.set_level(logging.DEBUG)
    tag = uuid.uuid4().hex[:12]
    m = {
        "passphrase": f"canarypass-{tag}-quartz-lumen-ferry",
        "new_passphrase": f"canaryrotated-{tag}-oxbow-tundra-kelp",
        "wrong_passphrase": f"canarywrong-{tag}-violet-brine-ox",
        "owner_email": f"canary-owner-{tag}@example.org",
        "owner_password": f"canary-ownerpw-{tag}",
        "login_email": f"canary-login-{tag}@example.org",
        "login_password": f"canary-loginpw-{tag}",
        "lead_email": f"canary-lead-{tag}@example.com",
        "lead_name": f"Canaryfirst{tag}",
        "lead_company": f"Canarycorp{tag}",
        "lead_notes": f"canary notes {tag} confidential",
        "bad_cell": f"canary-badcell-{tag}",
        "bad_header_cell": f"canary-headerless-{tag}",
        "secret": f"sk-canarykey{tag}ABCDEFGH",
        "smtp_secret": f"canary-smtp-{tag}",
        "msg_body": f"canary message body {tag}",
        "msg_subject": f"canary subject {tag}",
        "prompt": f"canary prompt {tag}",
        "response": f"canary response {tag}",
        "brand_voice": f"canary voice {tag}",
        "dsar_email": f"canary-dsar-{tag}@example.net",
    }
    key_material: dict[str, bytes] = {}

    with client_for(make_app(tenant_cluster)) as client:
        assert (
            client.post(
                "/setup",
                json={
                    "owner_email": m["owner_email"],
                    "owner_password": m["owner_password"],
                    "passphrase": m["passphrase"],
                },
            ).status_code
            == 201
        )
        # A failed login with marker credentials (an error path), then the real login.
        assert (
            client.post(
                "/login", json={"email": m["login_email"], "password": m["login_password"]}
            ).status_code
            == 401
        )
        assert (
            client.post(
                "/login", json={"email": m["owner_email"], "password": m["owner_password"]}
            ).status_code
            == 204
        )

        csv = (
            "Email Address,First Name,Company,Notes\r\n"
            f"{m['lead_email']},{m['lead_name']},{m['lead_company']},{m['lead_notes']}\r\n"
            f"{m['lead_email'].upper()},dup,dup,dup\r\n"
            f"{m['bad_cell']},x,y,z\r\n"
            f"{m['dsar_email']},Dsar,Subject,erase me\r\n"
        ).encode()
        imported = client.post("/api/leads/import", files={"file": ("leads.csv", csv, "text/csv")})
        assert imported.status_code == 200, imported.text
        body = imported.json()
        assert (body["imported"], body["duplicates"], len(body["errors"])) == (2, 1, 1)
        assert m["bad_cell"] not in imported.text
        # A failing import: no email column at all.
        failing = f"Name,Company\r\n{m['bad_header_cell']},{m['lead_company']}\r\n".encode()
        refused = client.post("/api/leads/import", files={"file": ("bad.csv", failing, "text/csv")})
        assert refused.status_code == 400
        assert m["bad_header_cell"] not in refused.text

        leads = client.get("/api/leads").json()
        lead_id = next(lead["id"] for lead in leads if lead["email"] == m["lead_email"])
        assert leads[0]["profile"]["company"] == m["lead_company"]

        stored = client.post(
            "/api/keychain", json={"kind": "openai", "label": "prod", "secret": m["secret"]}
        )
        assert stored.status_code == 201 and stored.json()["last4"] == "EFGH"
        assert m["secret"] not in stored.text
        client.post(
            "/api/keychain", json={"kind": "smtp", "label": "mail", "secret": m["smtp_secret"]}
        )
        assert m["secret"] not in client.get("/api/keychain").text

        brand = client.post("/api/brands", json={"name": "Acme", "voice": m["brand_voice"]})
        assert brand.status_code == 201
        msg = client.post(
            "/api/messages",
            json={
                "direction": "sent",
                "headers": {"Subject": m["msg_subject"], "To": m["lead_email"]},
                "body": m["msg_body"],
                "lead_id": lead_id,
            },
        )
        assert msg.status_code == 201
        assert client.get(f"/api/messages/{msg.json()['id']}").json()["body"] == m["msg_body"]
        run = client.post(
            "/api/stage-runs",
            json={
                "stage": "draft",
                "model": "gpt-test",
                "prompt": m["prompt"],
                "response": m["response"],
                "input_tokens": 12,
                "output_tokens": 34,
                "duration_ms": 56,
                "lead_id": lead_id,
            },
        )
        assert run.status_code == 201
        assert client.get(f"/api/stage-runs/{run.json()['id']}").json()["prompt"] == m["prompt"]

        access = client.post("/api/dsar", json={"kind": "access", "email": m["dsar_email"]})
        assert access.status_code == 200 and m["dsar_email"] in access.text
        erased = client.post("/api/dsar", json={"kind": "erasure", "email": m["dsar_email"]})
        assert erased.status_code == 200 and erased.json()["rows_affected"] == 1

        exported = client.get("/api/export")
        assert exported.status_code == 200
        with zipfile.ZipFile(io.BytesIO(exported.content)) as zf:
            assert m["msg_body"] in zf.read("messages.json").decode()

        rotated = client.post(
            "/api/vault/rotate",
            json={"current_passphrase": m["passphrase"], "new_passphrase": m["new_passphrase"]},
        )
        assert rotated.status_code == 200, rotated.text
        # Positive control: a workspace name is plaintext metadata by design; the scan must
        # find it, which proves the scanner sees what reaches the heap and the WAL.
        control = f"control-{tag}"
        assert (
            client.post("/api/workspaces", json={"name": control, "region": "us"}).status_code
            == 201
        )

    # Restart: sealed; a wrong passphrase; then the right one.
    app = make_app(tenant_cluster)
    with client_for(app) as client:
        assert client.get("/healthz").json() == {"state": "sealed"}
        assert client.post("/unlock", json={"passphrase": m["wrong_passphrase"]}).status_code == 401
        assert client.post("/unlock", json={"passphrase": m["new_passphrase"]}).status_code == 204
        key = app.state.components.vault.key()
        key_material = {
            "data key (hex)": key.column_key.encode(),
            "data key (base64)": base64.b64encode(key.raw),
            "data key (raw)": key.raw,
        }
        assert (
            client.post(
                "/login", json={"email": m["owner_email"], "password": m["owner_password"]}
            ).status_code
            == 204
        )
        assert client.get(f"/api/messages/{msg.json()['id']}").json()["body"] == m["msg_body"]

    with superuser_conn(tenant_cluster) as conn:
        conn.execute("CHECKPOINT")
        audit_text = json.dumps(
            [list(r) for r in conn.execute("SELECT actor, action, detail::text FROM audit_log")]
        )
    assert "vault.unlock_failed" in audit_text and "auth.login_failed" in audit_text
    tenant_cluster.stop()

    needles = {name: value.encode() for name, value in m.items()}
    needles.update(key_material)
    hits = scan(tenant_cluster.data_dir, {**needles, "control": control.encode()})
    assert [h for h in hits if not h.endswith(": control")] == [], hits
    assert any(h.endswith(": control") for h in hits), "the scan must see plaintext metadata"
    assert any((tenant_cluster.data_dir / "log").iterdir()), (
        "the server log must exist to be scanned"
    )
    out, err = capfd.readouterr()
    logs = caplog.text + out + err
    assert "vault unsealed" in logs  # the app's log output was captured
    leaked = [name for name, value in needles.items() if value in logs.encode()]
    assert leaked == [], leaked
