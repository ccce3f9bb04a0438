"""The stages end to end on a real tenant cluster with the real SDKs against the fake
provider: stage runs, validation and its one retry, faults, prices, budget, templates."""

from __future__ import annotations

import io
import json
import zipfile
from decimal import Decimal

import pytest
from paitho_tenant import export, inventory, stage_runs
from paitho_tenant.ai import review, runs, templates
from paitho_tenant.ai.errors import (
    BudgetExceeded,
    InvalidOutput,
    KeyRejected,
    MalformedResponse,
    ProviderTimeout,
    ProviderUnavailable,
)

from tests.conftest import RunningCluster
from tests.fakes.fake_llm import FakeLLM
from tests.functional import test_ai_support as support
from tests.functional import test_tenant_support as tenant_support
from tests.functional.test_ai_support import KINDS, MODELS, AIWorld, build_world, scoped

# Fixtures used here (assigned, so a test's parameter of the same name is not a redefinition).
tenant_template = tenant_support.tenant_template
tenant_cluster = tenant_support.tenant_cluster
fake_llm = support.fake_llm
ai_world = support.ai_world

pytestmark = pytest.mark.functional


def _campaign(world: AIWorld, kind: str = "openai", mode: str = "review", cid: int = 7) -> int:
    with world.conn() as conn:
        review.set_campaign(
            conn,
            world.key,
            world.workspace_id,
            "account:1",
            campaign_id=cid,
            brand_id=world.brand_id,
            mode=mode,
            key_id=world.key_ids[kind],
            model=MODELS[kind],
            opt_out_line="Reply STOP and I will not write again.",
        )
    return cid


def _meta(world: AIWorld) -> list[tuple[object, ...]]:
    return scoped(
        world,
        "SELECT m.job, m.attempt, m.status, m.error_code, m.error, m.http_attempts, m.cost_usd,"
        " sr.stage, sr.model, sr.input_tokens, sr.output_tokens FROM ai_run_meta m"
        " JOIN stage_runs sr ON sr.id = m.run_id ORDER BY sr.id",
    )


def test_qualification_records_one_encrypted_stage_run_with_cost(ai_world: AIWorld) -> None:
    """Qualify: the keychain key and the lead's facts (not its email) reach the provider; one
    stage run with tokens, cost from the price table, prompt+response under the period key."""
    w = ai_world
    with w.conn() as conn:
        runs.set_price(conn, w.workspace_id, "openai", "gpt-test", Decimal(2), Decimal(8))
    out = w.service.qualify(
        w.workspace_id, w.lead_ids[0], w.brand_id, w.key_ids["openai"], "gpt-test"
    )
    assert (out["verdict"], out["score"]) == ("qualified", 82)
    [request] = w.fake.requests
    assert request.api_key == w.secrets["openai"]
    assert "Globex 0" in request.prompt and "Ada0" in request.prompt
    assert "Operations leaders at logistics" in request.prompt
    assert "lead0@example.test" not in request.prompt
    [(_job, attempt, status, code, error, http, cost, stage, model, tin, tout)] = _meta(w)
    assert (attempt, status, code, error, http) == (1, "ok", None, None, 1)
    assert (stage, model, tin, tout) == ("qualify", "gpt-test", 120, 45)
    assert cost == Decimal("0.000600")  # (120 * 2 + 45 * 8) / 1e6
    with w.conn() as conn:
        run = stage_runs.get(conn, w.key, w.workspace_id, out["run_ids"][0])
    assert "Globex 0" in run["prompt"] and '"verdict": "qualified"' in run["response"]
    [(raw_prompt, raw_response)] = scoped(w, "SELECT prompt, response FROM stage_runs")
    assert b"Globex" not in bytes(raw_prompt) and b"qualified" not in bytes(raw_response)


@pytest.mark.parametrize("kind", KINDS)
def test_drafting_and_audit_with_each_provider(ai_world: AIWorld, kind: str) -> None:
    """Each provider drafts and audits: two stage runs, a stored draft awaiting review."""
    w = ai_world
    cid = _campaign(w, kind)
    draft = review.draft_for_lead(w.service, w.workspace_id, cid, w.lead_ids[1], 1)
    assert draft["status"] == "awaiting_review" and draft["audit_reasons"] == []
    assert "Globex 1" in draft["subject"] and "Reply STOP" in draft["body"]
    assert [r.api_key for r in w.fake.requests] == [w.secrets[kind]] * 2
    assert [m[7] for m in _meta(w)] == ["draft", "audit"]
    assert w.queue.queued == []


