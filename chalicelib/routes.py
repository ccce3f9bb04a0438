"""The edge's route table: which host goes to which tenant port.

`RouteTable` is the interface the control plane codes against. `HAProxyRoutes` drives a running
HAProxy through its runtime API (a unix socket) so a change is live at once, without a reload,
and also persists the whole table to the map file HAProxy loads at start, so a restarted edge
comes back with the same routes. `MemoryRoutes` keeps the table in a dict for tests of other code.

Order of a change: the map file first (the desired state, written atomically and under a file
lock), then the running HAProxy. If HAProxy cannot be reached the change is still on disk, the
caller gets `PlatformUnavailable`, and the next start of the edge picks it up.

Plain standard library: this module runs inside the control plane.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from chalicelib.errors import InvalidInput, PlatformUnavailable

log = logging.getLogger(__name__)


def control_hosts(domain: str = "localhost") -> frozenset[str]:
    """Hosts the control plane itself answers; a tenant route for one would never be used."""
    return frozenset({domain.lower(), f"marketplace.{domain.lower()}"})


CONTROL_HOSTS = control_hosts()

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_MAP_HEADER = "# Paitho edge routes: host port. Written by chalicelib.routes; edit with care.\n"


class RouteTable(Protocol):
    """Host (no port, any case) to the loopback port of the tenant app that serves it."""

    def set_route(self, host: str, port: int) -> None: ...

    def remove_route(self, host: str) -> None: ...

    def routes(self) -> dict[str, int]: ...


def normalize_host(host: str, reserved: Iterable[str] = CONTROL_HOSTS) -> str:
    """The canonical (lower-case) form of a tenant host name, or InvalidInput saying why not."""
    if not isinstance(host, str):
        raise InvalidInput("a route's host must be a string such as 'acme.localhost'")
    canonical = host.strip().lower()
    if len(canonical) > 253 or not _HOST_RE.fullmatch(canonical):
        raise InvalidInput(
            f"{host!r} is not a valid host name for a route: use dot-separated labels of "
            "letters, digits and hyphens, without a port or scheme (e.g. 'acme.localhost')"
        )
    if canonical in reserved:
        raise InvalidInput(f"{canonical!r} is served by the control plane and cannot be routed")
    return canonical


def check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidInput(f"route port must be an integer from 1 to 65535, got {port!r}")
    return port


def parse_map(text: str) -> dict[str, int]:
    """Parse an HAProxy map file (`host port` per line, `#` comments) into a dict."""
    table: dict[str, int] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            table.setdefault(parts[0], int(parts[1]))
        else:
            log.warning("ignoring a malformed line in the edge map file")
    return table


def render_map(table: dict[str, int]) -> str:
    return _MAP_HEADER + "".join(f"{host} {port}\n" for host, port in sorted(table.items()))


def write_map_file(path: Path, table: dict[str, int]) -> None:
    """Replace the map file atomically: a reader sees the old table or the new, never half."""
    fd, tmp = tempfile.mkstemp(prefix=".routes-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(render_map(table))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class MemoryRoutes:
    """An in-memory RouteTable with the same validation, for tests of code that uses routes."""

    def __init__(self, reserved: Iterable[str] = CONTROL_HOSTS) -> None:
        self._reserved = frozenset(reserved)
        self._table: dict[str, int] = {}

    def set_route(self, host: str, port: int) -> None:
        self._table[normalize_host(host, self._reserved)] = check_port(port)

    def remove_route(self, host: str) -> None:
        self._table.pop(normalize_host(host, self._reserved), None)

    def routes(self) -> dict[str, int]:
        return dict(self._table)


class HAProxyRoutes:
    """The route table of a running HAProxy, changed live through its runtime API.

    `socket_path` is the admin socket (`stats socket ... level admin`); `map_path` must be the
    map file exactly as the HAProxy configuration names it (the runtime API identifies a map by
    that path). Both come from `paitho_local.edge.EdgeFiles`.
    """

    def __init__(
        self,
        socket_path: Path,
        map_path: Path,
        *,
        timeout: float = 2.0,
        reserved: Iterable[str] = CONTROL_HOSTS,
    ) -> None:
        self._socket_path = socket_path
        self._map_path = map_path
        self._timeout = timeout
        self._reserved = frozenset(reserved)
        self._lock = threading.Lock()

    # -- RouteTable ---------------------------------------------------------------------------

    def set_route(self, host: str, port: int) -> None:
        host = normalize_host(host, self._reserved)
        port = check_port(port)
        with self._locked():
            table = self._read_file()
            if table.get(host) != port:
                table[host] = port
                self._write_file(table)
            reply = self.command(f"set map {self._map_path} {host} {port}")
            if reply.startswith("entry not found"):
                reply = self.command(f"add map {self._map_path} {host} {port}")
            self._expect_ok(reply, f"add the route for {host}")
        log.info("edge route set: %s -> port %s", host, port)

    def remove_route(self, host: str) -> None:
        host = normalize_host(host, self._reserved)
        with self._locked():
            table = self._read_file()
            if host in table:
                del table[host]
                self._write_file(table)
            reply = self.command(f"del map {self._map_path} {host}")
            if not reply.startswith("Key not found"):
                self._expect_ok(reply, f"remove the route for {host}")
        log.info("edge route removed: %s", host)

    def routes(self) -> dict[str, int]:
        """The table HAProxy is routing with right now."""
        reply = self.command(f"show map {self._map_path}")
        table: dict[str, int] = {}
        for line in reply.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2].isdigit():
                table.setdefault(parts[1], int(parts[2]))
            elif line.strip():
                raise PlatformUnavailable(
                    f"the edge answered 'show map' unexpectedly ({line[:80]!r}); is "
                    f"{self._map_path} the map file named in its configuration?"
                )
        return table

    # -- runtime API --------------------------------------------------------------------------

    def command(self, line: str) -> str:
        """Send one runtime API command and return HAProxy's answer (it closes when done)."""
        if "\n" in line or ";" in line:
            raise InvalidInput("a runtime API command is a single line without ';'")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self._timeout)
                sock.connect(str(self._socket_path))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise PlatformUnavailable(
                f"the edge (HAProxy) is not running: nothing answers on {self._socket_path}; "
                "start the platform with `make up` (the route is saved and applies when it starts)"
            ) from exc
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise PlatformUnavailable(
                f"could not talk to the edge (HAProxy) on {self._socket_path}: {reason}; "
                "check that `make up` is running"
            ) from exc
        return b"".join(chunks).decode(errors="replace").strip()

    def _expect_ok(self, reply: str, what: str) -> None:
        if reply:
            raise PlatformUnavailable(f"the edge refused to {what}: {reply.splitlines()[0][:200]}")

    # -- the map file -------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise changes between threads and between processes sharing the map file."""
        lock_path = self._map_path.with_name(self._map_path.name + ".lock")
        with self._lock:
            try:
                fh = open(lock_path, "a")  # noqa: SIM115 - held for the whole block
            except OSError as exc:
                raise PlatformUnavailable(
                    f"cannot lock the edge map file next to {self._map_path}: {exc.strerror}; "
                    "has the edge been configured (`make up`)?"
                ) from exc
            with fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                yield

    def _read_file(self) -> dict[str, int]:
        try:
            return parse_map(self._map_path.read_text())
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise PlatformUnavailable(
                f"cannot read the edge map file {self._map_path}: {exc.strerror}"
            ) from exc

    def _write_file(self, table: dict[str, int]) -> None:
        try:
            write_map_file(self._map_path, table)
        except OSError as exc:
            raise PlatformUnavailable(
                f"cannot write the edge map file {self._map_path}: {exc.strerror}"
            ) from exc
