"""Every provider call is a stage run; every stage run has a price; every workspace a budget.

`run_stage()` executes one stage for one lead: budget check, provider call (retries inside the
provider), validation, and one retry with a correction when the answer is malformed. Each call
writes exactly one `stage_runs` row through the core's API (prompt and response encrypted under
the period key; token counts, model and timing in the clear) plus one `ai_run_meta` row (job,
attempt, provider, template version, outcome, cost), in one transaction. A failed call writes
its run with status `failed` and the error's safe message and nothing else; a call refused by
the budget writes nothing. The response stored is the generated text only.

No database connection is held while a provider call is in flight.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import dict_row

from paitho_tenant import stage_runs
from paitho_tenant.ai.errors import AIError, BudgetExceeded, InvalidOutput
from paitho_tenant.ai.providers import Completion, Prompt, Provider
from paitho_tenant.ai.stages import with_correction
from paitho_tenant.crypto import DataKey
from paitho_tenant.db import workspace_tx
from paitho_tenant.errors import BadRequest

log = logging.getLogger(__name__)
T = TypeVar("T")

Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]

# USD per million tokens (input, output): defaults a workspace overrides in ai_prices.
DEFAULT_PRICES: dict[tuple[str, str], tuple[Decimal, Decimal]] = {
    ("openai", "gpt-4.1"): (Decimal("2.00"), Decimal("8.00")),
    ("openai", "gpt-4.1-mini"): (Decimal("0.40"), Decimal("1.60")),
    ("openai", "gpt-4o-mini"): (Decimal("0.15"), Decimal("0.60")),
    ("anthropic", "claude-sonnet-4-5"): (Decimal("3.00"), Decimal("15.00")),
    ("anthropic", "claude-haiku-4-5"): (Decimal("1.00"), Decimal("5.00")),
    ("google", "gemini-2.5-flash"): (Decimal("0.30"), Decimal("2.50")),
    ("google", "gemini-2.5-pro"): (Decimal("1.25"), Decimal("10.00")),
}
MILLION = Decimal(1_000_000)


# -- prices -------------------------------------------------------------------------------------
def set_price(
    conn: psycopg.Connection[Any],
    workspace_id: int,
    provider: str,
    model: str,
    input_usd_per_mtok: Decimal,
    output_usd_per_mtok: Decimal,
) -> None:
    if input_usd_per_mtok < 0 or output_usd_per_mtok < 0:
        raise BadRequest("prices must not be negative")
    if not provider.strip() or not model.strip():
        raise BadRequest("a price needs a provider and a model")
    with workspace_tx(conn, workspace_id):
        conn.execute(
            "INSERT INTO ai_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (workspace_id, provider, model) DO UPDATE"
            " SET input_usd_per_mtok = excluded.input_usd_per_mtok,"
            " output_usd_per_mtok = excluded.output_usd_per_mtok, updated_at = now()",
            (provider.strip(), model.strip(), input_usd_per_mtok, output_usd_per_mtok),
        )


def price_table(conn: psycopg.Connection[Any], workspace_id: int) -> list[dict[str, Any]]:
    """The defaults with the workspace's own prices over them."""
    table = {
        k: {"provider": k[0], "model": k[1], "input": v[0], "output": v[1], "source": "default"}
        for k, v in DEFAULT_PRICES.items()
    }
    with workspace_tx(conn, workspace_id):
        for provider, model, price_in, price_out in conn.execute(
            "SELECT provider, model, input_usd_per_mtok, output_usd_per_mtok FROM ai_prices"
        ).fetchall():
            table[(provider, model)] = {
                "provider": provider,
                "model": model,
                "input": price_in,
                "output": price_out,
                "source": "workspace",
            }
    return [table[k] for k in sorted(table)]


def price_of(
    conn: psycopg.Connection[Any], provider: str, model: str
) -> tuple[Decimal, Decimal] | None:
    """Inside a workspace transaction: the price per million tokens, or None when unknown."""
    row = conn.execute(
        "SELECT input_usd_per_mtok, output_usd_per_mtok FROM ai_prices"
        " WHERE provider = %s AND model = %s",
        (provider, model),
    ).fetchone()
    if row is not None:
        return Decimal(row[0]), Decimal(row[1])
    return DEFAULT_PRICES.get((provider, model))


def cost(price: tuple[Decimal, Decimal] | None, completion: Completion) -> Decimal | None:
    if price is None:
        return None
    return (price[0] * completion.input_tokens + price[1] * completion.output_tokens) / MILLION


