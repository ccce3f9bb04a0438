"""Rate limiting and lockout with growing delays, per bucket (e.g. `login:ann@example.com`).

Hits are counted per fixed window with an atomic add, so concurrent attempts are all counted.
The limit-th hit in a window blocks the bucket for `base_delay_s`; every further hit while the
block is remembered doubles it (2 s, 4 s, 8 s, ... capped at `max_delay_s`). A block is
remembered for one window after it ends. A success (`reset`) clears the bucket. State lives in
the `ratelimits` table so every Lambda sees the same counts.
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

    @staticmethod
    def _window_key(bucket: str, rule: RateRule, now: float) -> tuple[str, int]:
        window = int(now // rule.window_s)
        return f"{bucket}#w{window}", window

    def check(self, bucket: str) -> None:
        """Raise RateLimited while the bucket is blocked."""
        block = self._table.get(f"{bucket}#block")
        now = self._clock()
        if block is not None and float(block.get("blocked_until", 0)) > now:
            wait = max(1, math.ceil(float(block["blocked_until"]) - now))
            raise RateLimited(
                f"Too many attempts. Wait {wait} seconds before trying again.", retry_after=wait
            )

    def hit(self, bucket: str, rule: RateRule) -> None:
        """Count one attempt (a failed login, a signup, a reset request); may start a block."""
        now = self._clock()
        key, window = self._window_key(bucket, rule, now)
        counted = self._table.add(key, "hits", 1, {"expires_at": (window + 2) * rule.window_s})
        if int(counted["hits"]) < rule.limit:
            return
        block_key = f"{bucket}#block"
        current = self._table.get(block_key)
        if current is not None and float(current.get("expires_at", 0)) < now:
            self._table.delete(block_key)  # the last block is forgotten: start again at 1
        over = int(self._table.add(block_key, "over", 1)["over"])
        until = now + min(rule.max_delay_s, rule.base_delay_s * 2 ** (over - 1))
        self._table.update(block_key, {"blocked_until": until, "expires_at": until + rule.window_s})

    def reset(self, bucket: str, rule: RateRule) -> None:
        self._table.delete(f"{bucket}#block")
        self._table.delete(self._window_key(bucket, rule, self._clock())[0])