def test_malformed_output_is_retried_once_with_a_correction(ai_world: AIWorld) -> None:
    """A non-JSON answer is recorded as invalid_output, retried once (told why), then ok."""
    w = ai_world
    w.fake.script(["bad_output"])
    out = w.service.qualify(w.workspace_id, w.lead_ids[0], w.brand_id, w.key_ids["google"], "g")
    assert out["verdict"] == "qualified"
    rows = _meta(w)
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (1, "invalid_output", "invalid_output"),
        (2, "ok", None),
    ]
    assert rows[0][0] == rows[1][0]  # same job
    assert "previous answer was rejected" in w.fake.requests[1].prompt


def test_malformed_output_twice_is_a_recorded_failure_with_nothing_saved(
    ai_world: AIWorld,
) -> None:
    """Two invalid answers: InvalidOutput with the reason, two runs, no qualification row."""
    w = ai_world
    w.fake.script(["bad_output", "bad_output"])
    with pytest.raises(InvalidOutput, match=r"invalid twice.*not a JSON object"):
        w.service.qualify(w.workspace_id, w.lead_ids[0], w.brand_id, w.key_ids["openai"], "m")
    assert [r[2] for r in _meta(w)] == ["invalid_output", "invalid_output"]
    assert scoped(w, "SELECT count(*) FROM ai_qualifications") == [(0,)]


@pytest.mark.parametrize(
    ("faults", "error", "code", "http_attempts"),
    [
        (["401"], KeyRejected, "provider_key_rejected", 1),
        (["malformed"], MalformedResponse, "provider_malformed_response", 1),
        (["500", "500", "500"], ProviderUnavailable, "provider_unavailable", 3),
    ],
)
def test_faults_leave_a_clear_failed_run_and_no_draft(
    ai_world: AIWorld, faults: list[str], error: type[Exception], code: str, http_attempts: int
) -> None:
    """A revoked key, a malformed body or 500s to the end: the draft stage run says why and
    how many HTTP attempts it made; no draft and no audit run are written."""
    w = ai_world
    cid = _campaign(w, "anthropic")
    if faults == ["401"]:
        w.fake.revoke(w.secrets["anthropic"])
    else:
        w.fake.script(faults)
    with pytest.raises(error):
        review.draft_for_lead(w.service, w.workspace_id, cid, w.lead_ids[0], 1)
    [row] = _meta(w)
    assert (row[2], row[3], row[7], row[9], row[10]) == ("failed", code, "draft", 0, 0)
    assert row[5] == http_attempts
    assert "anthropic provider" in str(row[4])
    assert w.secrets["anthropic"] not in str(row[4])
    assert scoped(w, "SELECT count(*) FROM ai_drafts") == [(0,)]


def test_timeouts_record_every_http_attempt(
    tenant_cluster: RunningCluster, fake_llm: FakeLLM
) -> None:
    """Timeouts exhaust the attempts; the failed run records how many HTTP attempts there were."""
    w = build_world(tenant_cluster, fake_llm, timeout=0.3, max_attempts=2)
    try:
        fake_llm.state.timeout_seconds = 1.5
        fake_llm.script(["timeout", "timeout"])
        with pytest.raises(ProviderTimeout):
            w.service.qualify(w.workspace_id, w.lead_ids[0], w.brand_id, w.key_ids["openai"], "m")
        [row] = _meta(w)
        assert (row[2], row[3], row[5]) == ("failed", "provider_timeout", 2)
    finally:
        w.service.registry.clear()
        w.pool.close()


def test_429_is_retried_inside_one_stage_run(ai_world: AIWorld) -> None:
    """A 429 + Retry-After is one stage run with two HTTP attempts, not two runs."""
    w = ai_world
    w.fake.state.retry_after = "1"
    w.fake.script(["429"])
    w.service.qualify(w.workspace_id, w.lead_ids[0], w.brand_id, w.key_ids["anthropic"], "c")
    [row] = _meta(w)
    assert (row[2], row[5]) == ("ok", 2)
    assert w.sleeps.waits == [1.0]


