"""Provider adapters over the official SDKs: `openai` (OpenAI and any OpenAI-compatible server
by base URL), `anthropic` and `google-genai`.

    Adapter.call(prompt)       one HTTP attempt; SDK retries are off; returns a Completion
    Provider.complete(prompt)  retries with backoff (tenacity) that honour Retry-After /
                               retry-after-ms / Gemini RetryInfo on 429 and 5xx, and holds a
                               per-key semaphore only while an attempt is in flight
    ProviderRegistry           one cached client per (kind, key id, base URL) and one
                               semaphore per key; `clear()` drops every client (on seal)

Only the generated text and the token counts leave an adapter (`Completion`). The SDK's
response object, its headers and its raw body are dropped inside `call`; nothing here logs a
response, a prompt or a key. Keys are passed explicitly (never read from the environment) and
every client gets an explicit base URL, timeout and `max_retries=0`; Anthropic's OpenTelemetry
spans are switched off.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anthropic
import httpx2
import openai
import tenacity
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from paitho_tenant.ai.errors import (
    AIError,
    KeyRejected,
    MalformedResponse,
    NoProviderKey,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)

log = logging.getLogger(__name__)

KINDS = ("openai", "anthropic", "google", "openai_compatible")
# At DEBUG the SDKs and their HTTP clients log request options (the prompt, hence lead facts)
# and response headers. They are held at WARNING whatever the root level or OPENAI_LOG says.
SDK_LOGGERS = ("openai", "anthropic", "google_genai", "google.genai", "httpx2", "httpcore2")
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "google": "https://generativelanguage.googleapis.com",
}


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str
    schema: dict[str, Any] | None = None
    schema_name: str = "answer"
    max_output_tokens: int = 1024


@dataclass(frozen=True)
class Completion:
    """All that is kept of a provider's answer."""

    text: str
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Endpoint:
    """Where and how to call one key's provider (no secret here)."""

    kind: str
    key_id: int
    base_url: str | None = None
    timeout: float = 60.0
    max_attempts: int = 4
    max_wait: float = 30.0  # the longest Retry-After honoured; longer fails at once
    concurrency: int = 16


class Adapter(Protocol):
    kind: str

    def call(self, model: str, prompt: Prompt) -> Completion: ...


