"""A fake LLM provider: a real HTTP server on loopback that speaks the three providers' wire
formats, records what it received, and injects faults.

    POST /v1/chat/completions                      OpenAI (and any OpenAI-compatible server)
    POST /v1/messages                              Anthropic Messages
    POST /v1beta/models/{model}:generateContent    Gemini (and /v1/models/..., the SDK's default)

Response bodies follow the shapes of the providers' API references. Every success response
carries `canary` in fields that are NOT part of the generated text (ids, fingerprints, a
response header), so a test can prove the raw response never reaches a database or a log.

Faults: `script([...])` queues one fault per coming request ("429", "500", "timeout",
"malformed", "bad_output", "401"); `every_nth_429` answers every n-th request with 429;
`revoke(key)` makes a key answer as revoked. `latency` delays every answer.

Run in-process with `with FakeLLM() as fake:` (uvicorn in a thread), or as a separate process
for benchmarks: `python -m tests.fakes.fake_llm --port P --latency 0.1 --every-nth-429 10`
(then `GET /_fake/stats` returns the counters).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FAULTS = ("429", "500", "timeout", "malformed", "bad_output", "401")

Responder = Callable[[str, str], str]


@dataclass(frozen=True)
class Received:
    provider: str  # "openai" | "anthropic" | "gemini"
    path: str
    api_key: str
    model: str
    prompt: str  # every text part of the request, joined
    body: dict[str, Any]


def stage_responder(provider: str, prompt: str) -> str:
    """A well-behaved model for Paitho's stage prompts: valid JSON built from the prompt."""
    if "STAGE: qualification" in prompt:
        return json.dumps({"verdict": "qualified", "score": 82, "reason": "Fits the profile."})
    if "STAGE: drafting" in prompt:
        name = _fact(prompt, "first_name") or "there"
        company = _fact(prompt, "company") or "your team"
        opt_out = _between(prompt, "OPT-OUT LINE: ", "\n") or "Reply STOP to opt out."
        body = f"Hi {name},\n\nI noticed the work {company} is doing.\n\n{opt_out}"
        return json.dumps(
            {"subject": f"A question for {company}", "body": body, "facts_used": ["company"]}
        )
    if "STAGE: audit" in prompt:
        return json.dumps({"verdict": "pass", "reasons": []})
    return json.dumps({"echo": prompt[:40]})


def _fact(prompt: str, name: str) -> str | None:
    match = re.search(rf"^- {re.escape(name)}: (.+)$", prompt, re.MULTILINE)
    return match.group(1).strip() if match else None


def _between(text: str, start: str, end: str) -> str | None:
    at = text.find(start)
    if at < 0:
        return None
    stop = text.find(end, at + len(start))
    return text[at + len(start) : stop if stop >= 0 else None].strip()


@dataclass
class FakeState:
    latency: float = 0.0
    canary: str = field(default_factory=lambda: "CANARY" + uuid.uuid4().hex)
    responder: Responder = stage_responder
    retry_after: str = "0"
    retry_after_ms: str | None = None
    every_nth_429: int = 0
    timeout_seconds: float = 30.0
    prompt_tokens: int = 120
    output_tokens: int = 45
    requests: list[Received] = field(default_factory=list)
    faults: deque[str] = field(default_factory=deque)
    revoked: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    served: int = 0

    def next_fault(self) -> str | None:
        with self.lock:
            self.served += 1
            if self.faults:
                return self.faults.popleft()
            if self.every_nth_429 and self.served % self.every_nth_429 == 0:
                return "429"
            return None

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1


_TEXT_KEYS = (
    "text", "content", "messages", "contents", "parts", "system", "input",
    "system_instruction", "systemInstruction",
)  # fmt: skip


def _texts(value: Any) -> list[str]:
    """Every string under a JSON value whose key is text/content/prompt-like."""
    out: list[str] = []
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for item in value:
            out += _texts(item)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k in _TEXT_KEYS:
                out += _texts(v)
    return out