def test_budget_stops_new_calls_with_a_clear_message(ai_world: AIWorld) -> None:
    """Once the month's spend reaches the budget, the next call is refused before any request."""
    w = ai_world
    with w.conn() as conn:
        runs.set_price(conn, w.workspace_id, "openai", "pricey", Decimal(1000), Decimal(1000))
        runs.set_budget(conn, w.workspace_id, Decimal("0.10"))
    w.service.qualify(w.workspace_id, w.lead_ids[0], w.brand_id, w.key_ids["openai"], "pricey")
    with pytest.raises(BudgetExceeded) as info:
        w.service.qualify(w.workspace_id, w.lead_ids[1], w.brand_id, w.key_ids["openai"], "pricey")
    assert info.value.status == 402
    assert "spent $0.16 of its $0.10 monthly AI budget" in info.value.message
    assert len(w.fake.requests) == 1 and len(_meta(w)) == 1
    with w.conn() as conn:
        status = runs.budget_status(conn, w.workspace_id, w.service.clock())
        runs.set_budget(conn, w.workspace_id, Decimal(5))
    assert status["spent_usd"] == Decimal("0.165000")
    w.service.qualify(w.workspace_id, w.lead_ids[1], w.brand_id, w.key_ids["openai"], "pricey")


def test_brand_template_versions_are_used_and_recorded(ai_world: AIWorld) -> None:
    """A brand's newest template version renders the prompt; the run names that version."""
    w = ai_world
    with w.conn() as conn:
        for n in (1, 2):
            templates.add(
                conn,
                w.key,
                w.workspace_id,
                w.brand_id,
                "qualify",
                f"Version {n} system for $brand.",
                "STAGE: qualification\nICP: $icp\n$lead_facts",
            )
    w.service.qualify(w.workspace_id, w.lead_ids[0], w.brand_id, w.key_ids["openai"], "m")
    assert "Version 2 system for Initech." in w.fake.requests[0].prompt
    assert scoped(w, "SELECT prompt_version FROM ai_run_meta") == [(f"brand-{w.brand_id}-v2",)]
    [(raw,)] = scoped(w, "SELECT system FROM ai_prompt_templates WHERE version = 2")
    assert b"Version 2" not in bytes(raw)


def test_prices_default_and_workspace_override(ai_world: AIWorld) -> None:
    """The price table lists the defaults; a workspace's own price replaces one."""
    w = ai_world
    with w.conn() as conn:
        before = {(p["provider"], p["model"]): p for p in runs.price_table(conn, w.workspace_id)}
        runs.set_price(conn, w.workspace_id, "openai", "gpt-4.1", Decimal("1.5"), Decimal(6))
        after = {(p["provider"], p["model"]): p for p in runs.price_table(conn, w.workspace_id)}
    assert before[("openai", "gpt-4.1")]["source"] == "default"
    assert after[("openai", "gpt-4.1")]["input"] == Decimal("1.5")
    assert after[("openai", "gpt-4.1")]["source"] == "workspace"
    assert json.dumps(sorted(after.keys()))  # every key is a plain (provider, model) pair


def test_ai_tables_are_in_the_inventory_and_hold_only_ciphertext(ai_world: AIWorld) -> None:
    """After every AI write path, the schema matches the inventory and each column declared
    encrypted holds AES-256 PGP ciphertext only."""
    w = ai_world
    with w.conn() as conn:
        templates.add(conn, w.key, w.workspace_id, w.brand_id, "draft", "sys", "STAGE: drafting")
    w.service.qualify(w.workspace_id, w.lead_ids[0], w.brand_id, w.key_ids["openai"], "m")
    cid = _campaign(w, "openai")
    review.draft_for_lead(w.service, w.workspace_id, cid, w.lead_ids[1])
    with tenant_support.superuser_conn(w.cluster) as conn:
        assert inventory.schema_drift(conn) == []
        assert inventory.ciphertext_violations(conn) == []
        for table in ("ai_drafts", "ai_qualifications", "ai_prompt_templates", "ai_run_meta"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() != (0,), table


def test_export_includes_the_ai_tables_decrypted(ai_world: AIWorld) -> None:
    """`export` (the customer's copy of everything) carries drafts and qualifications
    decrypted, and AI run metadata without any prompt or response."""
    w = ai_world
    w.service.qualify(w.workspace_id, w.lead_ids[0], w.brand_id, w.key_ids["openai"], "m")
    draft = review.draft_for_lead(w.service, w.workspace_id, _campaign(w), w.lead_ids[1])
    with w.conn() as conn:
        data = b"".join(export.stream_zip(conn, w.key))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        drafts = json.loads(zf.read("ai_drafts.json"))
        quals = json.loads(zf.read("ai_qualifications.json"))
        meta = json.loads(zf.read("ai_run_meta.json"))
    assert drafts[0]["subject"] == draft["subject"] and drafts[0]["body"] == draft["body"]
    assert quals[0]["reason"] == "Fits the profile."
    assert {m["status"] for m in meta} == {"ok"} and "prompt" not in meta[0]
