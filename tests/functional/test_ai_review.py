"""Review and autonomous modes: what a failed audit, an approval, an edit and a rejection do
to a draft, and when the outbound engine's queue_for_sending hook is called."""

from __future__ import annotations

import json

import pytest
from paitho_tenant import audit
from paitho_tenant.ai import review
from paitho_tenant.errors import Conflict

from tests.fakes.fake_llm import stage_responder
from tests.functional import test_ai_support as support
from tests.functional import test_tenant_support as tenant_support
from tests.functional.test_ai_support import MODELS, AIWorld, scoped

tenant_template = tenant_support.tenant_template
tenant_cluster = tenant_support.tenant_cluster
fake_llm = support.fake_llm
ai_world = support.ai_world

pytestmark = pytest.mark.functional

OPT_OUT = "Reply STOP and I will not write again."


def _campaign(world: AIWorld, mode: str, cid: int = 11) -> int:
    with world.conn() as conn:
        review.set_campaign(
            conn,
            world.key,
            world.workspace_id,
            "account:1",
            campaign_id=cid,
            brand_id=world.brand_id,
            mode=mode,
            key_id=world.key_ids["openai"],
            model=MODELS["openai"],
            opt_out_line=OPT_OUT,
        )
    return cid


def _failing_auditor(provider: str, prompt: str) -> str:
    if "STAGE: audit" in prompt:
        return json.dumps({"verdict": "fail", "reasons": ["claims a partnership not in the data"]})
    return stage_responder(provider, prompt)


def _status(world: AIWorld, draft_id: int) -> str:
    [(status,)] = scoped(world, "SELECT status FROM ai_drafts WHERE id = %s", (draft_id,))
    return str(status)


def test_review_mode_waits_for_a_person_then_approve_queues(ai_world: AIWorld) -> None:
    """Review mode: a passed draft waits; approving it queues it and calls the hook once."""
    w = ai_world
    cid = _campaign(w, "review")
    draft = review.draft_for_lead(w.service, w.workspace_id, cid, w.lead_ids[0])
    assert draft["status"] == "awaiting_review" and w.queue.queued == []
    review.approve(w.service, w.workspace_id, draft["id"], "account:1")
    assert _status(w, draft["id"]) == "queued" and w.queue.queued == [draft["id"]]
    with pytest.raises(Conflict):
        review.approve(w.service, w.workspace_id, draft["id"], "account:1")
    assert w.queue.queued == [draft["id"]]


def test_autonomous_mode_queues_a_passed_draft_at_once(ai_world: AIWorld) -> None:
    """Autonomous mode: a passed audit queues the draft for the outbound engine immediately."""
    w = ai_world
    cid = _campaign(w, "autonomous")
    draft = review.draft_for_lead(w.service, w.workspace_id, cid, w.lead_ids[0])
    assert draft["status"] == "queued" and w.queue.queued == [draft["id"]]


@pytest.mark.parametrize("mode", ["review", "autonomous"])
def test_a_failed_audit_is_never_sent(ai_world: AIWorld, mode: str) -> None:
    """A failed audit (model or rules) is stored as audit_failed in either mode, never queued,
    and approval is refused."""
    w = ai_world
    w.fake.state.responder = _failing_auditor
    cid = _campaign(w, mode)
    draft = review.draft_for_lead(w.service, w.workspace_id, cid, w.lead_ids[0])
    assert draft["status"] == "audit_failed"
    assert draft["audit_reasons"] == ["claims a partnership not in the data"]
    with pytest.raises(Conflict, match="failed its audit"):
        review.approve(w.service, w.workspace_id, draft["id"], "account:1")
    assert w.queue.queued == [] and _status(w, draft["id"]) == "audit_failed"


def test_rules_fail_a_draft_the_model_passed(ai_world: AIWorld) -> None:
    """A draft without the opt-out line fails on the rules even when the auditor says pass."""

    def no_opt_out(provider: str, prompt: str) -> str:
        if "STAGE: drafting" in prompt:
            return json.dumps({"subject": "Hello", "body": "Hi Ada0, a quick question."})
        return stage_responder(provider, prompt)

    w = ai_world
    w.fake.state.responder = no_opt_out
    cid = _campaign(w, "autonomous")
    draft = review.draft_for_lead(w.service, w.workspace_id, cid, w.lead_ids[0])
    assert draft["status"] == "audit_failed"
    assert "the opt-out line is missing" in draft["audit_reasons"]
    assert w.queue.queued == []


def test_edit_is_audited_again_and_reject_is_final(ai_world: AIWorld) -> None:
    """An edit re-runs the audit (a bad edit fails it, a good one waits for approval); a
    rejected draft can be neither approved nor edited. Decisions are in the audit log."""
    w = ai_world
    cid = _campaign(w, "review")
    draft = review.draft_for_lead(w.service, w.workspace_id, cid, w.lead_ids[0])
    bad = review.edit(
        w.service, w.workspace_id, draft["id"], "account:1", "URGENT!!", "Act now. " + OPT_OUT
    )
    assert bad["status"] == "audit_failed"
    assert any("spam-trigger" in r for r in bad["audit_reasons"])
    good = review.edit(
        w.service, w.workspace_id, draft["id"], "account:1", "About Globex 0", "Hi. " + OPT_OUT
    )
    assert good["status"] == "awaiting_review"
    with w.conn() as conn:
        stored = review.get_draft(conn, w.key, w.workspace_id, draft["id"])
    assert stored["subject"] == "About Globex 0" and stored["edited"] is True
    review.reject(w.service, w.workspace_id, draft["id"], "account:2")
    with pytest.raises(Conflict):
        review.approve(w.service, w.workspace_id, draft["id"], "account:1")
    with pytest.raises(Conflict):
        review.edit(w.service, w.workspace_id, draft["id"], "account:1", "x", OPT_OUT)
    with tenant_support.owner_conn(w.cluster) as conn:
        actions = [e["action"] for e in audit.entries(conn)]
    assert actions.count("ai.draft_edited") == 2 and "ai.draft_rejected" in actions
    assert "ai.campaign_settings" in actions
