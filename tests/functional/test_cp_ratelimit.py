"""Rate limiting on DynamoDB (moto's server): concurrent attempts are all counted, and the
lockout grows the same way as in memory."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from chalicelib.cpconfig import RateRule
from chalicelib.ratelimit import RateLimited, RateLimiter
from chalicelib.stores import DynamoTable
from tests.cp_support import Clock

pytestmark = pytest.mark.functional


@pytest.fixture
def table(aws_client: Any, unique: str) -> DynamoTable:
    t = DynamoTable(aws_client("dynamodb"), f"cp-{unique}-ratelimits", "ratelimits")
    t.ensure()
    return t


def test_concurrent_hits_are_all_counted(table: DynamoTable) -> None:
    """Twenty parallel failed attempts count twenty: no lost update lets an attacker through."""
    clock = Clock()
    limiter = RateLimiter(table, clock)
    rule = RateRule(limit=1000, window_s=3600, base_delay_s=1, max_delay_s=60)
    threads = [
        threading.Thread(target=limiter.hit, args=("login:ann@example.com", rule))
        for _ in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    window = int(clock.now // 3600)
    item = table.get(f"login:ann@example.com#w{window}")
    assert item is not None and item["hits"] == 20


def test_lockout_grows_and_a_success_clears_it(table: DynamoTable) -> None:
    """Limit 3: the 3rd hit blocks 2 s, the next 4 s; reset clears both block and count."""
    clock = Clock()
    limiter = RateLimiter(table, clock)
    rule = RateRule(limit=3, window_s=900, base_delay_s=2, max_delay_s=60)
    for _ in range(3):
        limiter.check("b")
        limiter.hit("b", rule)
    with pytest.raises(RateLimited) as first:
        limiter.check("b")
    assert first.value.retry_after == 2
    clock.advance(2.5)
    limiter.check("b")
    limiter.hit("b", rule)
    with pytest.raises(RateLimited) as second:
        limiter.check("b")
    assert second.value.retry_after == 4
    limiter.reset("b", rule)
    limiter.check("b")
    limiter.hit("b", rule)
    limiter.check("b")
    assert all(
        set(i) <= {"bucket", "hits", "over", "blocked_until", "expires_at"} for i in table.scan()
    )
