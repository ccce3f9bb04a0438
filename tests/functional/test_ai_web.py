"""The AI routes through the real tenant app (uvicorn, real cluster, the fake provider): auth,
the review flow, faults as clear HTTP errors, budget, prices and enrichment."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from paitho_tenant.ai.service import AIService
from starlette.applications import Starlette

from tests.conftest import RunningCluster
from tests.fakes.fake_apollo import FakeApollo
from tests.fakes.fake_llm import FakeLLM
from tests.functional import test_ai_support as support
from tests.functional import test_tenant_support as tenant_support
from tests.functional.test_ai_support import MODELS, RecordingQueue, live_ai_app, seed

tenant_template = tenant_support.tenant_template
tenant_cluster = tenant_support.tenant_cluster
fake_llm = support.fake_llm

pytestmark = pytest.mark.functional


class Live:
    def __init__(self, client: httpx.Client, app: Starlette, queue: RecordingQueue) -> None:
        self.client, self.app, self.queue = client, app, queue
        service: AIService = app.state.ai
        key = service.data_key()
        ws = client.get("/api/workspaces").json()[0]["id"]
        with service.connect() as conn:
            _, self.brand, self.leads, self.keys, self.secrets = seed(conn, key, 2, workspace_id=ws)


@pytest.fixture
def live(tenant_cluster: RunningCluster, fake_llm: FakeLLM) -> Iterator[tuple[Live, FakeApollo]]:
    with FakeApollo() as apollo, live_ai_app(tenant_cluster, fake_llm, apollo.url) as parts:
        yield Live(*parts), apollo


def _campaign(live: Live, kind: str = "openai", mode: str = "review") -> dict[str, Any]:
    return {
        "brand_id": live.brand,
        "mode": mode,
        "key_id": live.keys[kind],
        "model": MODELS[kind],
        "opt_out_line": "Reply STOP to opt out.",
    }


def test_routes_need_a_session(live: tuple[Live, FakeApollo]) -> None:
    """Without the session cookie every AI route answers 401."""
    client = live[0].client
    anonymous = httpx.Client(base_url=str(client.base_url), headers=dict(client.headers))
    with anonymous:
        assert anonymous.get("/api/ai/runs").status_code == 401
        assert anonymous.post("/api/ai/drafts", json={}).status_code == 401


def test_review_flow_over_http(live: tuple[Live, FakeApollo], fake_llm: FakeLLM) -> None:
    """PUT campaign settings, POST a draft, read it, approve it: queued once; runs listed."""
    lv = live[0]
    c = lv.client
    assert c.put("/api/ai/campaigns/5", json=_campaign(lv)).status_code == 204
    made = c.post("/api/ai/drafts", json={"campaign_id": 5, "lead_id": lv.leads[0]})
    assert made.status_code == 201, made.text
    draft = made.json()
    assert draft["status"] == "awaiting_review"
    assert (
        c.get("/api/ai/drafts", params={"status": "awaiting_review"}).json()[0]["id"]
        == (draft["id"])
    )
    assert c.get(f"/api/ai/drafts/{draft['id']}").json()["body"] == draft["body"]
    approved = c.post(f"/api/ai/drafts/{draft['id']}/approve", json={})
    assert approved.status_code == 200 and approved.json()["status"] == "queued"
    assert lv.queue.queued == [draft["id"]]
    again = c.post(f"/api/ai/drafts/{draft['id']}/approve", json={})
    assert again.status_code == 409
    runs = c.get("/api/ai/runs").json()
    assert sorted(r["stage"] for r in runs) == ["audit", "draft"]
    assert all("prompt" not in r and "response" not in r for r in runs)
    assert [r.api_key for r in fake_llm.requests] == [lv.secrets["openai"]] * 2


def test_revoked_key_is_a_clear_http_error(
    live: tuple[Live, FakeApollo], fake_llm: FakeLLM
) -> None:
    """A revoked provider key answers 424 with a message naming the fix; the run shows it."""
    lv = live[0]
    fake_llm.revoke(lv.secrets["google"])
    c = lv.client
    assert c.put("/api/ai/campaigns/6", json=_campaign(lv, "google")).status_code == 204
    response = c.post("/api/ai/drafts", json={"campaign_id": 6, "lead_id": lv.leads[0]})
    assert response.status_code == 424
    assert response.json()["error"] == "provider_key_rejected"
    assert "replace it in the keychain" in response.json()["message"]
    [run] = c.get("/api/ai/runs").json()
    assert run["status"] == "failed" and run["error_code"] == "provider_key_rejected"
    assert c.get("/api/ai/drafts").json() == []


def test_budget_and_prices_over_http(live: tuple[Live, FakeApollo]) -> None:
    """A zero budget stops the next call with 402; prices are editable and listed."""
    lv = live[0]
    c = lv.client
    put = c.put(
        "/api/ai/prices",
        json={
            "provider": "openai",
            "model": "gpt-test",
            "input_usd_per_mtok": 1,
            "output_usd_per_mtok": 2,
        },
    )
    assert put.status_code == 204
    listed = {(p["provider"], p["model"]): p for p in c.get("/api/ai/prices").json()}
    assert listed[("openai", "gpt-test")]["source"] == "workspace"
    assert c.put("/api/ai/budget", json={"monthly_usd": 0}).status_code == 204
    body = {
        "lead_id": lv.leads[0],
        "brand_id": lv.brand,
        "key_id": lv.keys["openai"],
        "model": "gpt-test",
    }
    refused = c.post("/api/ai/qualify", json=body)
    assert refused.status_code == 402 and "monthly AI budget" in refused.json()["message"]
    assert c.get("/api/ai/budget").json()["monthly_usd"] == "0.00"
    assert c.put("/api/ai/budget", json={"monthly_usd": "abc"}).status_code == 400


def test_enrichment_over_http_is_off_until_opted_in(live: tuple[Live, FakeApollo]) -> None:
    """POST enrich answers 403 and sends nothing until an opt-in with the workspace's key."""
    lv, apollo = live
    c = lv.client
    refused = c.post(f"/api/ai/enrichment/leads/{lv.leads[0]}", json={})
    assert refused.status_code == 403 and apollo.requests == []
    key = c.post(
        "/api/keychain",
        json={"kind": "enrichment", "label": "apollo", "secret": "apollo-key-12345678"},
    ).json()
    opted = c.post("/api/ai/enrichment/opt-in", json={"provider": "apollo", "key_id": key["id"]})
    assert opted.status_code == 204
    done = c.post(f"/api/ai/enrichment/leads/{lv.leads[0]}", json={})
    assert done.status_code == 200 and "title" in done.json()["fields"]
    assert [r.api_key for r in apollo.requests] == ["apollo-key-12345678"]
    assert c.get("/api/ai/enrichment").json()["enabled"] is True


def test_sealing_drops_the_provider_clients(live: tuple[Live, FakeApollo]) -> None:
    """After POST /seal the AI routes answer 423 and no SDK client (holding a key) is kept."""
    lv = live[0]
    c = lv.client
    body = {"lead_id": lv.leads[0], "brand_id": lv.brand, "key_id": lv.keys["anthropic"]}
    assert c.post("/api/ai/qualify", json={**body, "model": "c"}).status_code == 201
    registry = lv.app.state.ai.registry
    assert registry.client_count == 1  # the anthropic key's client, while unsealed
    assert c.post("/seal", json={}).status_code == 204
    assert c.get("/api/ai/runs").status_code == 423
    assert registry.client_count == 0
