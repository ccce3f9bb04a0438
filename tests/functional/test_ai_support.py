"""Fixtures for the AI stages' functional tests (no tests of its own): a migrated tenant
cluster, a data key, one workspace with a brand, leads and one key per provider kind in the
keychain, the fake provider server, and an AIService wired to both."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from paitho_tenant import keychain, leads, workspaces
from paitho_tenant.ai import enrichment
from paitho_tenant.ai import web as ai_web
from paitho_tenant.ai.providers import ProviderRegistry
from paitho_tenant.ai.service import AIService
from paitho_tenant.crypto import DataKey
from paitho_tenant.db import app_conninfo
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette

from tests.conftest import RunningCluster
from tests.fakes.fake_llm import FakeLLM
from tests.functional.test_tenant_support import client_for, make_app, set_up

KINDS = ("openai", "anthropic", "google", "openai_compatible")
MODELS = {
    "openai": "gpt-test",
    "anthropic": "claude-test",
    "google": "gemini-test",
    "openai_compatible": "llama-test",
}


@dataclass(frozen=True)
class Row:
    row_number: int
    email: str
    fields: dict[str, str]


@dataclass
class RecordingQueue:
    queued: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def queue_for_sending(self, draft_id: int, *, workspace_id: int) -> None:
        with self.lock:
            self.queued.append(draft_id)


@dataclass
class Sleeps:
    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class AIWorld:
    cluster: RunningCluster
    pool: ConnectionPool
    key: DataKey
    workspace_id: int
    brand_id: int
    lead_ids: list[int]
    key_ids: dict[str, int]
    secrets: dict[str, str]
    fake: FakeLLM
    service: AIService
    queue: RecordingQueue
    sleeps: Sleeps

    def conn(self) -> Any:
        return self.pool.connection(timeout=10)


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


def seed(
    conn: psycopg.Connection[Any],
    key: DataKey,
    leads_count: int = 3,
    company: str = "Globex",
    workspace_id: int | None = None,
    secret_tag: str = "",
) -> tuple[int, int, list[int], dict[str, int], dict[str, str]]:
    ws = workspace_id or int(workspaces.create(conn, "default", "eu")["id"])
    brand = workspaces.create_brand(
        conn,
        key,
        ws,
        "Initech",
        sending_identity="Peter at Initech",
        voice="plain, warm, brief",
        icp="Operations leaders at logistics companies in France",
    )
    rows = [
        Row(
            i + 2,
            f"lead{i}@example.test",
            {"first_name": f"Ada{i}", "company": f"{company} {i}", "title": "Head of Ops"},
        )
        for i in range(leads_count)
    ]
    leads.import_rows(conn, key, ws, rows)
    lead_ids = [int(r[0]) for r in _lead_ids(conn, ws)]
    key_ids, secrets = {}, {}
    for kind in KINDS:
        secrets[kind] = f"{kind}-keychain-secret-{secret_tag}0123456789"
        key_ids[kind] = int(keychain.add(conn, key, ws, kind, f"{kind} key", secrets[kind])["id"])
    return ws, brand, lead_ids, key_ids, secrets


def _lead_ids(conn: psycopg.Connection[Any], ws: int) -> list[tuple[Any, ...]]:
    with conn.transaction():
        conn.execute("SELECT set_config('paitho.workspace_id', %s, true)", (str(ws),))
        return conn.execute("SELECT id FROM leads ORDER BY id").fetchall()


def build_world(
    cluster: RunningCluster, fake: FakeLLM, leads_count: int = 3, **registry: Any
) -> AIWorld:
    pool = ConnectionPool(
        app_conninfo(cluster.conninfo()),
        min_size=1,
        max_size=registry.pop("pool_max", 8),
        kwargs={"autocommit": True},
        open=True,
    )
    key = DataKey.generate()
    with pool.connection() as conn:
        ws, brand, lead_ids, key_ids, secrets = seed(conn, key, leads_count)
    sleeps = Sleeps()
    options: dict[str, Any] = {"timeout": 10.0, "max_attempts": 3, "sleep": sleeps}
    options.update(registry)
    reg = ProviderRegistry(
        {"openai": fake.openai_base, "anthropic": fake.url, "google": fake.url}, **options
    )
    queue = RecordingQueue()
    service = AIService(lambda: pool.connection(timeout=10), lambda: key, reg, queue)
    service.set_endpoint(ws, key_ids["openai_compatible"], fake.openai_base)
    return AIWorld(
        cluster, pool, key, ws, brand, lead_ids, key_ids, secrets, fake, service, queue, sleeps
    )


@pytest.fixture
def ai_world(tenant_cluster: RunningCluster, fake_llm: FakeLLM) -> Iterator[AIWorld]:
    world = build_world(tenant_cluster, fake_llm)
    yield world
    world.service.registry.clear()
    world.pool.close()


@contextmanager
def live_ai_app(
    cluster: RunningCluster, fake: FakeLLM, apollo_url: str | None = None
) -> Iterator[tuple[httpx.Client, Starlette, RecordingQueue]]:
    """The real tenant app with the AI routes mounted, served by uvicorn, set up and logged
    in; its AIService calls the fake provider."""
    app = make_app(cluster)
    app.router.routes.extend(ai_web.routes)
    queue = RecordingQueue()
    c = app.state.components
    registry = ProviderRegistry(
        {"openai": fake.openai_base, "anthropic": fake.url, "google": fake.url},
        timeout=10.0,
        max_attempts=3,
        sleep=Sleeps(),
    )
    ai_web.install(
        app, AIService(lambda: c.pool.connection(timeout=10), c.vault.key, registry, queue)
    )
    if apollo_url is not None:
        app.state.enrichment_factory = enrichment.default_factory(apollo_url)
    with client_for(app) as client:
        set_up(client)
        try:
            yield client, app, queue
        finally:
            registry.clear()


def scoped(world: AIWorld, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a query inside the world's workspace scope (app role, RLS on)."""
    with world.conn() as conn, conn.transaction():
        conn.execute(
            "SELECT set_config('paitho.workspace_id', %s, true)", (str(world.workspace_id),)
        )
        return conn.execute(query, params).fetchall()
