"""`POST /internal/jobs/{backup|retention}`: the scheduled jobs, run inside the running tenant.

The control plane's dispatcher (chalicelib/backups.py, HttpJobRunner) calls this over the
tenant's private origin with body {"token", "execution"} and the header
`X-Paitho-Job-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>` keyed with
PAITHO_JOBS_KEY (a per-deployment key from the operator, passed in the task's environment; not
customer data). Without the key configured the endpoint does not exist (404); a missing, wrong
or stale signature gets 401 and starts nothing. A good one gets 202 and the job runs in a
background thread with this tenant's own admin conninfo and its PAITHO_BACKUP_TO /
PAITHO_BACKUP_RECIPIENT, through the same code as `paitho-tenant backup|retention`
(backup_cli.run), which answers SendTaskSuccess with the token and metadata only. One job of a
kind at a time: a second request while one runs gets 409 (the dispatcher fails that token).

Threat model: the token is unguessable and a backup is encrypted to the customer's own public
key, so a forged request could at most start an extra run; the signature and the timestamp
window stop that for anyone without the operator's key.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from paitho_tenant import backup_cli
from paitho_tenant.app import Components

log = logging.getLogger(__name__)

JOBS = ("backup", "retention")
SIGNATURE_HEADER = "x-paitho-job-signature"
MAX_AGE_S = 300
MAX_BODY = 64 * 1024
KEY_ENV = "PAITHO_JOBS_KEY"

Reporter = Callable[[str, str], None]

_running: dict[str, threading.Thread] = {}
_running_lock = threading.Lock()


def signature_ok(key: bytes, header: str, body: bytes, now: float) -> bool:
    """True if `header` is `t=<unix>,v1=<hex>` with a fresh time and the right HMAC of body."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        stamp = int(parts["t"])
        given = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs(now - stamp) > MAX_AGE_S:
        return False
    expected = hmac.new(key, str(stamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.encode())


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def job_args(job: str, components: Components, token: str) -> argparse.Namespace:
    """The same arguments `paitho-tenant <job>` would parse, from this tenant's settings."""
    settings = components.settings
    common = {
        "command": job,
        "db": settings.admin_conninfo,
        "tenant": settings.slug,
        "to": os.environ.get("PAITHO_BACKUP_TO"),
        "token": token,
    }
    if job == "backup":
        return argparse.Namespace(
            **common,
            recipient=os.environ.get("PAITHO_BACKUP_RECIPIENT"),
            attempts=3,
            backoff=2.0,
            compress=None,
        )
    keep = int(os.environ.get("PAITHO_BACKUP_KEEP_DAYS", "0")) or None
    return argparse.Namespace(**common, keep_backups_days=keep, as_of=None)


def _run(job: str, args: argparse.Namespace, report: Reporter) -> None:
    try:
        backup_cli.run(args, report)  # reports to Step Functions itself, success or failure
    finally:
        with _running_lock:
            _running.pop(job, None)


async def run_job(request: Request) -> Response:
    key = os.environ.get(KEY_ENV, "").encode()
    if not key:
        return _error(404, "not_found", "not found")
    job = str(request.path_params["job"])
    body = await request.body()
    if len(body) > MAX_BODY or not signature_ok(
        key, request.headers.get(SIGNATURE_HEADER, ""), body, time.time()
    ):
        return _error(401, "unauthorized", "a job request needs a valid signature")
    if job not in JOBS:
        return _error(404, "not_found", "unknown job")
    try:
        token = str(json.loads(body)["token"])
    except (ValueError, KeyError, TypeError):
        return _error(400, "bad_request", "a job request needs a token")
    components: Components = request.app.state.components
    report: Reporter = getattr(
        request.app.state, "job_reporter", backup_cli._report_to_step_functions
    )
    args = job_args(job, components, token)
    with _running_lock:
        if job in _running:
            return _error(409, "busy", f"a {job} job is already running")
        thread = threading.Thread(
            target=_run, args=(job, args, report), name=f"job-{job}", daemon=True
        )
        _running[job] = thread
    thread.start()
    log.info(json.dumps({"event": "job_accepted", "job": job}))
    return JSONResponse({"job": job, "status": "started"}, status_code=202)


routes = [Route("/internal/jobs/{job}", run_job, methods=["POST"])]
