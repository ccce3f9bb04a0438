"""`paitho`: the operator's command line. A thin shell over chalicelib's functions."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from chalicelib.errors import PaithoError
from chalicelib.registry import TenantRecord
from chalicelib.tenants import TenantService
from paitho_local import compose

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Operate a Paitho platform.")
tenants_app = typer.Typer(no_args_is_help=True, help="Create and manage tenants.")
app.add_typer(tenants_app, name="tenants")
mail_app = typer.Typer(no_args_is_help=True, help="Read the local mail sink (make up).")
app.add_typer(mail_app, name="mail")
billing_app = typer.Typer(no_args_is_help=True, help="Billing operations.")
app.add_typer(billing_app, name="billing")
workflows_app = typer.Typer(no_args_is_help=True, help="The nightly workflows (backup, retention).")
app.add_typer(workflows_app, name="workflows")
console = Console()
err = Console(stderr=True)


def _fail(exc: PaithoError) -> None:
    err.print(f"[red]error:[/red] {exc.message}")
    raise typer.Exit(1)


def _service() -> TenantService:
    return compose.tenant_service(compose.settings_for_cli())


def _show_record(record: TenantRecord, as_json: bool = False) -> None:
    data = {k: v for k, v in dataclasses.asdict(record).items() if k != "extra"}
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    table = Table(show_header=False, box=None)
    for key in (
        "slug",
        "state",
        "desired_state",
        "plan",
        "region",
        "version",
        "launcher",
        "origin_host",
        "origin_port",
        "db_port",
        "data_location",
        "task_arn",
        "restarts",
        "last_event",
        "last_event_at",
        "last_error",
        "last_error_at",
        "created_at",
        "updated_at",
        "deleted_at",
    ):
        value = data.get(key)
        if value is not None and value != "":
            label = "data directory" if key == "data_location" else key.replace("_", " ")
            style = "red" if key == "last_error" else ""
            table.add_row(
                f"[bold]{label}[/bold]", f"[{style}]{value}[/{style}]" if style else str(value)
            )
    console.print(table)


def _finish(record: TenantRecord) -> None:
    _show_record(record)
    if record.state == "failed":
        raise typer.Exit(1)


@app.command()
def up() -> None:
    """Run the whole platform in the foreground (what `make up` runs); Ctrl-C stops it."""
    from chalicelib.settings import from_env
    from paitho_local.platform import Platform

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        Platform(from_env(), say=lambda m: console.print(m, highlight=False)).run_forever()
    except PaithoError as exc:
        _fail(exc)


@tenants_app.command("create")
def create(
    slug: str,
    plan: Annotated[str, typer.Option(help="starter, pro, agency or enterprise")] = "starter",
    region: Annotated[str, typer.Option(help="eu or us")] = "eu",
) -> None:
    """Provision a tenant and start it."""
    try:
        with console.status(f"provisioning {slug}…"):
            record = _service().create(slug, plan=plan, region=region)
    except PaithoError as exc:
        _fail(exc)
    _finish(record)


@tenants_app.command("list")
def list_(all_: Annotated[bool, typer.Option("--all", help="include deleted")] = False) -> None:
    """List tenants."""
    try:
        records = _service().list(include_deleted=all_)
    except PaithoError as exc:
        _fail(exc)
    table = Table("slug", "state", "plan", "region", "version", "origin", "last error")
    for r in records:
        origin = f"{r.origin_host}:{r.origin_port}" if r.origin_port else ""
        table.add_row(r.slug, r.state, r.plan, r.region, r.version, origin, r.last_error or "")
    console.print(table)


@tenants_app.command("show")
def show(slug: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show one tenant: state, origin, data directory, last error."""
    try:
        record = _service().show(slug)
    except PaithoError as exc:
        _fail(exc)
    _show_record(record, as_json)


def _lifecycle(verb: str, slug: str) -> None:
    try:
        with console.status(f"{verb} {slug}…"):
            record = getattr(_service(), verb)(slug)
    except PaithoError as exc:
        _fail(exc)
    _finish(record)


@tenants_app.command("suspend")
def suspend(slug: str) -> None:
    """Stop a tenant and route its host to the 'suspended' page; data is kept."""
    _lifecycle("suspend", slug)


@tenants_app.command("resume")
def resume(slug: str) -> None:
    """Start a suspended tenant again (it comes back sealed)."""
    _lifecycle("resume", slug)


@tenants_app.command("upgrade")
def upgrade(slug: str) -> None:
    """Restart a tenant on the platform's current tenant version; data is kept."""
    _lifecycle("upgrade", slug)


@tenants_app.command("delete")
def delete(
    slug: str, yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False
) -> None:
    """Stop a tenant, destroy its data and routes; the registry keeps a tombstone."""
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Destroy {slug} and all its data?", abort=True)
    _lifecycle("delete", slug)


@mail_app.command("list")
def mail_list() -> None:
    """List the messages the control plane sent to the local sink, oldest first."""
    from datetime import UTC, datetime

    from chalicelib.mailsink import list_mail

    table = Table("received", "to", "subject")
    for item in list_mail(compose.settings_for_cli().home):
        when = datetime.fromtimestamp(item.received_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(when, item.to, item.subject)
    console.print(table)


@mail_app.command("last")
def mail_last(to: Annotated[str, typer.Option("--to", help="recipient address")]) -> None:
    """Print the newest message sent to an address (headers and text)."""
    from chalicelib.mailsink import last_mail, message_text

    msg = last_mail(compose.settings_for_cli().home, to)
    if msg is None:
        err.print(f"no mail to {to} in the local sink")
        raise typer.Exit(1)
    for header in ("Date", "From", "To", "Subject"):
        print(f"{header}: {msg[header]}")
    print()
    print(message_text(msg))


@billing_app.command("mark-paid")
def mark_paid(slug: str) -> None:
    """Record a payment with the manual provider (self-hosted and local use)."""
    from chalicelib import factory
    from chalicelib.cpwiring import mark_paid as record_payment

    settings = compose.settings_for_cli()
    try:
        sub = record_payment(settings, _service(), factory.aws_client(settings, "dynamodb"), slug)
    except PaithoError as exc:
        _fail(exc)
    console.print(f"{slug}: subscription {sub.state}")


@workflows_app.command("run")
def workflows_run(job: Annotated[str, typer.Argument(help="backup or retention")]) -> None:
    """Run a workflow now, as the nightly schedule would, and show each tenant's outcome."""
    from paitho_local.workflows import LocalWorkflows

    if job not in ("backup", "retention"):
        err.print("error: the workflow is 'backup' or 'retention'")
        raise typer.Exit(2)
    settings = compose.settings_for_cli()
    workflows = LocalWorkflows(settings, compose.registry(settings))
    try:
        with console.status(f"running {job} over every tenant…"):
            desc = workflows.run(job)
    except PaithoError as exc:
        _fail(exc)
    table = Table("tenant", "job", "outcome", "size", "sha256", "reason")
    for record in compose.registry(settings).list():
        for entry in workflows.ledger.list(record.slug, limit=1):
            table.add_row(
                entry.tenant,
                entry.job,
                entry.outcome,
                str(entry.size or ""),
                (entry.sha256 or "")[:16],
                entry.reason or entry.error or "",
            )
    console.print(table)
    console.print(f"execution {desc['status']}")
    if desc["status"] != "SUCCEEDED":
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
