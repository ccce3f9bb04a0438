"""The control plane's Chalice app: routes only. Services are built by the composition root
(`chalicelib.factory.control_plane()`), on the first request, never at import time."""

from __future__ import annotations

import importlib

from chalice.app import Chalice

from chalicelib import webapp

app = Chalice(app_name="paitho-control-plane")


def _services() -> webapp.ControlPlane:
    factory = importlib.import_module("chalicelib.factory")
    control_plane: webapp.ControlPlane = factory.control_plane()
    return control_plane


webapp.build(app, _services)
