"""The web app's route table (mounted by web.routes) and the static files it serves itself."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from paitho_tenant.ui import core, leads, work
from paitho_tenant.ui.base import PACKAGE, page

STATIC = PACKAGE / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


async def static(request: Request) -> Response:
    name = str(request.path_params["name"])
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix])


def routes() -> list[Route]:
    both = ["GET", "POST"]
    return [
        Route("/static/{name}", static, methods=["GET"]),
        Route("/app", page(core.dashboard), methods=["GET"]),
        Route("/app/workspaces", page(core.workspaces_page, core.workspaces_post), methods=both),
        Route("/app/workspace/switch", page(core.dashboard, core.switch_post), methods=["POST"]),
        Route("/app/brands", page(core.brands_page, core.brands_post), methods=both),
        Route("/app/keychain", page(core.keychain_page, core.keychain_post), methods=both),
        Route("/app/audit", page(core.audit_page), methods=["GET"]),
        Route("/app/export", page(core.export_page), methods=["GET"]),
        Route("/app/dsar", page(core.export_page, core.dsar_post), methods=["POST"]),
        Route("/app/settings", page(core.settings_page, core.settings_post), methods=both),
        Route("/app/licence", page(core.licence_page), methods=["GET"]),
        Route(
            "/app/leads", page(leads.leads_page, leads.leads_page, reads_only=True), methods=both
        ),
        Route("/app/leads/import", page(leads.import_page, leads.import_upload), methods=both),
        Route(
            "/app/leads/import/{token}",
            page(leads.import_progress, leads.import_start),
            methods=both,
        ),
        *work.routes(),
    ]
