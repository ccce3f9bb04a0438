"""The routing decision for a host the edge could not send to a running tenant.

The edge (HAProxy) carries bytes; it only knows hosts whose tenant is running. Every other
host under our domain lands on the control plane, which answers here: an unknown name gets a
404 page, a tenant that is provisioning/starting/upgrading a 503 page that refreshes, a
suspended tenant a 503 page that says so. Never a proxy error.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from chalicelib.errors import NotFound
from chalicelib.registry import Registry

CONTROL_HOSTS = frozenset({"", "www", "marketplace", "licenses", "status"})


@dataclass(frozen=True)
class Decision:
    status: int
    title: str
    message: str
    retry_after: int | None = None
    state: str | None = None


def tenant_slug(host: str, domain: str) -> str | None:
    """'acme.localhost:8000' -> 'acme'; control-plane hosts and foreign hosts -> None."""
    name = host.split(":", 1)[0].strip().lower().rstrip(".")
    if name == domain:
        return None
    suffix = "." + domain
    if not name.endswith(suffix):
        return None
    label = name[: -len(suffix)]
    if "." in label or label in CONTROL_HOSTS:
        return None
    return label


def decide(slug: str, registry: Registry) -> Decision:
    try:
        record = registry.get(slug)
    except NotFound:
        record = None
    if record is None or record.state == "deleted":
        return Decision(
            404,
            "No such workspace",
            f"There is no Paitho workspace at {slug}. Check the address, or sign up to create one.",
            state=None,
        )
    state = record.state
    if state in ("provisioning", "starting", "upgrading"):
        return Decision(
            503,
            "Almost ready",
            f"The workspace {slug} is being {'upgraded' if state == 'upgrading' else 'prepared'}. "
            "This page refreshes by itself.",
            retry_after=2,
            state=state,
        )
    if state in ("suspended", "suspending"):
        return Decision(
            503,
            "Workspace suspended",
            f"The workspace {slug} is suspended. Its data is kept; the owner can "
            "resume it from the billing portal.",
            state=state,
        )
    if state == "failed":
        return Decision(
            503,
            "Temporarily unavailable",
            f"The workspace {slug} could not be started. The operator has been "
            "told; your data is intact.",
            retry_after=30,
            state=state,
        )
    return Decision(
        503,
        "Temporarily unavailable",
        f"The workspace {slug} is restarting. This page refreshes by itself.",
        retry_after=2,
        state=state,
    )


def render(decision: Decision) -> str:
    refresh = (
        f'<meta http-equiv="refresh" content="{decision.retry_after}">'
        if decision.retry_after
        else ""
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"{refresh}<title>{escape(decision.title)} · Paitho</title>"
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;"
        "padding:0 1rem;color:#1b1b1b}h1{font-size:1.5rem}</style></head><body>"
        f"<h1>{escape(decision.title)}</h1><p>{escape(decision.message)}</p>"
        "</body></html>"
    )
