"""The AI canary: drive every AI path through the real app (qualification, drafting, audit,
review, edits, enrichment, and the faults: malformed output twice, a malformed body, a revoked
key, a 429) with marker values, while the fake providers put their own marker in every field
of their raw responses that is not generated text (ids, fingerprints, headers). Then stop the
cluster and scan every byte of its data directory and the captured logs: no raw-response marker,
no lead fact, no provider key, no draft text in plaintext anywhere."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from tests.conftest import RunningCluster
from tests.fakes.fake_apollo import FakeApollo
from tests.fakes.fake_llm import FakeLLM
from tests.functional import test_ai_support as support
from tests.functional import test_tenant_support as tenant_support
from tests.functional.test_ai_support import MODELS, live_ai_app, seed

tenant_template = tenant_support.tenant_template
tenant_cluster = tenant_support.tenant_cluster
fake_llm = support.fake_llm

pytestmark = pytest.mark.functional


def scan(root: Path, needles: dict[str, bytes]) -> list[str]:
    hits = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path.relative_to(root)}: {n}" for n, v in needles.items() if v in data]
    return hits


def test_ai_canary_no_raw_response_or_plaintext_reaches_disk_or_logs(
    tenant_cluster: RunningCluster,
    fake_llm: FakeLLM,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """No provider-response marker, lead fact, key or draft text is on disk or in the logs."""
    caplog.set_level(logging.DEBUG)
    tag = uuid.uuid4().hex[:12]
    company = f"CanaryCo{tag}"
    control = f"canary-model-control-{tag}"
    with FakeApollo() as apollo, live_ai_app(tenant_cluster, fake_llm, apollo.url) as parts:
        client, app, _ = parts
        service = app.state.ai
        ws = client.get("/api/workspaces").json()[0]["id"]
        with service.connect() as conn:
            _, brand, leads, keys, secrets = seed(
                conn, service.data_key(), 3, company=company, workspace_id=ws, secret_tag=tag
            )
        compatible = f"/api/ai/endpoints/{keys['openai_compatible']}"
        assert client.put(compatible, json={"base_url": fake_llm.openai_base}).status_code == 204
        qualify = {"lead_id": leads[0], "brand_id": brand, "key_id": keys["openai"]}
        assert client.post("/api/ai/qualify", json={**qualify, "model": control}).status_code == 201
        drafts = []
        for n, kind in enumerate(("anthropic", "google", "openai_compatible"), start=1):
            settings = {
                "brand_id": brand,
                "mode": "review",
                "key_id": keys[kind],
                "model": MODELS[kind],
                "opt_out_line": f"Reply STOP {tag}",
            }
            assert client.put(f"/api/ai/campaigns/{n}", json=settings).status_code == 204
            made = client.post("/api/ai/drafts", json={"campaign_id": n, "lead_id": leads[1]})
            assert made.status_code == 201, made.text
            assert company in made.json()["subject"]
            drafts.append(made.json()["id"])
        assert client.post(f"/api/ai/drafts/{drafts[0]}/approve", json={}).status_code == 200
        edited = client.post(
            f"/api/ai/drafts/{drafts[1]}/edit",
            json={"subject": f"Edited for {company}", "body": f"Hello. Reply STOP {tag}"},
        )
        assert edited.status_code == 200
        # Faults: a 429 (retried), malformed output twice, a malformed body, a revoked key.
        fake_llm.script(["429"])
        assert client.post("/api/ai/qualify", json={**qualify, "model": "m"}).status_code == 201
        fake_llm.script(["bad_output", "bad_output"])
        assert client.post("/api/ai/qualify", json={**qualify, "model": "m"}).status_code == 502
        fake_llm.script(["malformed"])
        assert client.post("/api/ai/qualify", json={**qualify, "model": "m"}).status_code == 502
        fake_llm.revoke(secrets["openai"])
        assert client.post("/api/ai/qualify", json={**qualify, "model": "m"}).status_code == 424
        key = client.post(
            "/api/keychain",
            json={"kind": "enrichment", "label": "apollo", "secret": f"apollo-secret-{tag}"},
        ).json()
        client.post("/api/ai/enrichment/opt-in", json={"provider": "apollo", "key_id": key["id"]})
        assert client.post(f"/api/ai/enrichment/leads/{leads[2]}", json={}).status_code == 200
        runs = client.get("/api/ai/runs").json()
        assert {r["status"] for r in runs} == {"ok", "invalid_output", "failed"}
        assert len(apollo.requests) == 1 and len(fake_llm.requests) >= 12
        apollo_canary = apollo.canary
    with tenant_support.superuser_conn(tenant_cluster) as conn:
        conn.execute("CHECKPOINT")
    tenant_cluster.stop()

    needles = {
        "provider_raw_response": fake_llm.canary.encode(),
        "apollo_raw_response": apollo_canary.encode(),
        "lead_fact": company.encode(),
        "lead_email": b"lead1@example.test",
        "opt_out_line": f"Reply STOP {tag}".encode(),
        "enrichment_key": f"apollo-secret-{tag}".encode(),
        **{f"key_{k}": v.encode() for k, v in secrets.items()},
    }
    hits = scan(tenant_cluster.data_dir, {**needles, "control": control.encode()})
    assert [h for h in hits if not h.endswith(": control")] == [], hits
    assert any(h.endswith(": control") for h in hits), "the scan must see plaintext metadata"
    out, err = capfd.readouterr()
    logs = caplog.text + out + err
    assert "/api/ai/qualify" in logs  # the app's request log was captured
    leaked = [name for name, value in needles.items() if value in logs.encode()]
    assert leaked == [], leaked
