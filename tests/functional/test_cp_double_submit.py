"""Double submission against DynamoDB (moto's server): concurrent identical signups give one
account, one claim, one mail; concurrent clicks on one link give one tenant."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib.cpconfig import TableNames
from chalicelib.mailer import MemoryMailer
from chalicelib.stores import dynamo_stores, ensure_tables
from tests.cp_support import (
    FORM_HEADERS,
    Clock,
    FakeTenants,
    client_for,
    csrf_from,
    link_from,
    plane,
    signup_fields,
)

pytestmark = pytest.mark.functional


def race(n: int, fn: Any) -> list[Any]:
    results: list[Any] = []
    barrier = threading.Barrier(n)

    def run() -> None:
        barrier.wait()
        results.append(fn())

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_signups_and_clicks_make_one_of_everything(aws_client: Any, unique: str) -> None:
    """Six simultaneous posts of one form, then six simultaneous link clicks: one of each."""
    stores = dynamo_stores(aws_client("dynamodb"), TableNames.with_prefix(f"dbl-{unique}"))
    ensure_tables(stores)
    mailer, tenants = MemoryMailer(), FakeTenants()
    cp = plane(stores=stores, tenants=tenants, mailer=mailer, clock=Clock(time.time()))
    client = client_for(cp)
    csrf = csrf_from(client.http.get("/signup").body)
    body = urlencode({"csrf": csrf, **signup_fields()}).encode()
    statuses = race(
        6, lambda: client.http.post("/signup", headers=FORM_HEADERS, body=body).status_code
    )
    assert statuses == [200] * 6
    assert len(stores.accounts.scan()) == 1 and len(stores.claims.scan()) == 1
    assert len(mailer.outbox) == 1
    token = link_from(mailer.outbox[0].text, "/verify")
    codes = race(6, lambda: client.http.get(f"/verify?token={token}").status_code)
    assert sorted(codes) == [303] + [400] * 5
    assert [c for c in tenants.calls if c[0] == "create"] == [("create", "acme")]
    assert len(stores.subscriptions.scan()) == 1