# -- budget -------------------------------------------------------------------------------------
def set_budget(conn: psycopg.Connection[Any], workspace_id: int, monthly_usd: Decimal) -> None:
    if monthly_usd < 0:
        raise BadRequest("the monthly budget must not be negative")
    with workspace_tx(conn, workspace_id):
        conn.execute(
            "INSERT INTO ai_budgets (monthly_usd) VALUES (%s) ON CONFLICT (workspace_id)"
            " DO UPDATE SET monthly_usd = excluded.monthly_usd, updated_at = now()",
            (monthly_usd,),
        )


def _month(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if now.month == 12:
        return start, start.replace(year=now.year + 1, month=1)
    return start, start.replace(month=now.month + 1)


def budget_status(
    conn: psycopg.Connection[Any], workspace_id: int, now: datetime
) -> dict[str, Any]:
    with workspace_tx(conn, workspace_id):
        return _budget_in_scope(conn, now)


def _budget_in_scope(conn: psycopg.Connection[Any], now: datetime) -> dict[str, Any]:
    start, end = _month(now)
    row = conn.execute(
        "SELECT (SELECT monthly_usd FROM ai_budgets), (SELECT coalesce(sum(cost_usd), 0)"
        " FROM ai_run_meta WHERE started_at >= %s AND started_at < %s)",
        (start, end),
    ).fetchone()
    assert row is not None
    return {
        "monthly_usd": None if row[0] is None else Decimal(row[0]),
        "spent_usd": Decimal(row[1]),
        "month_start": start.date(),
        "resets_at": end.date(),
    }


def _refuse_if_spent(status: dict[str, Any]) -> None:
    limit = status["monthly_usd"]
    if limit is not None and status["spent_usd"] >= limit:
        raise BudgetExceeded(
            f"this workspace has spent ${status['spent_usd']:.2f} of its ${limit:.2f} monthly "
            f"AI budget: no new AI calls until {status['resets_at'].isoformat()}, unless an "
            "owner raises the budget"
        )


def preflight(
    conn: psycopg.Connection[Any], workspace_id: int, now: datetime, provider: str, model: str
) -> tuple[Decimal, Decimal] | None:
    """Before a call, in one transaction: refuse if the budget is spent; return the price."""
    with workspace_tx(conn, workspace_id):
        return preflight_in_scope(conn, now, provider, model)


def preflight_in_scope(
    conn: psycopg.Connection[Any], now: datetime, provider: str, model: str
) -> tuple[Decimal, Decimal] | None:
    """`preflight` inside the caller's workspace-scoped transaction."""
    _refuse_if_spent(_budget_in_scope(conn, now))
    return price_of(conn, provider, model)


# -- recording ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunRecord:
    stage: str
    provider: str
    key_id: int | None
    model: str
    prompt_version: str
    job: uuid.UUID
    attempt: int
    prompt: str
    response: str
    input_tokens: int
    output_tokens: int
    duration_ms: int
    started_at: datetime
    status: str  # ok | invalid_output | failed
    lead_id: int | None = None
    error_code: str | None = None
    error: str | None = None
    http_attempts: int = 1


_UNSET: Any = object()


def record(
    conn: psycopg.Connection[Any],
    key: DataKey,
    workspace_id: int,
    run: RunRecord,
    price: tuple[Decimal, Decimal] | None = _UNSET,
) -> int:
    """One stage_runs row and its ai_run_meta row, in one transaction; returns the run id.
    `price` is the model's price when the caller already looked it up. Pipelined: the
    statements travel together and the server is waited for twice, not once per statement."""
    with conn.pipeline(), workspace_tx(conn, workspace_id):
        if price is _UNSET:
            price = price_of(conn, run.provider, run.model)
        spent = cost(price, Completion("", run.input_tokens, run.output_tokens))
        run_id = stage_runs.record(
            conn,
            key,
            workspace_id,
            stage=run.stage,
            model=run.model,
            prompt=run.prompt,
            response=run.response,
            input_tokens=run.input_tokens,
            output_tokens=run.output_tokens,
            duration_ms=run.duration_ms,
            started_at=run.started_at,
            lead_id=run.lead_id,
        )
        conn.execute(
            "INSERT INTO ai_run_meta (run_id, job, attempt, provider, key_id, prompt_version,"
            " status, error_code, error, http_attempts, cost_usd, started_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                run_id,
                run.job,
                run.attempt,
                run.provider,
                run.key_id,
                run.prompt_version,
                run.status,
                run.error_code,
                run.error,
                run.http_attempts,
                spent,
                run.started_at,
            ),
        )
    return run_id