# -- Retry-After --------------------------------------------------------------------------------
def retry_after_seconds(headers: Any, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


def _gemini_retry_delay(details: Any) -> float | None:
    """google.rpc.RetryInfo.retryDelay ("30s") from a Gemini error body, if present."""
    if not isinstance(details, list):
        return None
    for item in details:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            match = _DURATION.match(str(item.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def status_error(
    kind: str, status: int, retry_after: float | None, max_wait: float, key_invalid: bool = False
) -> ProviderError:
    """The error for an HTTP status from a provider (messages never quote the body)."""
    name = kind.replace("_", "-")
    if status in (401, 403) or key_invalid:
        return KeyRejected(
            f"the {name} provider rejected this workspace's key (HTTP {status}): it may be "
            "revoked or mistyped; replace it in the keychain"
        )
    if status == 429:
        if retry_after is not None and retry_after > max_wait:
            return RateLimited(
                f"the {name} provider is rate limiting this key and asks to wait "
                f"{retry_after:.0f} s; try again later or raise the key's limits",
                retry_after=retry_after,
                retryable=False,
            )
        return RateLimited(
            f"the {name} provider kept rate limiting this key (HTTP 429)", retry_after=retry_after
        )
    if status in (408, 409) or status >= 500:
        return ProviderUnavailable(
            f"the {name} provider failed (HTTP {status})", retry_after=retry_after
        )
    return ProviderError(f"the {name} provider refused the request (HTTP {status})")


def _timeout(kind: str) -> ProviderTimeout:
    return ProviderTimeout(f"the {kind.replace('_', '-')} provider did not answer in time")


def _unreachable(kind: str) -> ProviderUnavailable:
    return ProviderUnavailable(f"the {kind.replace('_', '-')} provider could not be reached")


def _malformed(kind: str) -> MalformedResponse:
    return MalformedResponse(
        f"the {kind.replace('_', '-')} provider sent an answer that is not valid JSON of its "
        "documented shape"
    )


# -- adapters -----------------------------------------------------------------------------------
class OpenAIAdapter:
    """Chat Completions, for OpenAI and OpenAI-compatible servers."""

    def __init__(self, endpoint: Endpoint, secret: str) -> None:
        self.kind = endpoint.kind
        self.endpoint = endpoint
        base_url = endpoint.base_url or DEFAULT_BASE_URLS["openai"]
        self._client = openai.OpenAI(
            api_key=secret,
            organization=None,
            project=None,
            base_url=base_url,
            timeout=endpoint.timeout,
            max_retries=0,
        )

    def call(self, model: str, prompt: Prompt) -> Completion:
        args: dict[str, Any] = {
            "model": model,
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
        }
        # response_format goes through extra_body: the SDK would otherwise walk the whole JSON
        # schema recursively on every call (about 2 ms of CPU each), for the same bytes.
        if self.kind == "openai":
            args["max_completion_tokens"] = prompt.max_output_tokens
            if prompt.schema is not None:
                args["extra_body"] = {
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": prompt.schema_name, "schema": prompt.schema},
                    }
                }
        else:  # compatible servers know max_tokens and json_object more often than the rest
            args["max_tokens"] = prompt.max_output_tokens
            if prompt.schema is not None:
                args["extra_body"] = {"response_format": {"type": "json_object"}}
        try:
            response = self._client.chat.completions.create(**args)
            text = (response.choices[0].message.content or "") if response.choices else ""
            usage = response.usage
            return Completion(
                text,
                int(usage.prompt_tokens) if usage else 0,
                int(usage.completion_tokens) if usage else 0,
            )
        except openai.APIStatusError as exc:
            raise status_error(
                self.kind,
                exc.status_code,
                retry_after_seconds(exc.response.headers),
                self.endpoint.max_wait,
            ) from None
        except openai.APITimeoutError:
            raise _timeout(self.kind) from None
        except openai.APIConnectionError:
            raise _unreachable(self.kind) from None
        except (openai.APIResponseValidationError, ValueError, TypeError, IndexError):
            raise _malformed(self.kind) from None

    def close(self) -> None:
        self._client.close()


class AnthropicAdapter:
    """The Messages API."""

    kind = "anthropic"

    def __init__(self, endpoint: Endpoint, secret: str) -> None:
        self.endpoint = endpoint
        self._client = anthropic.Anthropic(
            api_key=secret,
            base_url=endpoint.base_url or DEFAULT_BASE_URLS["anthropic"],
            timeout=endpoint.timeout,
            max_retries=0,
            open_telemetry=False,
        )

    def call(self, model: str, prompt: Prompt) -> Completion:
        system = prompt.system
        if prompt.schema is not None:
            system += "\n\nAnswer with one JSON object matching this JSON schema, and nothing "
            system += "else:\n" + json.dumps(prompt.schema, sort_keys=True)
        try:
            message = self._client.messages.create(
                model=model,
                max_tokens=prompt.max_output_tokens,
                system=system,
                messages=[{"role": "user", "content": prompt.user}],
            )
            text = "".join(
                str(getattr(block, "text", "")) for block in message.content if block.type == "text"
            )
            return Completion(
                text, int(message.usage.input_tokens), int(message.usage.output_tokens)
            )
        except anthropic.APIStatusError as exc:
            raise status_error(
                self.kind,
                exc.status_code,
                retry_after_seconds(exc.response.headers),
                self.endpoint.max_wait,
            ) from None
        except anthropic.APITimeoutError:
            raise _timeout(self.kind) from None
        except anthropic.APIConnectionError:
            raise _unreachable(self.kind) from None
        except (anthropic.APIResponseValidationError, ValueError, TypeError, AttributeError):
            raise _malformed(self.kind) from None

    def close(self) -> None:
        self._client.close()


class GeminiAdapter:
    """generateContent (Gemini Developer API, API-key auth)."""

    kind = "google"

    def __init__(self, endpoint: Endpoint, secret: str) -> None:
        self.endpoint = endpoint
        self._client = genai.Client(
            api_key=secret,
            vertexai=False,
            http_options=genai_types.HttpOptions(
                base_url=endpoint.base_url or DEFAULT_BASE_URLS["google"],
                timeout=int(endpoint.timeout * 1000),
                retry_options=None,
            ),
        )

    def call(self, model: str, prompt: Prompt) -> Completion:
        config = genai_types.GenerateContentConfig(
            system_instruction=prompt.system,
            max_output_tokens=prompt.max_output_tokens,
            response_mime_type="application/json" if prompt.schema is not None else None,
            response_json_schema=prompt.schema,
        )
        try:
            response = self._client.models.generate_content(
                model=model, contents=prompt.user, config=config
            )
            usage = response.usage_metadata
            return Completion(
                response.text or "",
                int(usage.prompt_token_count or 0) if usage else 0,
                int(usage.candidates_token_count or 0) if usage else 0,
            )
        except genai_errors.APIError as exc:
            details = exc.details.get("error", {}) if isinstance(exc.details, dict) else {}
            reasons = {
                str(d.get("reason"))
                for d in details.get("details", []) or []
                if isinstance(d, dict) and d.get("reason")
            }
            response_headers = getattr(exc.response, "headers", None)
            delay = _gemini_retry_delay(details.get("details")) or retry_after_seconds(
                response_headers
            )
            raise status_error(
                self.kind,
                int(exc.code),
                delay,
                self.endpoint.max_wait,
                key_invalid="API_KEY_INVALID" in reasons,
            ) from None
        except httpx2.TimeoutException:
            raise _timeout(self.kind) from None
        except httpx2.TransportError:
            raise _unreachable(self.kind) from None
        except (ValueError, TypeError, AttributeError):
            raise _malformed(self.kind) from None

    def close(self) -> None:
        self._client.close()


def build_adapter(endpoint: Endpoint, secret: str) -> Adapter:
    if endpoint.kind in ("openai", "openai_compatible"):
        if endpoint.kind == "openai_compatible" and not endpoint.base_url:
            raise NoProviderKey(
                "an OpenAI-compatible key needs the base URL of its server: "
                f"PUT /api/ai/endpoints/{endpoint.key_id}"
            )
        return OpenAIAdapter(endpoint, secret)
    if endpoint.kind == "anthropic":
        return AnthropicAdapter(endpoint, secret)
    if endpoint.kind == "google":
        return GeminiAdapter(endpoint, secret)
    raise ProviderError(f"{endpoint.kind!r} is not an LLM provider kind")


# -- retries and the per-key limit -------------------------------------------------------------
class Provider:
    """An adapter with retries and a concurrency limit shared by every user of the same key."""

    def __init__(
        self,
        adapter: Adapter,
        limit: threading.BoundedSemaphore,
        *,
        max_attempts: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.adapter = adapter
        self.limit = limit
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self.attempts = 0  # how many HTTP attempts the last complete() made

    @property
    def kind(self) -> str:
        return self.adapter.kind

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, AIError) and exc.retry_after is not None:
            return float(exc.retry_after)
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (state.attempt_number - 1))
        return backoff * (0.5 + random.random() / 2)

    def complete(self, model: str, prompt: Prompt) -> Completion:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, AIError) and e.retryable),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
        )
        self.attempts = 0
        for attempt in retrying:
            with attempt:
                self.attempts += 1
                with self.limit:
                    return self.adapter.call(model, prompt)
        raise AssertionError("unreachable: tenacity re-raises the last error")


