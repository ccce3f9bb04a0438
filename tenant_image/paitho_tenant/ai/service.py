"""The composition of the AI stages for one tenant process: which key and provider a call
uses, where it writes, and the qualification stage.

`AIService` is built once (the app's composition root) with a connection source, a way to get
the data key (raises Sealed while sealed), a ProviderRegistry and the outbound engine's send
queue. Provider keys are read from the keychain (decrypted in the database with the data key)
only when a client for that key is built, never from the environment.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg

from paitho_tenant import keychain
from paitho_tenant.ai import runs, templates
from paitho_tenant.ai.errors import NoProviderKey
from paitho_tenant.ai.providers import KINDS, ProviderRegistry
from paitho_tenant.ai.runs import Connect, StageContext, run_stage
from paitho_tenant.ai.stages import (
    Qualification,
    facts_block,
    lead_facts,
    parse,
    render,
)
from paitho_tenant.crypto import COLUMN_OPTIONS, DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.errors import BadRequest, NotFound, Sealed

log = logging.getLogger(__name__)


class SendQueue(Protocol):
    """Implemented by the outbound engine: take a draft whose audit passed and send it."""

    def queue_for_sending(self, draft_id: int, *, workspace_id: int) -> None: ...


class StatusOnlyQueue:
    """The default queue: the draft's status `queued` is the queue (the engine polls it)."""

    def queue_for_sending(self, draft_id: int, *, workspace_id: int) -> None:
        log.info("draft %s queued for sending (workspace %s)", draft_id, workspace_id)


