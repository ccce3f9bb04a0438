"""Retry policy, Retry-After parsing and error mapping of the provider layer (no I/O: the
adapter is an in-memory stand-in for one HTTP attempt)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from paitho_tenant.ai.errors import (
    AIError,
    KeyRejected,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from paitho_tenant.ai.providers import (
    Completion,
    Prompt,
    Provider,
    ProviderRegistry,
    retry_after_seconds,
    status_error,
)

PROMPT = Prompt("s", "u")
OK = Completion("{}", 3, 4)


class Scripted:
    """One outcome per attempt: an AIError to raise or a Completion to return."""

    kind = "openai"

    def __init__(self, outcomes: list[AIError | Completion]) -> None:
        self.outcomes: Iterator[AIError | Completion] = iter(outcomes)
        self.calls = 0

    def call(self, model: str, prompt: Prompt) -> Completion:
        self.calls += 1
        outcome = next(self.outcomes)
        if isinstance(outcome, AIError):
            raise outcome
        return outcome


def provider(outcomes: list[AIError | Completion], waits: list[float]) -> Provider:
    return Provider(
        Scripted(outcomes), threading.BoundedSemaphore(2), max_attempts=3, sleep=waits.append
    )


def test_retry_after_forms() -> None:
    """retry-after-ms wins; seconds and HTTP dates are understood; garbage is ignored."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": date}, now=now.timestamp) == 7.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (401, KeyRejected, False),
        (403, KeyRejected, False),
        (429, RateLimited, True),
        (500, ProviderUnavailable, True),
        (503, ProviderUnavailable, True),
        (408, ProviderUnavailable, True),
        (400, ProviderError, False),
    ],
)
def test_status_mapping(status: int, kind: type[AIError], retryable: bool) -> None:
    """Each HTTP status becomes the right error, retryable or not."""
    error = status_error("openai", status, None, 30.0)
    assert type(error) is kind and error.retryable is retryable


def test_gemini_api_key_invalid_is_a_rejected_key() -> None:
    """Gemini's 400 with reason API_KEY_INVALID is a rejected key, not a bad request."""
    assert isinstance(status_error("google", 400, None, 30.0, key_invalid=True), KeyRejected)


def test_waits_follow_retry_after_then_succeed() -> None:
    """Each retry waits what the provider asked for."""
    waits: list[float] = []
    prov = provider(
        [RateLimited("r", retry_after=1.25), RateLimited("r", retry_after=0.5), OK], waits
    )
    assert prov.complete("m", PROMPT) == OK
    assert waits == [1.25, 0.5] and prov.attempts == 3


def test_backoff_grows_without_retry_after() -> None:
    """Without Retry-After the waits grow exponentially (with jitter, within bounds)."""
    waits: list[float] = []
    prov = provider([ProviderUnavailable("u"), ProviderUnavailable("u"), OK], waits)
    prov.complete("m", PROMPT)
    assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0


def test_gives_up_after_the_attempts_with_the_last_error() -> None:
    """Three failures: the last error is raised after two waits."""
    waits: list[float] = []
    prov = provider(
        [ProviderUnavailable("a"), ProviderUnavailable("b"), ProviderUnavailable("c")], waits
    )
    with pytest.raises(ProviderUnavailable, match="c"):
        prov.complete("m", PROMPT)
    assert len(waits) == 2


def test_rejected_key_is_not_retried() -> None:
    """A rejected key fails at once: no wait, one attempt."""
    waits: list[float] = []
    prov = provider([KeyRejected("k"), OK], waits)
    with pytest.raises(KeyRejected):
        prov.complete("m", PROMPT)
    assert waits == [] and prov.attempts == 1


def test_semaphore_is_released_while_waiting() -> None:
    """The per-key slot is free during a backoff wait (others can use the key meanwhile)."""
    limit = threading.BoundedSemaphore(1)
    seen: list[bool] = []

    def sleep(seconds: float) -> None:
        free = limit.acquire(blocking=False)
        seen.append(free)
        if free:
            limit.release()

    prov = Provider(Scripted([RateLimited("r", retry_after=0.1), OK]), limit, sleep=sleep)
    prov.complete("m", PROMPT)
    assert seen == [True]


def test_registry_shares_one_limit_per_key_and_builds_one_client() -> None:
    """Two providers for the same key share a semaphore and a client; the secret is read once."""
    built: list[str] = []

    def factory(endpoint: object, secret: str) -> Scripted:
        built.append(secret)
        return Scripted([OK, OK])

    reg = ProviderRegistry(adapter_factory=factory, concurrency=4)  # type: ignore[arg-type]
    reads: list[int] = []

    def secret() -> str:
        reads.append(1)
        return "s3cret"

    a, b = reg.provider("openai", 9, secret), reg.provider("openai", 9, secret)
    assert a.limit is b.limit and a.adapter is b.adapter
    assert built == ["s3cret"] and len(reads) == 1
    other = reg.provider("openai", 10, secret)
    assert other.limit is not a.limit
    reg.clear()
    reg.provider("openai", 9, secret)
    assert len(reads) == 3  # rebuilt after clear (e.g. the vault sealed)


def test_gemini_retry_info_delay() -> None:
    """Gemini's google.rpc.RetryInfo retryDelay ("12s") is read as the wait."""
    from paitho_tenant.ai.providers import _gemini_retry_delay

    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"},
    ]
    assert _gemini_retry_delay(details) == 12.0
    assert _gemini_retry_delay([{"@type": "x.RetryInfo", "retryDelay": "soon"}]) is None
    assert _gemini_retry_delay(None) is None