class ProviderRegistry:
    """Clients and per-key semaphores for one tenant process. Holds plaintext keys inside the
    SDK clients while unsealed: call `clear()` when the vault seals."""

    def __init__(
        self,
        base_urls: dict[str, str] | None = None,
        *,
        timeout: float = 60.0,
        max_attempts: int = 4,
        max_wait: float = 30.0,
        concurrency: int = 16,
        sleep: Callable[[float], None] = time.sleep,
        adapter_factory: Callable[[Endpoint, str], Adapter] = build_adapter,
    ) -> None:
        quiet_sdk_loggers()
        self.base_urls = dict(base_urls or {})
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.concurrency = concurrency
        self._sleep = sleep
        self._factory = adapter_factory
        self._lock = threading.Lock()
        self._adapters: dict[tuple[str, int, str | None, str], Adapter] = {}
        self._limits: dict[tuple[str, int], threading.BoundedSemaphore] = {}

    def endpoint(self, kind: str, key_id: int, base_url: str | None = None) -> Endpoint:
        return Endpoint(
            kind=kind,
            key_id=key_id,
            base_url=base_url or self.base_urls.get(kind),
            timeout=self.timeout,
            max_attempts=self.max_attempts,
            max_wait=self.max_wait,
            concurrency=self.concurrency,
        )

    def provider(
        self, kind: str, key_id: int, secret: Callable[[], str], base_url: str | None = None
    ) -> Provider:
        """The provider for one keychain key; `secret` is only called to build a new client."""
        endpoint = self.endpoint(kind, key_id, base_url)
        with self._lock:
            limit = self._limits.setdefault(
                (kind, key_id), threading.BoundedSemaphore(endpoint.concurrency)
            )
        ident = (kind, key_id, endpoint.base_url, "")
        with self._lock:
            adapter = self._adapters.get(ident)
        if adapter is None:
            built = self._factory(endpoint, secret())
            with self._lock:
                adapter = self._adapters.setdefault(ident, built)
        return Provider(adapter, limit, max_attempts=endpoint.max_attempts, sleep=self._sleep)

    @property
    def client_count(self) -> int:
        """How many SDK clients (each holding a plaintext key) are alive."""
        with self._lock:
            return len(self._adapters)

    def forget(self, kind: str, key_id: int) -> None:
        """Drop the client of a key that was removed or rejected."""
        with self._lock:
            for ident in [i for i in self._adapters if i[:2] == (kind, key_id)]:
                _close(self._adapters.pop(ident))

    def clear(self) -> None:
        with self._lock:
            adapters = list(self._adapters.values())
            self._adapters.clear()
        for adapter in adapters:
            _close(adapter)


def quiet_sdk_loggers() -> None:
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _close(adapter: Adapter) -> None:
    close = getattr(adapter, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # closing a client must never fail a seal
            log.warning("closing a provider client failed", exc_info=False)