class AIService:
    def __init__(
        self,
        connect: Connect,
        data_key: Callable[[], DataKey],
        registry: ProviderRegistry,
        queue: SendQueue | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.connect = connect
        self.data_key = data_key
        self.registry = registry
        self.queue: SendQueue = queue or StatusOnlyQueue()
        self.clock = clock

    # -- keys and providers -------------------------------------------------------------------
    def context(
        self,
        workspace_id: int,
        key_id: int,
        model: str,
        conn: psycopg.Connection[Any] | None = None,
    ) -> StageContext:
        """A stage context for one call with one keychain key (the tenant must be unsealed).
        With `conn`, the caller's transaction already has this workspace's scope."""
        try:
            key = self.data_key()
        except Sealed:
            self.registry.clear()  # sealed: drop every client holding a plaintext key
            raise
        if not model.strip():
            raise BadRequest("a model name is required")
        query = (
            "SELECT k.kind, e.base_url FROM keychain k"
            " LEFT JOIN ai_endpoints e ON e.key_id = k.id WHERE k.id = %s"
        )
        if conn is not None:
            row = conn.execute(query, (key_id,)).fetchone()
        else:
            with self.connect() as own, workspace_tx(own, workspace_id):
                row = own.execute(query, (key_id,)).fetchone()
        if row is None or row[0] not in KINDS:
            raise NoProviderKey(
                "this workspace has no LLM provider key with that id: add one to the keychain"
            )
        kind, base_url = str(row[0]), row[1]

        def secret() -> str:
            if conn is not None:  # the caller's connection: never wait for a second one
                return keychain.reveal(conn, key, workspace_id, key_id)
            with self.connect() as own:
                return keychain.reveal(own, key, workspace_id, key_id)

        provider = self.registry.provider(kind, key_id, secret, base_url)
        return StageContext(
            connect=self.connect,
            key=key,
            workspace_id=workspace_id,
            provider=provider,
            provider_kind=kind,
            key_id=key_id,
            model=model.strip(),
            clock=self.clock,
        )

    def set_endpoint(self, workspace_id: int, key_id: int, base_url: str) -> None:
        """The base URL of an OpenAI-compatible server for one key."""
        if not base_url.startswith(("https://", "http://")):
            raise BadRequest("base_url must start with https:// (or http:// on a private host)")
        with self.connect() as conn, workspace_tx(conn, workspace_id):
            conn.execute(
                "INSERT INTO ai_endpoints (key_id, base_url) VALUES (%s, %s)"
                " ON CONFLICT (key_id) DO UPDATE SET base_url = excluded.base_url",
                (key_id, base_url.rstrip("/")),
            )
        self.registry.forget("openai_compatible", key_id)

    # -- qualification ------------------------------------------------------------------------
    def qualify(
        self, workspace_id: int, lead_id: int, brand_id: int, key_id: int, model: str
    ) -> dict[str, Any]:
        key = self.data_key()
        with self.connect() as conn, workspace_tx(conn, workspace_id):
            facts = lead_facts_in_scope(conn, key, lead_id)
            brand = brand_in_scope(conn, key, brand_id)
            template = templates.current_in_scope(conn, key, brand_id, "qualify")
            ctx = self.context(workspace_id, key_id, model, conn)
            price = runs.preflight_in_scope(conn, self.clock(), ctx.provider_kind, ctx.model)
        prompt = render(
            template,
            {"brand": brand["name"], "icp": brand["icp"] or "", "lead_facts": facts_block(facts)},
        )
        result = run_stage(
            ctx,
            "qualify",
            prompt,
            template.version,
            lambda t: parse(Qualification, t),
            lead_id,
            price,
        )
        answer = result.value
        with self.connect() as conn, workspace_tx(conn, workspace_id):
            row = conn.execute(
                "INSERT INTO ai_qualifications (lead_id, brand_id, verdict, score, reason, run_id)"
                " VALUES (%s, %s, %s, %s, pgp_sym_encrypt(%s, %s, '" + COLUMN_OPTIONS + "'), %s)"
                " RETURNING id",
                (
                    lead_id,
                    brand_id,
                    answer.verdict,
                    answer.score,
                    answer.reason,
                    ctx.key.column_key,
                    result.run_ids[-1],
                ),
            ).fetchone()
        assert row is not None
        return {
            "id": int(row[0]),
            "lead_id": lead_id,
            "verdict": answer.verdict,
            "score": answer.score,
            "reason": answer.reason,
            "run_ids": result.run_ids,
        }


def load_lead_facts(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int, lead_id: int
) -> dict[str, str]:
    with workspace_tx(conn, workspace_id):
        return lead_facts_in_scope(conn, key, lead_id)


def lead_facts_in_scope(
    conn: psycopg.Connection[Any], key: DataKey, lead_id: int
) -> dict[str, str]:
    """The lead's CSV fields plus enriched ones (inside a workspace-scoped transaction)."""
    row = conn.execute(
        "SELECT pgp_sym_decrypt(l.profile, %(k)s), (SELECT json_agg(json_build_array("
        " e.field, pgp_sym_decrypt(e.value, %(k)s)) ORDER BY e.fetched_at)"
        " FROM lead_enrichment e WHERE e.lead_id = l.id) FROM leads l WHERE l.id = %(id)s",
        {"k": key.column_key, "id": lead_id},
    ).fetchone()
    if row is None:
        raise NotFound("no such lead in this workspace")
    profile = json.loads(row[0]) if row[0] else {}
    for name, value in row[1] or []:
        profile.setdefault(str(name), str(value))
    return lead_facts(profile)


def load_brand(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int, brand_id: int
) -> dict[str, Any]:
    with workspace_tx(conn, workspace_id):
        return brand_in_scope(conn, key, brand_id)


def brand_in_scope(conn: psycopg.Connection[Any], key: DataKey, brand_id: int) -> dict[str, Any]:
    row = conn.execute(
        "SELECT name, pgp_sym_decrypt(sending_identity, %(k)s),"
        " pgp_sym_decrypt(voice, %(k)s), pgp_sym_decrypt(icp, %(k)s)"
        " FROM brands WHERE id = %(id)s",
        {"k": key.column_key, "id": brand_id},
    ).fetchone()
    if row is None:
        raise NotFound("no such brand in this workspace")
    return {"name": row[0], "sending_identity": row[1], "voice": row[2], "icp": row[3]}
