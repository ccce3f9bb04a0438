"""Versioned prompt templates per brand and stage, encrypted under the data key.

Adding a template creates the next version for (brand, stage); the newest version is used;
older versions stay so every stage run names the version it used ("brand-<id>-v<n>").
"""

from __future__ import annotations

from string import Template
from typing import Any

import psycopg
from psycopg.rows import dict_row

from paitho_tenant.ai.stages import BUILTIN, STAGES, StageTemplate
from paitho_tenant.crypto import COLUMN_OPTIONS, DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.errors import BadRequest

MAX_TEMPLATE = 20_000


def add(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    brand_id: int,
    stage: str,
    system: str,
    user_template: str,
) -> int:
    """Store a new version; returns its version number."""
    if stage not in STAGES:
        raise BadRequest("stage must be one of: " + ", ".join(STAGES))
    for name, text in (("system", system), ("user_template", user_template)):
        if not text.strip() or len(text) > MAX_TEMPLATE:
            raise BadRequest(f"{name} must be 1 to {MAX_TEMPLATE} characters")
        try:
            Template(text).substitute({})
        except KeyError:
            pass  # placeholders are expected
        except ValueError as exc:
            raise BadRequest(f"{name} has a malformed $placeholder") from exc
    enc = "pgp_sym_encrypt(%(VALUE)s, %(k)s, '" + COLUMN_OPTIONS + "')"
    with workspace_tx(conn, workspace_id):
        conn.execute("SELECT pg_advisory_xact_lock(7412, %s::int)", (brand_id,))
        row = conn.execute(
            "INSERT INTO ai_prompt_templates (brand_id, stage, version, system, user_template)"
            " SELECT %(b)s, %(s)s, coalesce(max(version), 0) + 1, "
            + enc.replace("VALUE", "sys")
            + ", "
            + enc.replace("VALUE", "usr")
            + " FROM ai_prompt_templates WHERE brand_id = %(b)s AND stage = %(s)s"
            " RETURNING version",
            {"b": brand_id, "s": stage, "sys": system, "usr": user_template, "k": key.column_key},
        ).fetchone()
    assert row is not None
    return int(row[0])


def current(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int, brand_id: int, stage: str
) -> StageTemplate:
    """The newest version of the brand's template for the stage, or the built-in one."""
    with workspace_tx(conn, workspace_id):
        return current_in_scope(conn, key, brand_id, stage)


def current_in_scope(
    conn: psycopg.Connection[Any], key: DataKey, brand_id: int, stage: str
) -> StageTemplate:
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(
        "SELECT version, pgp_sym_decrypt(system, %(k)s) AS system,"
        " pgp_sym_decrypt(user_template, %(k)s) AS user_template"
        " FROM ai_prompt_templates WHERE brand_id = %(b)s AND stage = %(s)s"
        " ORDER BY version DESC LIMIT 1",
        {"k": key.column_key, "b": brand_id, "s": stage},
    ).fetchone()
    if row is None:
        return BUILTIN[stage]
    return StageTemplate(
        stage, f"brand-{brand_id}-v{row['version']}", row["system"], row["user_template"]
    )


def versions(
    conn: psycopg.Connection[Any], workspace_id: int, brand_id: int
) -> list[dict[str, Any]]:
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        return cur.execute(
            "SELECT stage, version, created_at FROM ai_prompt_templates WHERE brand_id = %s"
            " ORDER BY stage, version",
            (brand_id,),
        ).fetchall()
