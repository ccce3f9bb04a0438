"""Process supervision for the local platform: the local stand-in for ECS.

A unit is one long-running process (a tenant's postgres or app, HAProxy, ...). Each unit has a
thread that starts it, waits for it, and restarts it with exponential backoff if it dies while
still wanted; every unexpected exit is reported to `on_event` (the platform records it on the
tenant in the registry). The launcher talks to the supervisor over a Unix socket (mode 0600)
with one JSON object per line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EventSink = Callable[[str, str, bool], None]  # (unit name, what happened, restarted)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class UnitSpec:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    cwd: str | None = None
    log: str | None = None
    uid: int | None = None
    gid: int | None = None
    stop_signal: str = "SIGTERM"
    meta: dict[str, Any] = field(default_factory=dict)


class Unit:
    def __init__(self, spec: UnitSpec, on_event: EventSink) -> None:
        self.spec = spec
        self._on_event = on_event
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"unit:{spec.name}", daemon=True)

    def _report(self, what: str, restarted: bool) -> None:
        """Tell the platform; a failing sink must never stop supervision."""
        try:
            self._on_event(self.spec.name, what, restarted)
        except Exception:
            log.exception("reporting an event of %s failed", self.spec.name)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self._stopping.is_set()

    def _spawn(self) -> subprocess.Popen[bytes]:
        out: Any = subprocess.DEVNULL
        if self.spec.log:
            Path(self.spec.log).parent.mkdir(parents=True, exist_ok=True)
            out = open(self.spec.log, "ab")  # noqa: SIM115 - handed to the child
        kwargs: dict[str, Any] = {}
        if self.spec.uid is not None and os.geteuid() == 0:
            kwargs = {"user": self.spec.uid, "group": self.spec.gid, "extra_groups": []}
        try:
            return subprocess.Popen(
                self.spec.argv,
                env=self.spec.env,
                cwd=self.spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()

    def _loop(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            began = time.monotonic()
            try:
                self.proc = self._spawn()
            except OSError as exc:
                self.last_exit = f"could not start: {exc.strerror or exc}"
                self._started.set()
                self._report(self.last_exit, False)
                if self._stopping.wait(backoff):
                    break
                backoff = min(backoff * 2, 10)
                continue
            self._started.set()
            code = self.proc.wait()
            if self._stopping.is_set():
                break
            self.last_exit = describe_exit(code)
            if time.monotonic() - began > 30:
                backoff = 0.2
            self.restarts += 1
            self._report(f"{self.last_exit}; restarted after {backoff:.1f}s", True)
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, 10)

    def stop(self, timeout: float = 30) -> None:
        self._stopping.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.Signals[self.spec.stop_signal])
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "pid": self.proc.pid if self.running and self.proc else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "meta": self.spec.meta,
        }


class Supervisor:
    def __init__(
        self,
        on_event: EventSink | None = None,
        services: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
    ) -> None:
        """`services`: extra operations the platform answers on the control socket (e.g.
        "licence": issue a tenant's licence token), by name."""
        self._services = services if services is not None else {}  # the platform adds to it
        self._units: dict[str, Unit] = {}
        self._lock = threading.Lock()
        self._on_event = on_event or (lambda name, what, restarted: None)
        self._server: socketserver.UnixStreamServer | None = None

    # -- units ----------------------------------------------------------------------------------
    def start(self, spec: UnitSpec) -> Unit:
        with self._lock:
            current = self._units.get(spec.name)
            if current is not None and current.running and current.spec.argv == spec.argv:
                current.spec.meta = spec.meta
                return current
        if current is not None:
            current.stop()
        unit = Unit(spec, self._on_event)
        with self._lock:
            self._units[spec.name] = unit
        unit.start()
        return unit

    def stop(self, name: str, timeout: float = 30) -> None:
        with self._lock:
            unit = self._units.pop(name, None)
        if unit is not None:
            unit.stop(timeout)

    def status(self, name: str) -> dict[str, Any]:
        with self._lock:
            unit = self._units.get(name)
        if unit is None:
            return {"running": False, "pid": None, "restarts": 0, "last_exit": None, "meta": {}}
        return unit.status()

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._units)

    def stop_all(self, order: Callable[[str], int] | None = None) -> None:
        """Stop every unit; apps before databases (order: lower first)."""
        for name in sorted(self.names(), key=order or (lambda n: 0)):
            self.stop(name)

    # -- control socket -------------------------------------------------------------------------
    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        name = str(request.get("name", ""))
        if op == "start":
            spec = UnitSpec(
                name=name,
                argv=[str(a) for a in request["argv"]],
                env=request.get("env"),
                cwd=request.get("cwd"),
                log=request.get("log"),
                uid=request.get("uid"),
                gid=request.get("gid"),
                stop_signal=request.get("stop_signal", "SIGTERM"),
                meta=request.get("meta") or {},
            )
            unit = self.start(spec)
            return {"ok": True, **unit.status()}
        if op == "stop":
            self.stop(name, float(request.get("timeout", 30)))
            return {"ok": True}
        if op == "status":
            return {"ok": True, **self.status(name)}
        if op == "list":
            return {"ok": True, "units": {n: self.status(n) for n in self.names()}}
        service = self._services.get(str(op))
        if service is not None:
            return {"ok": True, **service(request)}
        return {"ok": False, "error": f"unknown operation {op!r}"}

    def serve(self, socket_path: Path) -> None:
        """Serve the control socket in a background thread."""
        supervisor = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline()
                try:
                    reply = supervisor.handle(json.loads(line))
                except Exception as exc:  # outermost handler for one request
                    log.exception("supervisor request failed")
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                self.wfile.write(json.dumps(reply).encode() + b"\n")

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        socket_path.parent.mkdir(parents=True, exist_ok=True)
        socket_path.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            self._server = Server(str(socket_path), Handler)
        finally:
            os.umask(old)
        threading.Thread(target=self._server.serve_forever, name="supervisor", daemon=True).start()

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with contextlib.suppress(OSError):
                os.unlink(self._server.server_address)  # type: ignore[arg-type]
        self.stop_all(order=lambda n: 0 if n.endswith("/app") else 1)
