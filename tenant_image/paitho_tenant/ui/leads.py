"""The leads pages: keyset-paginated list with exact-email search (blind index) and filters,
and the CSV import with a column-mapping preview and live progress.

Pagination is by key (`after`/`before` a lead id), never by offset, so the 2,000th page costs
what the first does; only the page's rows are decrypted. An uploaded file is held in memory
only (never spooled to disk) between the preview and the import, then dropped.
"""

from __future__ import annotations

import csv
import io
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from paitho_tenant import audit, leads
from paitho_tenant.crypto import DataKey
from paitho_tenant.csvimport import (
    CANONICAL_FIELDS,
    CUSTOM_PREFIX,
    SAMPLE_BYTES,
    CsvFormatError,
    LeadCsvReader,
    LeadRow,
    detect_encoding,
)
from paitho_tenant.db import workspace_tx
from paitho_tenant.errors import BadRequest, NotFound
from paitho_tenant.ui.base import Ctx, see_other

PAGE_SIZE = 50
STATUSES = ("active", "paused", "replied", "bounced", "unsubscribed", "stopped", "completed")
MAX_JOBS = 4
JOB_TTL_S = 3600.0


# -- list -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LeadQuery:
    after: int | None = None
    before: int | None = None
    status: str | None = None
    since: str | None = None  # ISO date: imported on or after


def _where(q: LeadQuery) -> tuple[list[sql.Composable], dict[str, Any]]:
    clauses: list[sql.Composable] = []
    params: dict[str, Any] = {}
    if q.after is not None:
        clauses.append(sql.SQL("l.id > %(after)s"))
        params["after"] = q.after
    if q.before is not None:
        clauses.append(sql.SQL("l.id < %(before)s"))
        params["before"] = q.before
    if q.since:
        clauses.append(sql.SQL("l.created_at >= %(since)s::date"))
        params["since"] = q.since
    if q.status:
        # Hashed once (enrollments has no index on lead_id), not probed per lead.
        clauses.append(
            sql.SQL("l.id IN (SELECT e.lead_id FROM enrollments e WHERE e.status = %(status)s)")
        )
        params["status"] = q.status
    return clauses, params


def page_of_leads(
    conn: psycopg.Connection[Any], key: DataKey, workspace_id: int, q: LeadQuery
) -> dict[str, Any]:
    """One page (PAGE_SIZE rows) and whether there are more before and after it."""
    clauses, params = _where(q)
    backwards = q.before is not None and q.after is None
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    order = sql.SQL(" ORDER BY l.id DESC") if backwards else sql.SQL(" ORDER BY l.id")
    # Pick the page's ids first, then decrypt only those rows (never rows a sort discards).
    query = (
        sql.SQL("WITH page AS MATERIALIZED (SELECT l.id FROM leads l")
        + where
        + order
        + sql.SQL(
            " LIMIT %(n)s) SELECT l.id, pgp_sym_decrypt(l.email, %(k)s) AS email,"
            " pgp_sym_decrypt(l.profile, %(k)s) AS profile, l.created_at"
            " FROM page JOIN leads l USING (id)"
        )
        + order
    )
    params.update({"k": key.column_key, "n": PAGE_SIZE + 1})
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        rows = cur.execute(query, params).fetchall()
        ids = [r["id"] for r in rows]
        statuses = dict(
            conn.execute(
                "SELECT lead_id, string_agg(DISTINCT status, ', ') FROM enrollments"
                " WHERE lead_id = ANY(%s) GROUP BY lead_id",
                (ids,),
            ).fetchall()
        )
        total = None
        if not (q.status or q.since or q.after or q.before):
            one = conn.execute("SELECT count(*) FROM leads").fetchone()
            total = int(one[0]) if one else 0
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    if backwards:
        rows.reverse()
    for row in rows:
        row["profile"] = _profile(row["profile"])
        row["statuses"] = statuses.get(row["id"])
    has_next = more if not backwards else True
    has_prev = (q.after is not None) if not backwards else more
    return {
        "rows": rows,
        "total": total,
        "next": rows[-1]["id"] if rows and has_next else None,
        "prev": rows[0]["id"] if rows and has_prev else None,
    }


