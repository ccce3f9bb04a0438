"""A fake Apollo People Enrichment endpoint on loopback (`POST /api/v1/people/match`) that
records every request. Its answers carry `canary` in fields Paitho must not keep."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass(frozen=True)
class ApolloRequest:
    api_key: str
    body: dict[str, Any]


class FakeApollo:
    def __init__(self) -> None:
        self.canary = "APOLLOCANARY" + uuid.uuid4().hex
        self.requests: list[ApolloRequest] = []
        self.lock = threading.Lock()
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[Route("/api/v1/people/match", self._match, methods=["POST"])])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _match(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            self.requests.append(ApolloRequest(request.headers.get("x-api-key", ""), body))
        if request.headers.get("x-api-key", "").startswith("revoked"):
            return JSONResponse({"error": "Invalid access credentials."}, status_code=401)
        return JSONResponse(
            {
                "person": {
                    "id": self.canary,
                    "first_name": body.get("first_name", "Ada"),
                    "title": "Head of Operations",
                    "linkedin_url": "https://www.linkedin.com/in/example",
                    "city": "Lyon",
                    "country": "France",
                    "email_status": self.canary,
                    "organization": {"name": "Example SAS", "industry": "logistics"},
                }
            }
        )

    def __enter__(self) -> FakeApollo:
        from tests.conftest import free_port

        self.port = free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake Apollo server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(15)
