"""The web app's outbound and AI pages over the real tenant app with the fake LLM provider:
campaign with schedule, sequence steps and A/B variants, enrolment, AI settings, qualification,
drafting, the review queue (approve, edit, reject with audit results), stage runs with the
prompt viewable, and a mailbox whose connection test fails is not saved."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RunningCluster, free_port
from tests.fakes.fake_llm import FakeLLM
from tests.functional import test_ai_support as support
from tests.functional import test_tenant_support as tenant_support
from tests.functional.test_ai_support import MODELS, RecordingQueue, live_ai_app, seed
from tests.functional.test_tenant_support import ORIGIN
from tests.functional.test_web_pages import token_of

tenant_template = tenant_support.tenant_template
tenant_cluster = tenant_support.tenant_cluster
fake_llm = support.fake_llm

pytestmark = pytest.mark.functional
FORM = {"Origin": ORIGIN, "X-Requested-With": ""}


@pytest.fixture
def ui(
    tenant_cluster: RunningCluster,
    fake_llm: FakeLLM,
) -> Iterator[tuple[httpx.Client, RecordingQueue, dict[str, int]]]:
    with live_ai_app(tenant_cluster, fake_llm) as (client, app, queue):
        service = app.state.ai
        ws = client.get("/api/workspaces").json()[0]["id"]
        with service.connect() as conn:
            _, brand, lead_ids, keys, _ = seed(conn, service.data_key(), 3, workspace_id=ws)
        yield client, queue, {"brand": brand, "openai_key": keys["openai"], "leads": len(lead_ids)}


def post(client: httpx.Client, path: str, page: str, **fields: str) -> httpx.Response:
    token = token_of(client.get(page).text)
    return client.post(path, data={**fields, "csrf_token": token}, headers=FORM)


def test_campaign_review_queue_and_runs(
    ui: tuple[httpx.Client, RecordingQueue, dict[str, int]],
) -> None:
    """Create a campaign with two steps (A/B on the first), enrol, qualify and draft with the
    fake provider, approve one draft (queued), edit and reject others; runs show prompts."""
    client, queue, seeded = ui
    made = post(
        client,
        "/app/campaigns",
        "/app/campaigns",
        name="Q4 outreach",
        brand_id=str(seeded["brand"]),
        timezone="Europe/Berlin",
        window_start="08:30",
        window_end="16:00",
        **{"day-1": "1", "day-3": "1"},
    )
    assert made.status_code == 303, made.text
    page_path = made.headers["location"]
    bad_tz = post(
        client,
        "/app/campaigns",
        "/app/campaigns",
        name="x",
        brand_id=str(seeded["brand"]),
        timezone="Mars/Olympus",
        **{"day-1": "1"},
    )
    assert bad_tz.status_code == 400 and "IANA" in bad_tz.text
    step = post(
        client,
        page_path,
        page_path,
        action="step",
        delay_days="0",
        **{
            "subject-A": "Hi {{first_name}}",
            "body-A": "Short note A.",
            "subject-B": "Quick question",
            "body-B": "Short note B.",
        },
    )
    assert step.status_code == 303
    post(
        client,
        page_path,
        page_path,
        action="step",
        delay_days="3",
        business_days="1",
        **{"body-A": "Following up."},
    )
    post(client, page_path, page_path, action="enroll", limit="100")
    detail = client.get(page_path).text
    assert "Variant A" in detail and "Variant B" in detail and "Short note B." in detail
    assert "3 business days later" in detail and "08:30–16:00 Europe/Berlin, Mon, Wed" in detail
    assert f"{seeded['leads']} active" in detail
    ai = post(
        client,
        page_path,
        page_path,
        action="ai",
        mode="review",
        key_id=str(seeded["openai_key"]),
        model=MODELS["openai"],
        opt_out_line="Reply STOP to opt out.",
    )
    assert ai.status_code == 303, ai.text
    qualified = post(client, page_path, page_path, action="qualify", limit="3")
    assert qualified.status_code == 303, qualified.text
    detail = client.get(page_path).text
    assert (
        len(
            re.findall(
                r"<tr><td>[^<]+@[^<]+</td><td>(?:qualified|not_qualified|needs_review)", detail
            )
        )
        == 3
    )
    drafted = post(client, page_path, page_path, action="draft", limit="3")
    assert drafted.status_code == 303 and drafted.headers["location"].startswith("/app/review")
    queue_page = client.get("/app/review").text
    ids = re.findall(r'name="draft_id" value="(\d+)"', queue_page)
    assert len(ids) == 3 and "Audit passed." in queue_page
    approved = post(client, "/app/review", "/app/review", draft_id=ids[0], action="approve")
    assert approved.status_code == 303 and queue.queued == [int(ids[0])]
    edited = post(
        client,
        "/app/review",
        "/app/review",
        draft_id=ids[1],
        action="edit",
        subject="A better subject",
        body="Hello, a rewritten body.\n\nReply STOP to opt out.",
    )
    assert edited.status_code == 303
    rejected = post(client, "/app/review", "/app/review", draft_id=ids[2], action="reject")
    assert rejected.status_code == 303
    again = post(
        client, "/app/review", "/app/review?status=queued", draft_id=ids[0], action="approve"
    )
    assert again.status_code == 409
    assert "A better subject" in client.get("/app/review").text
    assert f'value="{ids[2]}"' in client.get("/app/review?status=rejected").text
    runs = client.get("/app/runs").text
    run_ids = re.findall(r'href="/app/runs/(\d+)"', runs)
    assert run_ids and "draft" in runs and "audit" in runs
    run = client.get(f"/app/runs/{run_ids[-1]}").text
    assert "Prompt" in run and "no longer readable" not in run
    assert "Q4 outreach" in client.get("/app/campaigns").text


def test_mailbox_failing_connection_test_is_not_saved(
    ui: tuple[httpx.Client, RecordingQueue, dict[str, int]],
) -> None:
    """A mailbox whose SMTP server does not answer is refused (422) with the failing check
    named, the password not echoed, and nothing stored."""
    client = ui[0]
    closed = str(free_port())
    password = "mailbox-pass-" + "z" * 12
    response = post(
        client,
        "/app/mailboxes",
        "/app/mailboxes",
        label="Sales",
        from_address="ana@acme.io",
        username="ana",
        password=password,
        smtp_host="127.0.0.1",
        smtp_port=closed,
        smtp_security="none",
        imap_host="127.0.0.1",
        imap_port=closed,
        imap_security="none",
        daily_cap="40",
        action="save",
    )
    assert response.status_code == 422 and "Connection test failed" in response.text
    assert password not in response.text and 'value="ana@acme.io"' in response.text
    assert "No mailbox yet." in client.get("/app/mailboxes").text
    for path in ("/app/inbox", "/app/mailboxes", "/app/campaigns", "/app/review", "/app/runs"):
        assert client.get(path, headers=FORM).status_code == 200