def _profile(text: str | None) -> dict[str, str]:
    import json

    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def _query_from(ctx: Ctx) -> LeadQuery:
    def num(name: str) -> int | None:
        v = ctx.q(name)
        return int(v) if v.isdigit() else None

    status = ctx.q("status")
    since = ctx.q("since")
    if since:
        try:
            time.strptime(since, "%Y-%m-%d")
        except ValueError as exc:
            raise BadRequest("the date must be YYYY-MM-DD") from exc
    return LeadQuery(
        after=num("after"),
        before=num("before"),
        status=status if status in STATUSES else None,
        since=since or None,
    )


async def leads_page(ctx: Ctx) -> Response:
    """GET lists (filters in the query string); POST searches by email (a lead's address never
    travels in a URL, where proxies and browser history would keep it)."""
    email = ctx.form.get("email", "").strip()
    found: dict[str, Any] | None = None
    searched = False
    query = LeadQuery()
    page: dict[str, Any] = {"rows": [], "total": None, "next": None, "prev": None}
    try:
        query = _query_from(ctx)
        if email:
            searched = True
            try:
                found = await ctx.db(leads.find_by_email, ctx.key, ctx.workspace_id, email)
            except NotFound:
                found = None
        else:
            page = await ctx.db(page_of_leads, ctx.key, ctx.workspace_id, query)
    except BadRequest as exc:
        ctx.error, ctx.status = exc.message, exc.status
    values = dict(
        page=page,
        query=query,
        email=email,
        found=found,
        searched=searched,
        statuses=STATUSES,
        filters={k: v for k, v in (("status", query.status), ("since", query.since)) if v},
    )
    if ctx.request.headers.get("hx-request") and ctx.request.headers.get("hx-target") == "leads":
        return ctx.partial("_leads_table.html", **values)
    return ctx.render("leads.html", "leads", **values)


# -- import ---------------------------------------------------------------------------------
@dataclass
class ImportJob:
    data: bytes
    filename: str
    workspace_id: int
    actor: str
    created: float = field(default_factory=time.monotonic)
    estimate: int = 0
    processed: int = 0
    started: bool = False
    done: bool = False
    result: dict[str, Any] | None = None
    error: str | None = None


class ImportJobs:
    """Uploaded files awaiting or running their import, in memory, a few at a time."""

    def __init__(self) -> None:
        self._jobs: dict[str, ImportJob] = {}
        self._lock = threading.Lock()

    def add(self, job: ImportJob) -> str:
        token = secrets.token_urlsafe(16)
        with self._lock:
            now = time.monotonic()
            for k in [k for k, j in self._jobs.items() if now - j.created > JOB_TTL_S]:
                del self._jobs[k]
            if len(self._jobs) >= MAX_JOBS:
                idle = [k for k, j in self._jobs.items() if not j.started or j.done]
                if not idle:
                    raise BadRequest("several imports are running: wait for one to finish")
                del self._jobs[idle[0]]
            self._jobs[token] = job
        return token

    def get(self, token: str, actor: str) -> ImportJob:
        with self._lock:
            job = self._jobs.get(token)
        if job is None or job.actor != actor:
            raise NotFound("that import is no longer available: upload the file again")
        return job


def jobs_of(ctx: Ctx) -> ImportJobs:
    state = ctx.request.app.state
    jobs = getattr(state, "ui_imports", None)
    if jobs is None:
        jobs = state.ui_imports = ImportJobs()
    assert isinstance(jobs, ImportJobs)
    return jobs


def _bare_header(data: bytes) -> list[str]:
    sample = data[:SAMPLE_BYTES]
    text = sample.decode(detect_encoding(sample, len(data) <= SAMPLE_BYTES), "replace")
    first = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    delimiter = max((",", ";", "\t", "|"), key=first.count)
    return next(csv.reader([first], delimiter=delimiter), [])


