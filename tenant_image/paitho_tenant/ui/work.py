"""Pages over the outbound engine and the AI stages (placeholder until filled in)."""

from __future__ import annotations

from starlette.routing import Route


def routes() -> list[Route]:
    return []
