"""The trust page (the data inventory as HTML, reused by the control plane) and the OpenAPI
document. The web app's pages are jinja2 templates (`templates/`, rendered by `ui/`).

The trust page carries no script and no inline style (the CSP forbids both) and loads nothing
from anywhere else.
"""

from __future__ import annotations

from html import escape
from typing import Any

from paitho_tenant import inventory

_HEAD = (
    "<!doctype html><html lang=en><head><meta charset=utf-8>"
    "<meta name=viewport content='width=device-width,initial-scale=1'>"
    "<title>{title}</title></head><body><main><h1>{title}</h1>"
)
_TAIL = "</main></body></html>"


def _page(title: str, body: str) -> str:
    return _HEAD.format(title=escape(title)) + body + _TAIL


def trust_page() -> str:
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(r[k])}</td>" for k in ("data_type", "where", "encryption", "retention")
        )
        + "</tr>"
        for r in inventory.summary_rows()
    )
    detail = "".join(
        f"<tr><td>{escape(t.name)}</td><td>{escape(c.name)}</td><td>{escape(c.cls)}</td>"
        f"<td>{escape(c.note)}</td></tr>"
        for t in inventory.TABLES
        for c in t.columns
    )
    return _page(
        "Every byte, accounted for",
        "<table><thead><tr><th>Data type</th><th>Where</th><th>Encryption</th>"
        f"<th>Retention</th></tr></thead><tbody>{rows}</tbody></table>"
        "<h2>Every column</h2><table><thead><tr><th>Table</th><th>Column</th><th>Class</th>"
        f"<th>Note</th></tr></thead><tbody>{detail}</tbody></table>",
    )


def _op(summary: str, status: dict[str, str], body: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {code: {"description": text} for code, text in status.items()},
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    return op


def _json(props: dict[str, str], required: list[str]) -> dict[str, Any]:
    return {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {k: {"type": v} for k, v in props.items()},
                "required": required,
            }
        }
    }


def openapi() -> dict[str, Any]:
    """The HTTP contract. Mutating requests need Origin = own origin and
    `X-Requested-With: XMLHttpRequest`."""
    s = "string"
    return {
        "openapi": "3.1.0",
        "info": {"title": "Paitho tenant", "version": "1"},
        "paths": {
            "/healthz": {
                "get": _op("Vault state", {"200": "state", "503": "database unreachable"})
            },
            "/setup": {
                "post": _op(
                    "Create the owner and the vault",
                    {"201": "set up (generated passphrase returned once)", "409": "already set up"},
                    _json(
                        {"owner_email": s, "owner_password": s, "passphrase": s, "region": s},
                        ["owner_email", "owner_password"],
                    ),
                )
            },
            "/unlock": {
                "post": _op(
                    "Unseal with the passphrase",
                    {"204": "unsealed", "401": "wrong passphrase", "429": "too many attempts"},
                    _json({"passphrase": s}, ["passphrase"]),
                )
            },
            "/seal": {"post": _op("Forget the data key now", {"204": "sealed"})},
            "/login": {
                "post": _op(
                    "Log in",
                    {"204": "session cookie set", "401": "wrong email or password"},
                    _json({"email": s, "password": s}, ["email", "password"]),
                )
            },
            "/logout": {"post": _op("Log out", {"204": "session ended"})},
            "/api/workspaces": {
                "get": _op("List workspaces", {"200": "workspaces"}),
                "post": _op(
                    "Create a workspace",
                    {"201": "created"},
                    _json({"name": s, "region": s}, ["name", "region"]),
                ),
            },
            "/api/brands": {
                "get": _op("List brands", {"200": "brands"}),
                "post": _op(
                    "Create a brand",
                    {"201": "created"},
                    _json(
                        {"name": s, "sending_identity": s, "voice": s, "icp": s, "workspace": s},
                        ["name"],
                    ),
                ),
            },
            "/api/leads": {"get": _op("List leads (decrypted)", {"200": "leads"})},
            "/api/leads/import": {
                "post": _op(
                    "Import a CSV of leads",
                    {"200": "imported, duplicates, errors", "400": "file unusable"},
                    {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "file": {"type": s, "format": "binary"},
                                    "workspace": {"type": s},
                                    "mapping": {"type": s},
                                },
                                "required": ["file"],
                            }
                        }
                    },
                )
            },
            "/api/keychain": {
                "get": _op("List keys (kind, label, created, last4)", {"200": "keys"}),
                "post": _op(
                    "Store a key (write-only)",
                    {"201": "stored"},
                    _json(
                        {"kind": s, "label": s, "secret": s, "workspace": s},
                        ["kind", "label", "secret"],
                    ),
                ),
            },
            "/api/keychain/{key_id}": {"delete": _op("Remove a key", {"204": "removed"})},
            "/api/messages": {
                "post": _op(
                    "Store a message",
                    {"201": "stored"},
                    _json(
                        {
                            "direction": s,
                            "headers": "object",
                            "body": s,
                            "lead_id": "integer",
                            "workspace": s,
                        },
                        ["direction", "headers", "body"],
                    ),
                )
            },
            "/api/messages/{message_id}": {"get": _op("A message (decrypted)", {"200": "message"})},
            "/api/stage-runs": {
                "post": _op(
                    "Record an LLM stage run",
                    {"201": "stored"},
                    _json(
                        {
                            "stage": s,
                            "model": s,
                            "prompt": s,
                            "response": s,
                            "input_tokens": "integer",
                            "output_tokens": "integer",
                            "duration_ms": "integer",
                            "lead_id": "integer",
                            "workspace": s,
                        },
                        [
                            "stage",
                            "model",
                            "prompt",
                            "response",
                            "input_tokens",
                            "output_tokens",
                            "duration_ms",
                        ],
                    ),
                )
            },
            "/api/stage-runs/{run_id}": {
                "get": _op(
                    "A stage run (decrypted while its period key exists)", {"200": "stage run"}
                )
            },
            "/api/vault/rotate": {
                "post": _op(
                    "Rotate the passphrase (rewraps the data key only)",
                    {"200": "rotated"},
                    _json({"current_passphrase": s, "new_passphrase": s}, ["current_passphrase"]),
                )
            },
            "/api/dsar": {
                "post": _op(
                    "Data-subject access or erasure by email",
                    {"200": "result"},
                    _json({"kind": s, "email": s}, ["kind", "email"]),
                )
            },
            "/api/export": {
                "get": _op(
                    "Zip of every table, decrypted, JSON + CSV, SHA-256 manifest",
                    {"200": "application/zip"},
                )
            },
            "/trust": {"get": _op("The data inventory", {"200": "HTML"})},
        },
    }