def preview(data: bytes, mapping: dict[str, str] | None = None) -> dict[str, Any]:
    """What the file looks like to the importer: header, mapping, the first rows."""
    try:
        reader = LeadCsvReader(io.BytesIO(data), mapping)
    except CsvFormatError as exc:
        header = _bare_header(data)
        return {"problem": exc.message, "header": header, "column_map": {}, "sample": []}
    sample: list[dict[str, str]] = []
    errors = 0
    try:
        for item in reader.rows():
            if isinstance(item, LeadRow):
                sample.append({"email": item.email, **item.fields})
            else:
                errors += 1
            if len(sample) + errors >= 5:
                break
    except CsvFormatError as exc:
        return {"problem": exc.message, "header": reader.header, "column_map": {}, "sample": []}
    return {
        "problem": None,
        "header": reader.header,
        "column_map": reader.column_map,
        "sample": sample,
        "encoding": reader.encoding,
        "delimiter": {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}.get(
            reader.delimiter, reader.delimiter
        ),
    }


async def import_page(ctx: Ctx) -> Response:
    return ctx.render("import.html", "leads", stage="upload", token=None, pv=None, fields=())


async def import_upload(ctx: Ctx) -> Response:
    upload = ctx.files.get("file")
    if upload is None:
        raise BadRequest("choose a CSV file to upload")
    data = await upload.read()
    if not data.strip():
        raise BadRequest("the file is empty")
    job = ImportJob(
        data,
        upload.filename or "leads.csv",
        ctx.workspace_id,
        ctx.actor,
        estimate=data.count(b"\n"),
    )
    token = jobs_of(ctx).add(job)
    pv = await run_in_threadpool(preview, data)
    return ctx.render(
        "import.html",
        "leads",
        stage="preview",
        token=token,
        pv=pv,
        fields=CANONICAL_FIELDS,
        custom=CUSTOM_PREFIX,
        filename=job.filename,
    )


def _mapping_from(form: dict[str, str], header: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for i, name in enumerate(header):
        chosen = form.get(f"map-{i}", "")
        if chosen in CANONICAL_FIELDS:
            mapping[name] = chosen
        elif chosen == "custom":
            mapping[name] = CUSTOM_PREFIX + name
    return mapping


def _run_import(c: Any, key: DataKey, job: ImportJob, mapping: dict[str, str]) -> None:
    def progress(n: int) -> None:
        job.processed = n

    try:
        with c.pool.connection(timeout=10) as conn:
            try:
                reader = LeadCsvReader(io.BytesIO(job.data), mapping or None)
                result = leads.import_rows(
                    conn, key, job.workspace_id, reader.rows(), progress=progress
                )
            except CsvFormatError as exc:
                audit.record(
                    conn, job.actor, "leads.import_failed", {"workspace_id": job.workspace_id}
                )
                job.error = exc.message
                return
            audit.record(
                conn,
                job.actor,
                "leads.imported",
                {
                    "workspace_id": job.workspace_id,
                    "imported": result.imported,
                    "duplicates": result.duplicates,
                    "errors": result.error_count,
                },
            )
            job.result = result.as_json()
    except Exception as exc:  # reported on the progress page; the text may quote input
        job.error = f"the import failed ({type(exc).__name__}); nothing was imported"
    finally:
        job.data = b""
        job.done = True


async def import_start(ctx: Ctx) -> Response:
    token = ctx.request.path_params["token"]
    job = jobs_of(ctx).get(token, ctx.actor)
    if job.started:
        return see_other(f"/app/leads/import/{token}")
    header = (await run_in_threadpool(preview, job.data))["header"]
    mapping = _mapping_from(ctx.form, header)
    if "email" not in mapping.values():
        pv = await run_in_threadpool(preview, job.data, mapping or None)
        if pv["problem"]:
            raise BadRequest(pv["problem"])
    job.started = True
    thread = threading.Thread(
        target=_run_import, args=(ctx.c, ctx.key, job, mapping), name="ui-import", daemon=True
    )
    thread.start()
    return see_other(f"/app/leads/import/{token}")


async def import_progress(ctx: Ctx) -> Response:
    token = ctx.request.path_params["token"]
    job = jobs_of(ctx).get(token, ctx.actor)
    values = dict(job=job, token=token, percent=_percent(job))
    if ctx.request.headers.get("hx-request"):
        return ctx.partial("_import_progress.html", **values)
    return ctx.render("import_progress.html", "leads", **values)


def _percent(job: ImportJob) -> int:
    if job.done:
        return 100
    if not job.estimate:
        return 0
    return min(99, int(100 * job.processed / job.estimate))
