"""The real SDKs (openai, anthropic, google-genai) against the fake provider server on
loopback: what is sent, what is kept, and every fault."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from paitho_tenant.ai.errors import (
    KeyRejected,
    MalformedResponse,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from paitho_tenant.ai.providers import Completion, Prompt, Provider, ProviderRegistry

from tests.fakes.fake_llm import FakeLLM
from tests.functional.test_ai_support import MODELS, Sleeps

pytestmark = pytest.mark.functional

KINDS = ("openai", "anthropic", "google", "openai_compatible")
PROMPT = Prompt(
    "You qualify leads.",
    "STAGE: qualification\n<lead>\n- company: Globex Lyon\n</lead>",
    schema={"type": "object"},
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def clean(fake: FakeLLM) -> Iterator[FakeLLM]:
    fake.reset()
    fake.state.retry_after = "0"
    fake.state.retry_after_ms = None
    fake.state.latency = 0.0
    yield fake
    fake.reset()


def registry(fake: FakeLLM, sleeps: Sleeps | None = None, **options: float) -> ProviderRegistry:
    base = {"openai": fake.openai_base, "anthropic": fake.url, "google": fake.url}
    timeout = float(options.pop("timeout", 10.0))
    return ProviderRegistry(
        base, timeout=timeout, max_attempts=3, sleep=sleeps or Sleeps(), **options
    )


def provider(reg: ProviderRegistry, fake: FakeLLM, kind: str, secret: str) -> Provider:
    base = fake.openai_base if kind == "openai_compatible" else None
    return reg.provider(kind, 1, lambda: secret, base)


@pytest.mark.parametrize("kind", KINDS)
def test_sends_the_given_key_and_prompt_and_keeps_only_text_and_counts(
    clean: FakeLLM, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key on the wire is the one passed in (not the environment's); only text + counts."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(name, "environment-key-must-not-be-used")
    got = provider(registry(clean), clean, kind, "keychain-secret-1").complete(MODELS[kind], PROMPT)
    assert isinstance(got, Completion)
    assert got.input_tokens == 120 and got.output_tokens == 45
    assert '"verdict": "qualified"' in got.text
    assert clean.canary not in repr(got)
    [request] = clean.requests
    assert request.api_key == "keychain-secret-1"
    assert request.model == MODELS[kind]
    assert "Globex Lyon" in request.prompt and "You qualify leads." in request.prompt


@pytest.mark.parametrize("kind", KINDS)
def test_429_waits_what_retry_after_says_then_succeeds(clean: FakeLLM, kind: str) -> None:
    """A 429 with Retry-After: 2 makes the next attempt wait exactly 2 s (Gemini included)."""
    clean.state.retry_after = "2"
    clean.script(["429"])
    sleeps = Sleeps()
    prov = provider(registry(clean, sleeps), clean, kind, "k")
    assert prov.complete(MODELS[kind], PROMPT).output_tokens == 45
    assert sleeps.waits == [2.0]
    assert prov.attempts == 2 and len(clean.requests) == 2


def test_retry_after_ms_is_preferred(clean: FakeLLM) -> None:
    """retry-after-ms (OpenAI and Anthropic send it) wins over the whole-second header."""
    clean.state.retry_after, clean.state.retry_after_ms = "3", "250"
    clean.script(["429"])
    sleeps = Sleeps()
    provider(registry(clean, sleeps), clean, "anthropic", "k").complete("m", PROMPT)
    assert sleeps.waits == [0.25]


def test_retry_after_longer_than_allowed_fails_at_once(clean: FakeLLM) -> None:
    """A Retry-After beyond max_wait is not slept through: a clear RateLimited at once."""
    clean.state.retry_after = "3600"
    clean.script(["429"])
    sleeps = Sleeps()
    with pytest.raises(RateLimited, match="wait 3600 s"):
        provider(registry(clean, sleeps, max_wait=30), clean, "openai", "k").complete("m", PROMPT)
    assert sleeps.waits == [] and len(clean.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_500s_are_retried_with_backoff_then_reported(clean: FakeLLM, kind: str) -> None:
    """Two 500s then success; three 500s exhaust the attempts and say so (status 502)."""
    sleeps = Sleeps()
    clean.script(["500", "500"])
    prov = provider(registry(clean, sleeps), clean, kind, "k")
    assert prov.complete(MODELS[kind], PROMPT).input_tokens == 120
    assert len(sleeps.waits) == 2 and 0 < sleeps.waits[0] < sleeps.waits[1] + 0.5
    clean.script(["500", "500", "500"])
    with pytest.raises(ProviderUnavailable, match=r"HTTP 500") as info:
        prov.complete(MODELS[kind], PROMPT)
    assert info.value.status == 502


@pytest.mark.parametrize("kind", KINDS)
def test_timeouts_are_explicit(clean: FakeLLM, kind: str) -> None:
    """An answer slower than the timeout is a ProviderTimeout (504) after the attempts."""
    clean.state.timeout_seconds = 2.0
    clean.script(["timeout"] * 3)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as info:
        provider(registry(clean, timeout=0.3), clean, kind, "k").complete(MODELS[kind], PROMPT)
    assert info.value.status == 504
    assert time.monotonic() - started < 1.8  # three 0.3 s timeouts, no 2 s wait


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_json_body_is_reported_without_quoting_it(clean: FakeLLM, kind: str) -> None:
    """A truncated JSON body is MalformedResponse; the message and chain hold none of it."""
    clean.script(["malformed"])
    with pytest.raises(MalformedResponse) as info:
        provider(registry(clean), clean, kind, "k").complete(MODELS[kind], PROMPT)
    assert clean.canary not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("kind", KINDS)
def test_revoked_key_is_rejected_once_without_echoing_it(clean: FakeLLM, kind: str) -> None:
    """A revoked key gives KeyRejected (424) at the first answer, never retried or quoted."""
    clean.revoke("revoked-secret-xyz")
    sleeps = Sleeps()
    with pytest.raises(KeyRejected) as info:
        provider(registry(clean, sleeps), clean, kind, "revoked-secret-xyz").complete(
            MODELS[kind], PROMPT
        )
    assert info.value.status == 424 and "keychain" in info.value.message
    assert "revoked-secret-xyz" not in str(info.value)
    assert sleeps.waits == [] and len(clean.requests) == 1


def test_per_key_concurrency_limit_holds(clean: FakeLLM) -> None:
    """Eight threads on one key with a limit of 3 never have more than 3 requests in flight."""
    clean.state.latency = 0.15
    reg = registry(clean, concurrency=3)
    in_flight, peak, lock = 0, 0, threading.Lock()
    prov = provider(reg, clean, "openai", "k")
    inner = prov.adapter

    class Counting:
        kind = "openai"

        def call(self, model: str, prompt: Prompt) -> Completion:
            nonlocal in_flight, peak
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            try:
                return inner.call(model, prompt)
            finally:
                with lock:
                    in_flight -= 1

    shared = Provider(Counting(), prov.limit)
    threads = [threading.Thread(target=lambda: shared.complete("m", PROMPT)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert peak == 3 and len(clean.requests) == 8
