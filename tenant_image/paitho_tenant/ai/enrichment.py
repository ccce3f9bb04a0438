"""Contact enrichment: OFF by default; on for a workspace only after a person opts in, and for
a remote provider only with the workspace's own key from the keychain.

    EnrichmentProvider.lookup(email, facts) -> {field: value}
        ApolloProvider     POST /api/v1/people/match (the lead's email leaves the tenant)
        LocalCsvProvider   a CSV directory file inside the tenant (nothing leaves)

`enrich_lead()` reads the workspace's opt-in FIRST and raises EnrichmentDisabled before any
provider object is built, so no request can be made while the opt-in is off. Only an
allow-list of fields is kept from an answer (never the raw body); each stored value records its
source and time (`lead_enrichment`, encrypted). Every opt-in, opt-out and call is audited.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

import httpx2
import psycopg
from psycopg.rows import dict_row

from paitho_tenant import audit, keychain
from paitho_tenant.ai.errors import EnrichmentDisabled, KeyRejected, ProviderError
from paitho_tenant.ai.providers import status_error
from paitho_tenant.crypto import COLUMN_OPTIONS, DataKey, normalise_for_index
from paitho_tenant.db import workspace_tx
from paitho_tenant.errors import BadRequest, NotFound

log = logging.getLogger(__name__)

PROVIDERS = ("apollo", "local_csv")
APOLLO_URL = "https://api.apollo.io"
MAX_VALUE = 500


class EnrichmentProvider(Protocol):
    name: str

    def lookup(self, email: str, facts: Mapping[str, str]) -> dict[str, str]: ...


class ApolloProvider:
    """Apollo People Enrichment (`POST /api/v1/people/match`, key in `x-api-key`)."""

    name = "apollo"
    FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "title": ("title",),
        "headline": ("headline",),
        "linkedin_url": ("linkedin_url",),
        "city": ("city",),
        "country": ("country",),
        "company": ("organization", "name"),
        "company_website": ("organization", "website_url"),
        "industry": ("organization", "industry"),
        "company_size": ("organization", "estimated_num_employees"),
    }

    def __init__(
        self,
        api_key: str,
        base_url: str = APOLLO_URL,
        timeout: float = 20.0,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        self._client = httpx2.Client(
            base_url=base_url,
            timeout=timeout,
            headers={"x-api-key": api_key, "Cache-Control": "no-cache"},
            transport=transport,
            trust_env=False,
        )

    def lookup(self, email: str, facts: Mapping[str, str]) -> dict[str, str]:
        body = {"email": email, "reveal_personal_emails": False, "reveal_phone_number": False}
        for ours, theirs in (
            ("first_name", "first_name"),
            ("last_name", "last_name"),
            ("company", "organization_name"),
        ):
            if facts.get(ours):
                body[theirs] = facts[ours]
        try:
            response = self._client.post("/api/v1/people/match", json=body)
        except httpx2.TimeoutException:
            raise ProviderError("the apollo provider did not answer in time") from None
        except httpx2.TransportError:
            raise ProviderError("the apollo provider could not be reached") from None
        if response.status_code != 200:
            raise status_error("apollo", response.status_code, None, 0.0)
        try:
            person = response.json().get("person") or {}
        except ValueError:
            raise ProviderError("the apollo provider sent an answer that is not JSON") from None
        out: dict[str, str] = {}
        for field, path in self.FIELDS.items():
            value: Any = person
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            if value not in (None, ""):
                out[field] = str(value)[:MAX_VALUE]
        return out

    def close(self) -> None:
        self._client.close()


class LocalCsvProvider:
    """A directory the customer keeps as a CSV file inside the tenant (an `email` column)."""

    name = "local_csv"

    def __init__(self, path: Path) -> None:
        self.path = path

    def lookup(self, email: str, facts: Mapping[str, str]) -> dict[str, str]:
        wanted = normalise_for_index(email)
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as fh:
                for row in csv.DictReader(fh):
                    found = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
                    if normalise_for_index(found.get("email", "")) == wanted:
                        return {k: v[:MAX_VALUE] for k, v in found.items() if v and k != "email"}
        except OSError:
            raise ProviderError("the local directory file cannot be read") from None
        return {}


# -- settings -----------------------------------------------------------------------------------
def settings(conn: psycopg.Connection[Any], workspace_id: int) -> dict[str, Any] | None:
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        return cur.execute(
            "SELECT provider, key_id, directory_path, enabled, changed_by, changed_at"
            " FROM ai_enrichment_settings"
        ).fetchone()


def opt_in(
    conn: psycopg.Connection[Any],
    workspace_id: int,
    actor: str,
    provider: str,
    key_id: int | None = None,
    directory_path: str | None = None,
) -> None:
    """Turn enrichment on for one workspace: an explicit act by a person, audited."""
    if provider not in PROVIDERS:
        raise BadRequest("provider must be one of: " + ", ".join(PROVIDERS))
    with workspace_tx(conn, workspace_id):
        if provider == "apollo":
            row = conn.execute("SELECT kind FROM keychain WHERE id = %s", (key_id,)).fetchone()
            if row is None or row[0] != "enrichment":
                raise BadRequest(
                    "apollo needs this workspace's own key: add it to the keychain with kind "
                    "'enrichment' and pass its key_id"
                )
            directory_path = None
        else:
            if not directory_path or not Path(directory_path).is_file():
                raise BadRequest("local_csv needs directory_path, a readable CSV file")
            key_id = None
        conn.execute(
            "INSERT INTO ai_enrichment_settings (provider, key_id, directory_path, enabled,"
            " changed_by) VALUES (%s, %s, %s, true, %s) ON CONFLICT (workspace_id) DO UPDATE"
            " SET provider = excluded.provider, key_id = excluded.key_id,"
            " directory_path = excluded.directory_path, enabled = true,"
            " changed_by = excluded.changed_by, changed_at = now()",
            (provider, key_id, directory_path, actor),
        )
        audit.record(
            conn,
            actor,
            "enrichment.opted_in",
            {"workspace_id": workspace_id, "provider": provider, "key_id": key_id},
        )


def opt_out(conn: psycopg.Connection[Any], workspace_id: int, actor: str) -> None:
    with workspace_tx(conn, workspace_id):
        conn.execute(
            "UPDATE ai_enrichment_settings SET enabled = false, changed_by = %s,"
            " changed_at = now()",
            (actor,),
        )
        audit.record(conn, actor, "enrichment.opted_out", {"workspace_id": workspace_id})


# -- a call -------------------------------------------------------------------------------------
ProviderFactory = Callable[[dict[str, Any], Callable[[], str]], EnrichmentProvider]


def default_factory(apollo_url: str = APOLLO_URL) -> ProviderFactory:
    def build(config: dict[str, Any], secret: Callable[[], str]) -> EnrichmentProvider:
        if config["provider"] == "apollo":
            return ApolloProvider(secret(), base_url=apollo_url)
        return LocalCsvProvider(Path(str(config["directory_path"])))

    return build


def enrich_lead(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    lead_id: int,
    actor: str,
    factory: ProviderFactory,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, Any]:
    """Enrich one lead with the workspace's opted-in provider; EnrichmentDisabled otherwise."""
    config = settings(conn, workspace_id)
    if config is None or not config["enabled"]:
        raise EnrichmentDisabled(
            "enrichment is off for this workspace: nothing was sent anywhere. An owner can "
            "opt in with the workspace's own provider key"
        )
    if config["provider"] == "apollo" and config["key_id"] is None:
        raise EnrichmentDisabled("the workspace's enrichment key was removed: opt in again")
    with workspace_tx(conn, workspace_id):
        row = conn.execute(
            "SELECT pgp_sym_decrypt(email, %s), pgp_sym_decrypt(profile, %s) FROM leads"
            " WHERE id = %s",
            (key.column_key, key.column_key, lead_id),
        ).fetchone()
    if row is None:
        raise NotFound("no such lead in this workspace")
    facts = {str(k): str(v) for k, v in (json.loads(row[1]) if row[1] else {}).items()}

    def secret() -> str:
        return keychain.reveal(conn, key, workspace_id, int(config["key_id"]))

    provider = factory(config, secret)
    detail = {"workspace_id": workspace_id, "lead_id": lead_id, "provider": provider.name}
    try:
        found = provider.lookup(str(row[0]), facts)
    except ProviderError as exc:
        with workspace_tx(conn, workspace_id):
            audit.record(conn, actor, "enrichment.call_failed", {**detail, "error": exc.code})
        if isinstance(exc, KeyRejected):
            log.warning("enrichment key rejected by %s", provider.name)
        raise
    finally:
        close = getattr(provider, "close", None)
        if close is not None:
            close()
    fetched_at = clock()
    with workspace_tx(conn, workspace_id):
        for field, value in sorted(found.items()):
            conn.execute(
                "INSERT INTO lead_enrichment (lead_id, field, value, source, fetched_at)"
                " VALUES (%s, %s, pgp_sym_encrypt(%s, %s, '" + COLUMN_OPTIONS + "'), %s, %s)"
                " ON CONFLICT (lead_id, field, source) DO UPDATE SET value = excluded.value,"
                " fetched_at = excluded.fetched_at",
                (lead_id, field[:100], value, key.column_key, provider.name, fetched_at),
            )
        audit.record(conn, actor, "enrichment.call", {**detail, "fields": len(found)})
    return {
        "lead_id": lead_id,
        "source": provider.name,
        "fetched_at": fetched_at,
        "fields": sorted(found),
    }


def enriched_fields(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int, lead_id: int
) -> list[dict[str, Any]]:
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        return cur.execute(
            "SELECT field, pgp_sym_decrypt(value, %s) AS value, source, fetched_at"
            " FROM lead_enrichment WHERE lead_id = %s ORDER BY field, source",
            (key.column_key, lead_id),
        ).fetchall()