class FakeLLM:
    """The server. Use as a context manager (uvicorn in a daemon thread on 127.0.0.1)."""

    def __init__(self, *, latency: float = 0.0, port: int = 0, **options: Any) -> None:
        self.state = FakeState(latency=latency, **options)
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                Route("/v1/messages", self._anthropic, methods=["POST"]),
                Route("/v1beta/models/{target:path}", self._gemini, methods=["POST"]),
                Route("/v1/models/{target:path}", self._gemini, methods=["POST"]),
                Route("/_fake/stats", self._stats, methods=["GET"]),
            ]
        )

    # -- control ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base(self) -> str:
        return self.url + "/v1"

    @property
    def requests(self) -> list[Received]:
        with self.state.lock:
            return list(self.state.requests)

    @property
    def canary(self) -> str:
        return self.state.canary

    def script(self, faults: list[str]) -> None:
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}")
        with self.state.lock:
            self.state.faults.extend(faults)

    def revoke(self, api_key: str) -> None:
        with self.state.lock:
            self.state.revoked.add(api_key)

    def reset(self) -> None:
        with self.state.lock:
            self.state.requests.clear()
            self.state.faults.clear()
            self.state.counts.clear()
            self.state.served = 0

    def __enter__(self) -> FakeLLM:
        if not self.port:
            from tests.conftest import free_port

            self.port = free_port()
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake LLM server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(15)

    # -- shared -------------------------------------------------------------------------
    async def _common(
        self, request: Request, provider: str, api_key: str, model: str
    ) -> tuple[str | None, str, dict[str, Any]] | Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return JSONResponse({"error": {"message": "bad json"}}, status_code=400)
        prompt = "\n".join(_texts(body))
        with self.state.lock:
            self.state.requests.append(
                Received(provider, request.url.path, api_key, model, prompt, body)
            )
        fault = self.state.next_fault()
        if api_key in self.state.revoked:
            fault = "401"
        self.state.count(fault or "ok")
        if fault == "timeout":
            await asyncio.sleep(self.state.timeout_seconds)
        elif self.state.latency and fault not in ("429",):
            await asyncio.sleep(self.state.latency)
        return fault, prompt, body

    def _rate_headers(self) -> dict[str, str]:
        headers = {"retry-after": self.state.retry_after}
        if self.state.retry_after_ms is not None:
            headers["retry-after-ms"] = self.state.retry_after_ms
        return headers

    def _malformed(self) -> Response:
        return Response(
            '{"id": "' + self.state.canary + '", "choices": [{"mess',
            status_code=200,
            media_type="application/json",
        )

    def _text(self, provider: str, fault: str | None, prompt: str) -> str:
        if fault == "bad_output":
            return "Sure! Here is what you asked for, but not as JSON."
        return self.state.responder(provider, prompt)

    # -- OpenAI -------------------------------------------------------------------------
    async def _openai(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ")
        model = ""
        with contextlib.suppress(ValueError):
            model = str(json.loads(await request.body()).get("model", ""))
        got = await self._common(request, "openai", key, model)
        if isinstance(got, Response):
            return got
        fault, prompt, _ = got

        def error(status: int, kind: str, code: str, message: str) -> Response:
            body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
            headers = self._rate_headers() if status == 429 else {}
            return JSONResponse(body, status_code=status, headers=headers)

        if fault == "401":
            return error(401, "invalid_request_error", "invalid_api_key", "Incorrect API key.")
        if fault == "429":
            return error(429, "requests", "rate_limit_exceeded", "Rate limit reached.")
        if fault == "500":
            return error(500, "server_error", "server_error", "The server had an error.")
        if fault == "malformed":
            return self._malformed()
        canary = self.state.canary
        return JSONResponse(
            {
                "id": "chatcmpl-" + canary,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": "fp_" + canary,
                "service_tier": "default",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": self._text("openai", fault, prompt),
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": self.state.prompt_tokens,
                    "completion_tokens": self.state.output_tokens,
                    "total_tokens": self.state.prompt_tokens + self.state.output_tokens,
                },
            },
            headers={"x-request-id": "req_" + canary},
        )

    # -- Anthropic ----------------------------------------------------------------------
    async def _anthropic(self, request: Request) -> Response:
        # The docs name x-api-key; SDK 2.x sends the same key as a Bearer token.
        key = request.headers.get("x-api-key") or request.headers.get(
            "authorization", ""
        ).removeprefix("Bearer ")
        model = ""
        with contextlib.suppress(ValueError):
            model = str(json.loads(await request.body()).get("model", ""))
        got = await self._common(request, "anthropic", key, model)
        if isinstance(got, Response):
            return got
        fault, prompt, _ = got

        def error(status: int, kind: str, message: str) -> Response:
            body = {"type": "error", "error": {"type": kind, "message": message}}
            headers = self._rate_headers() if status == 429 else {}
            return JSONResponse(body, status_code=status, headers=headers)

        if fault == "401":
            return error(401, "authentication_error", "invalid x-api-key")
        if fault == "429":
            return error(429, "rate_limit_error", "Number of requests has exceeded your limit.")
        if fault == "500":
            return error(500, "api_error", "Internal server error")
        if fault == "malformed":
            return self._malformed()
        canary = self.state.canary
        return JSONResponse(
            {
                "id": "msg_" + canary,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": self._text("anthropic", fault, prompt)}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": self.state.prompt_tokens,
                    "output_tokens": self.state.output_tokens,
                },
            },
            headers={"request-id": "req_" + canary},
        )

    # -- Gemini -------------------------------------------------------------------------
    async def _gemini(self, request: Request) -> Response:
        target = request.path_params["target"]
        model, _, action = target.partition(":")
        if action != "generateContent":
            return JSONResponse({"error": {"code": 404, "status": "NOT_FOUND"}}, 404)
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key", "")
        got = await self._common(request, "gemini", key, model)
        if isinstance(got, Response):
            return got
        fault, prompt, _ = got

        def error(status: int, state: str, message: str, reason: str | None = None) -> Response:
            err: dict[str, Any] = {"code": status, "message": message, "status": state}
            if reason:
                err["details"] = [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": reason,
                        "domain": "googleapis.com",
                    }
                ]
            headers = self._rate_headers() if status == 429 else {}
            return JSONResponse({"error": err}, status_code=status, headers=headers)

        if fault == "401":
            # Gemini answers a bad API key with 400 INVALID_ARGUMENT / API_KEY_INVALID.
            return error(
                400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                "API_KEY_INVALID",
            )  # fmt: skip
        if fault == "429":
            return error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted.")
        if fault == "500":
            return error(500, "INTERNAL", "An internal error has occurred.")
        if fault == "malformed":
            return self._malformed()
        canary = self.state.canary
        return JSONResponse(
            {
                "candidates": [
                    {
                        "content": {
                            "parts": [{"text": self._text("gemini", fault, prompt)}],
                            "role": "model",
                        },
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": self.state.prompt_tokens,
                    "candidatesTokenCount": self.state.output_tokens,
                    "totalTokenCount": self.state.prompt_tokens + self.state.output_tokens,
                },
                "modelVersion": model + "-" + canary,
                "responseId": canary,
            }
        )

    async def _stats(self, request: Request) -> Response:
        with self.state.lock:
            return JSONResponse({"served": self.state.served, "counts": dict(self.state.counts)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--every-nth-429", type=int, default=0)
    parser.add_argument("--retry-after", default="0")
    parser.add_argument("--retry-after-ms", default=None)
    args = parser.parse_args()
    fake = FakeLLM(
        latency=args.latency,
        port=args.port,
        every_nth_429=args.every_nth_429,
        retry_after=args.retry_after,
        retry_after_ms=args.retry_after_ms,
    )
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
