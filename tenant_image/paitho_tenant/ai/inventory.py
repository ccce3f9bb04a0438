"""Data inventory of the AI stages' tables (migrations/0200_ai.sql), joined to the core's
inventory through its EXTENSION_MODULES."""

from __future__ import annotations

from paitho_tenant.inventory import ENCRYPTED, METADATA, Column, Table

_IN_DOCKER = "Postgres · inside your Docker"
_DATA_KEY = "AES-256 (pgp_sym_encrypt, data key wrapped by your PG_PASSPHRASE)"


def _meta(*names: str) -> tuple[Column, ...]:
    return tuple(Column(n, METADATA) for n in names)


TABLES: tuple[Table, ...] = (
    Table(
        "ai_run_meta",
        "LLM prompt + response logs",
        _IN_DOCKER + " · stage_runs",
        "none (counts, costs, outcomes; never a prompt, a response or a provider body)",
        "with its stage run",
        True,
        _meta(
            "run_id",
            "workspace_id",
            "job",
            "attempt",
            "provider",
            "key_id",
            "prompt_version",
            "status",
            "error_code",
            "error",
            "http_attempts",
            "cost_usd",
            "started_at",
        ),
    ),
    Table(
        "ai_endpoints",
        "LLM provider keys, SMTP/IMAP credentials, enrichment keys (BYOK)",
        _IN_DOCKER,
        "none (the base URL of your own model server)",
        "until you remove",
        True,
        _meta("key_id", "workspace_id", "base_url", "created_at"),
    ),
    Table(
        "ai_prices",
        "AI settings: prices, budgets, templates",
        _IN_DOCKER,
        "none (prices)",
        "until you remove",
        True,
        _meta(
            "workspace_id",
            "provider",
            "model",
            "input_usd_per_mtok",
            "output_usd_per_mtok",
            "updated_at",
        ),
    ),
    Table(
        "ai_budgets",
        "AI settings: prices, budgets, templates",
        _IN_DOCKER,
        "none (an amount)",
        "until you remove",
        True,
        _meta("workspace_id", "monthly_usd", "updated_at"),
    ),
    Table(
        "ai_prompt_templates",
        "AI settings: prices, budgets, templates",
        _IN_DOCKER,
        _DATA_KEY,
        "until you remove",
        True,
        (
            *_meta("id", "workspace_id", "brand_id", "stage", "version", "created_at"),
            Column("system", ENCRYPTED),
            Column("user_template", ENCRYPTED),
        ),
    ),
    Table(
        "ai_campaign_settings",
        "AI settings: prices, budgets, templates",
        _IN_DOCKER,
        _DATA_KEY,
        "until you remove",
        True,
        (
            *_meta("campaign_id", "workspace_id", "brand_id", "mode", "key_id", "model"),
            Column("opt_out_line", ENCRYPTED),
            *_meta("updated_at"),
        ),
    ),
    Table(
        "ai_drafts",
        "Email message bodies (sent + received)",
        _IN_DOCKER,
        _DATA_KEY,
        "indefinite (you delete)",
        True,
        (
            *_meta("id", "workspace_id", "campaign_id", "lead_id", "step", "status"),
            Column("subject", ENCRYPTED),
            Column("body", ENCRYPTED),
            Column("audit_reasons", ENCRYPTED),
            *_meta("draft_run_id", "audit_run_id", "edited", "decided_by", "decided_at"),
            *_meta("created_at", "outbound_id", "sent_at", "send_error"),
        ),
    ),
    Table(
        "ai_qualifications",
        "Lead records",
        _IN_DOCKER,
        _DATA_KEY,
        "indefinite (you delete)",
        True,
        (
            *_meta("id", "workspace_id", "lead_id", "brand_id", "verdict", "score"),
            Column("reason", ENCRYPTED),
            *_meta("run_id", "created_at"),
        ),
    ),
    Table(
        "ai_enrichment_settings",
        "AI settings: prices, budgets, templates",
        _IN_DOCKER,
        "none (which provider, on or off, who chose)",
        "until you remove",
        True,
        _meta(
            "workspace_id",
            "provider",
            "key_id",
            "directory_path",
            "enabled",
            "changed_by",
            "changed_at",
        ),
    ),
    Table(
        "lead_enrichment",
        "Lead records",
        _IN_DOCKER,
        _DATA_KEY,
        "indefinite (you delete)",
        True,
        (
            *_meta("id", "workspace_id", "lead_id", "field", "source", "fetched_at"),
            Column("value", ENCRYPTED),
        ),
    ),
)