def list_runs(
    conn: psycopg.Connection[Any], workspace_id: int, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """Metadata of recent runs (no prompt, no response)."""
    with workspace_tx(conn, workspace_id):
        cur = conn.cursor(row_factory=dict_row)
        return cur.execute(
            "SELECT sr.id, sr.lead_id, sr.stage, sr.model, sr.input_tokens, sr.output_tokens,"
            " sr.duration_ms, sr.started_at, m.provider, m.prompt_version, m.job, m.attempt,"
            " m.status, m.error_code, m.error, m.http_attempts, m.cost_usd"
            " FROM stage_runs sr JOIN ai_run_meta m ON m.run_id = sr.id"
            " ORDER BY sr.id DESC LIMIT %s OFFSET %s",
            (limit, offset),
        ).fetchall()


# -- one stage ----------------------------------------------------------------------------------
@dataclass
class StageContext:
    """What a stage call needs: where to write, the key, and the provider to call."""

    connect: Connect
    key: DataKey
    workspace_id: int
    provider: Provider
    provider_kind: str
    key_id: int | None
    model: str
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class StageResult(Generic[T]):
    value: T
    run_ids: list[int]
    job: uuid.UUID


def run_stage(
    ctx: StageContext,
    stage: str,
    prompt: Prompt,
    prompt_version: str,
    parse: Callable[[str], T],
    lead_id: int | None = None,
    preflighted: tuple[Decimal, Decimal] | None = _UNSET,
) -> StageResult[T]:
    """Call the provider (a second time with a correction if the answer is malformed).

    `preflighted` is the price returned by `preflight_in_scope` when the caller already
    checked the budget in its own transaction just before; the first call then skips it."""
    job = uuid.uuid4()
    run_ids: list[int] = []
    current = prompt
    for attempt in (1, 2):
        if attempt == 1 and preflighted is not _UNSET:
            price = preflighted
        else:
            with ctx.connect() as conn:
                price = preflight(conn, ctx.workspace_id, ctx.clock(), ctx.provider_kind, ctx.model)
        started_at = ctx.clock()
        t0 = time.perf_counter()
        base = RunRecord(
            stage=stage,
            provider=ctx.provider_kind,
            key_id=ctx.key_id,
            model=ctx.model,
            prompt_version=prompt_version,
            job=job,
            attempt=attempt,
            prompt=current.system + "\n\n" + current.user,
            response="",
            input_tokens=0,
            output_tokens=0,
            duration_ms=0,
            started_at=started_at,
            status="failed",
            lead_id=lead_id,
        )
        try:
            completion = ctx.provider.complete(ctx.model, current)
        except AIError as exc:
            elapsed = int((time.perf_counter() - t0) * 1000)
            with ctx.connect() as conn:
                run_ids.append(
                    record(
                        conn,
                        ctx.key,
                        ctx.workspace_id,
                        replace(
                            base,
                            duration_ms=elapsed,
                            error_code=exc.code,
                            error=exc.message,
                            http_attempts=ctx.provider.attempts,
                        ),
                        price,
                    )
                )
            log.warning("%s stage run failed: %s", stage, exc.code)
            raise
        elapsed = int((time.perf_counter() - t0) * 1000)
        done = replace(
            base,
            response=completion.text,
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            duration_ms=elapsed,
            status="ok",
            http_attempts=ctx.provider.attempts,
        )
        try:
            value = parse(completion.text)
        except InvalidOutput as exc:
            with ctx.connect() as conn:
                run_ids.append(
                    record(
                        conn,
                        ctx.key,
                        ctx.workspace_id,
                        replace(
                            done, status="invalid_output", error_code=exc.code, error=exc.message
                        ),
                        price,
                    )
                )
            if attempt == 2:
                raise InvalidOutput(
                    f"the model's answer was invalid twice ({exc.message}); nothing was saved"
                ) from None
            current = with_correction(prompt, exc.message)
            continue
        with ctx.connect() as conn:
            run_ids.append(record(conn, ctx.key, ctx.workspace_id, done, price))
        return StageResult(value, run_ids, job)
    raise AssertionError("unreachable")
