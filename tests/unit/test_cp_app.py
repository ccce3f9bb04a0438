"""app.py builds nothing at import and serves whatever ControlPlane the platform injects."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from chalice.test import Client

from tests.cp_support import plane

ROOT = Path(__file__).resolve().parents[2]


def test_app_serves_the_injected_control_plane() -> None:
    """After `use(provider)` the routes answer, and the provider ran once, lazily."""
    sys.path.insert(0, str(ROOT))
    try:
        module = importlib.import_module("app")
    finally:
        sys.path.remove(str(ROOT))
    calls: list[int] = []
    cp = plane()

    def provider():  # type: ignore[no-untyped-def]
        calls.append(1)
        return cp

    module.use(provider)
    try:
        assert calls == []
        client = Client(module.app)
        assert client.http.get("/healthz").status_code == 200
        assert client.http.get("/trust").status_code == 200
        assert calls == [1]
    finally:
        module._injected.provider = None


def test_every_lambda_handler_is_a_module_level_name() -> None:
    """Each non-API Lambda chalice registers resolves as `app.<name>` (its handler string)."""
    sys.path.insert(0, str(ROOT))
    try:
        module = importlib.import_module("app")
    finally:
        sys.path.remove(str(ROOT))
    names = [e.name for e in module.app.event_sources]
    assert names == ["billing_tick"]
    for name in names:
        assert callable(getattr(module, name))
