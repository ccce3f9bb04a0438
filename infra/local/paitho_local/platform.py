"""`paitho up`: the whole platform on one machine, in the foreground until interrupted.

Start order: local AWS endpoint → supervisor → edge (HAProxy, supervised) → control plane →
tenant template → every registered tenant brought back (sealed). Stop order is the reverse;
SIGINT and SIGTERM both stop every process the platform started.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib import factory
from chalicelib.cpwiring import start_local_control_plane
from chalicelib.errors import PaithoError
from chalicelib.launchers.local import LocalLauncher
from chalicelib.lifecycle import spec_of
from chalicelib.registry import Registry
from chalicelib.settings import Settings
from chalicelib.tenants import TenantService
from paitho_local import compose, edge
from paitho_local.awsendpoint import LocalAws
from paitho_local.controlplane import ControlPlaneServer, load_app_module
from paitho_local.supervisor import Supervisor, UnitSpec
from paitho_local.workflows import LocalWorkflows, nightly

log = logging.getLogger(__name__)


# The platform's own sockets ({home}/run/supervisor.sock, {home}/edge/admin.sock) must fit the
# 107-byte Unix socket limit; tenants' sockets are checked per tenant by the launcher.
MAX_HOME_LENGTH = 107 - len("/run/supervisor.sock")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    aws: LocalAws
    supervisor: Supervisor
    control: ControlPlaneServer
    registry: Registry
    tenants: TenantService
    extras: list[Callable[[], None]]


class Platform:
    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = say
        self.running: Running | None = None
        self._stopped = threading.Event()

    def start(self) -> Running:
        """Start everything; if any part fails, stop what already started, then re-raise."""
        self._undo: list[Callable[[], None]] = []
        try:
            return self._start()
        except BaseException:
            for undo in reversed(self._undo):
                with contextlib.suppress(Exception):
                    undo()
            raise

    def _start(self) -> Running:
        s = self.settings
        s.home.mkdir(parents=True, exist_ok=True)
        (s.home / "run").mkdir(exist_ok=True)
        info_path = compose.platform_file(s.home)
        if info_path.exists():
            stale = json.loads(info_path.read_text())
            if _alive(stale.get("pid")):
                raise PaithoError(
                    f"a platform is already running from {s.home} (pid {stale['pid']}); stop it "
                    "first or use another PAITHO_HOME"
                )

        if len(str(s.home)) > MAX_HOME_LENGTH:
            raise PaithoError(
                f"PAITHO_HOME {s.home} is {len(str(s.home))} characters long: the platform's Unix "
                "sockets under it would pass the 107-byte limit; use a PAITHO_HOME of at most "
                f"{MAX_HOME_LENGTH} characters (for example ~/.paitho or /srv/paitho)"
            )
        with socket.socket() as probe:
            try:
                probe.bind((s.edge_host, s.edge_port))
            except OSError as exc:
                raise PaithoError(
                    f"the edge cannot listen on {s.edge_host}:{s.edge_port}: {exc.strerror}; "
                    "stop what uses it (another `make up`?) or set PAITHO_EDGE_PORT"
                ) from exc
        aws = LocalAws(s.home, free_port(), s.aws_region)
        aws.start()
        self._undo.append(aws.stop)
        for key, value in compose.LOCAL_CREDENTIALS.items():
            os.environ.setdefault(key, value)
        os.environ["AWS_ENDPOINT_URL"] = aws.endpoint
        os.environ["MOTO_PORT"] = aws.endpoint.rsplit(":", 1)[1]  # moto's ASL interpreter
        os.environ.setdefault("AWS_DEFAULT_REGION", s.aws_region)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
        settings = compose.settings_for_cli(s.home)
        settings = dataclasses.replace(settings, edge_port=s.edge_port, edge_host=s.edge_host)
        self.settings = settings
        self.say(f"local AWS endpoint (moto) on {aws.endpoint}")

        registry = compose.registry(settings)
        registry.ensure_table()

        def on_event(unit: str, what: str, restarted: bool) -> None:
            slug, _, part = unit.partition("/")
            if slug == "edge":
                self.say(f"edge: {what}")
                return
            with contextlib.suppress(PaithoError):
                registry.record_event(slug, f"{part}: {what}", restarted=restarted)
            self.say(f"{slug}: {part} {what}")

        services: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
        supervisor = Supervisor(on_event, services)
        supervisor.serve(settings.supervisor_socket)
        self._undo.append(supervisor.shutdown)

        control_port = settings.control_port or free_port()
        files = edge.render_config(
            settings.home, (settings.edge_host, settings.edge_port), ("127.0.0.1", control_port)
        )
        edge.check_config(files)
        edge_unit = supervisor.start(
            UnitSpec(
                "edge/haproxy",
                edge.haproxy_argv(files),
                log=str(files.cfg_path.with_name("haproxy.log")),
            )
        )
        edge.wait_ready(files, timeout=15, proc=edge_unit.proc)

        extras: list[Callable[[], None]] = []

        def undo_extras() -> None:
            for fn in extras:
                fn()

        self._undo.append(undo_extras)
        tenants = compose.tenant_service(settings, registry)
        app_module = load_app_module()
        cp_handle = start_local_control_plane(
            settings, tenants, factory.aws_client(settings, "dynamodb"), app_module.use
        )
        extras.append(cp_handle.stop)
        services["licence"] = lambda req: licence_for(cp_handle.control_plane(), req)
        self.say(f"mail sink (verification, reset, notices) saves to {settings.mail_sink_dir}")
        control = ControlPlaneServer(
            app_module.app, "127.0.0.1", control_port, settings.domain, registry
        )
        control.start()
        self._undo.append(control.stop)
        billing_stop = threading.Event()

        def billing_clock() -> None:
            while not billing_stop.wait(60):
                try:
                    cp_handle.tick()
                except Exception:  # the clock keeps ticking; the failure is logged
                    log.exception("billing tick failed")

        threading.Thread(target=billing_clock, name="billing", daemon=True).start()

        def renew_licences() -> None:
            """Licences last weeks; refresh every running tenant's token twice a day."""
            while not billing_stop.wait(12 * 3600):
                renewer = compose.launcher(settings)
                for record in registry.list():
                    if record.state == "running":
                        try:
                            renewer.install_licence(spec_of(record))
                        except Exception:
                            log.exception("renewing the licence of %s failed", record.slug)

        threading.Thread(target=renew_licences, name="licences", daemon=True).start()
        extras.append(billing_stop.set)
        self.running = Running(aws, supervisor, control, registry, tenants, extras)
        info_path.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "aws_endpoint_url": aws.endpoint,
                    "edge": f"http://{settings.edge_host}:{settings.edge_port}",
                    "control_port": control_port,
                }
            )
        )

        launcher = compose.launcher(settings)
        assert isinstance(launcher, LocalLauncher)
        self.say("preparing the tenant template cluster (first run only)…")
        launcher.prepare_template()
        launcher.refill_spares()
        refill_stop = threading.Event()

        def refill() -> None:
            while not refill_stop.wait(1.0):
                try:
                    launcher.refill_spares()
                except Exception:  # keep the pool alive; provisioning falls back to cloning
                    log.exception("refilling spare tenant clusters failed")

        threading.Thread(target=refill, name="spares", daemon=True).start()
        extras.append(refill_stop.set)
        local_workflows = LocalWorkflows(settings, registry)
        local_workflows.install()
        nightly_stop = threading.Event()
        threading.Thread(
            target=nightly,
            args=(
                local_workflows,
                int(settings.extra.get("PAITHO_NIGHTLY_HOUR", "2")),
                nightly_stop,
                self.say,
            ),
            name="nightly",
            daemon=True,
        ).start()
        extras.append(nightly_stop.set)
        for record in tenants.reconcile_all():
            note = f" ({record.last_error})" if record.state == "failed" else ""
            self.say(f"tenant {record.slug}: {record.state}{note}")
        return self.running

    def stop(self) -> None:
        running, self.running = self.running, None
        if running is None:
            return
        self.say("stopping…")
        for fn in running.extras:
            with contextlib.suppress(Exception):
                fn()
        running.control.stop()
        running.supervisor.shutdown()
        for record in running.registry.list():
            if record.state in ("running", "starting", "provisioning", "upgrading"):
                with contextlib.suppress(PaithoError):
                    running.registry.update(record.slug, state="stopped")
        running.aws.stop()
        compose.platform_file(self.settings.home).unlink(missing_ok=True)
        self.say("stopped.")

    def run_forever(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            self._stopped.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        try:
            self.start()
            s = self.settings
            self.say(f"Paitho is up: http://localhost:{s.edge_port}  (Ctrl-C stops everything)")
            self.say(f"tenants answer at http://{{tenant}}.{s.domain}:{s.edge_port}")
            self._stopped.wait()
        finally:
            self.stop()


def licence_for(cp: Any, request: dict[str, Any]) -> dict[str, Any]:
    """The "licence" service the launcher calls before starting a tenant app: a fresh token
    (none when the tenant's subscription is canceled or suspended) and the public keys."""
    if cp.licences is None:
        return {"keys": {}}
    slug, plan = str(request.get("slug", "")), str(request.get("plan", "starter"))
    keys = {
        kid: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        for kid, raw in cp.licences.public_keys().items()
    }
    sub = cp.billing.find(slug)
    current = sub is None or (sub.deleted_at is None and sub.state not in ("canceled", "suspended"))
    token = cp.licences.issue(slug, sub.plan if sub is not None else plan) if current else None
    return {"keys": keys, "token": token}


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def settings_home(settings: Settings) -> Path:
    return settings.home
