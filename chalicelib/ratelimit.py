"""Rate limiting and lockout with growing delays, per bucket (e.g. `login:ann@example.com`).

A bucket allows `limit` hits per window. The limit-th hit and each one after it block it for
`base_delay_s * 2**(over-1)` seconds, capped at `max_delay_s`: 2 s, 4 s, 8 s, ... A success
(`reset`) clears the bucket. State lives in the `ratelimits` table so every Lambda sees it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from chalicelib.cpconfig import RateRule
from chalicelib.errors import TooManyRequests
from chalicelib.stores import Table


class RateLimited(TooManyRequests):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimiter:
    def __init__(self, table: Table, clock: Callable[[], float]) -> None:
        self._table = table
        self._clock = clock

    def check(self, bucket: str) -> None:
        """Raise RateLimited while the bucket is blocked."""
        item = self._table.get(bucket)
        now = self._clock()
        if item is not None and float(item.get("blocked_until", 0)) > now:
            wait = max(1, math.ceil(float(item["blocked_until"]) - now))
            raise RateLimited(
                f"Too many attempts. Wait {wait} seconds before trying again.", retry_after=wait
            )

    def hit(self, bucket: str, rule: RateRule) -> None:
        """Count one attempt (a failed login, a signup, a reset request); may start a block."""
        now = self._clock()
        item = self._table.get(bucket) or {}
        window_start = float(item.get("window_start", now))
        hits, over = int(item.get("hits", 0)), int(item.get("over", 0))
        if now - window_start > rule.window_s and float(item.get("blocked_until", 0)) <= now:
            window_start, hits, over = now, 0, 0
        hits += 1
        blocked_until = float(item.get("blocked_until", 0))
        if hits >= rule.limit:
            over += 1
            delay = min(rule.max_delay_s, rule.base_delay_s * 2 ** (over - 1))
            blocked_until = now + delay
        self._table.put(
            {
                "bucket": bucket,
                "hits": hits,
                "over": over,
                "window_start": str(window_start),
                "blocked_until": str(blocked_until),
            }
        )

    def reset(self, bucket: str) -> None:
        self._table.delete(bucket)
