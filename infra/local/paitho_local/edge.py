"""The local edge: HAProxy on 127.0.0.1:8000 routing by Host header.

    files = render_config(home, ("127.0.0.1", 8000), ("127.0.0.1", control_port))
    proc = subprocess.Popen(haproxy_argv(files))        # the supervisor owns this process
    wait_ready(files, timeout=10, proc=proc)
    routes = files.route_table()       # HAProxyRoutes: live route changes via the runtime API

Everything lives under `home/edge/` (mode 0700): the rendered configuration, the routes map (kept
across restarts: rendering never overwrites it), the admin socket (mode 0600) and the pid file.
HAProxy runs in master-worker mode in the foreground (`-W -db`): the supervised process is the
master (its pid is in the pid file); it exits if its worker dies, so the supervisor sees one
process to restart. SIGUSR1 stops it gracefully (open requests finish, bounded by
`hard-stop-after`), SIGTERM stops it at once, SIGUSR2 reloads the configuration into a new worker
(the routes come back from the map file). Route changes need none of these: they go through the
runtime API.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

from chalicelib.errors import LaunchError
from chalicelib.routes import HAProxyRoutes, control_hosts, write_map_file

TEMPLATE = Path(__file__).resolve().parent.parent / "haproxy.cfg.tmpl"
# sockaddr_un holds 107 bytes; HAProxy binds "<path>.<pid>.tmp" first and renames it.
MAX_SOCKET_PATH = 90
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./+@=-]+")
_SAFE_HOST = re.compile(r"[A-Za-z0-9.:-]+")


@dataclass(frozen=True)
class EdgeFiles:
    """Where one edge's files live. Paths are absolute, as the configuration names them."""

    cfg_path: Path
    map_path: Path
    admin_socket: Path
    pid_path: Path

    def route_table(self, timeout: float = 2.0, domain: str = "localhost") -> HAProxyRoutes:
        return HAProxyRoutes(
            self.admin_socket, self.map_path, timeout=timeout, reserved=control_hosts(domain)
        )


def edge_files(home: Path) -> EdgeFiles:
    """The file layout under `home/edge/`, without touching the disk."""
    edge_dir = home.resolve() / "edge"
    return EdgeFiles(
        cfg_path=edge_dir / "haproxy.cfg",
        map_path=edge_dir / "routes.map",
        admin_socket=edge_dir / "admin.sock",
        pid_path=edge_dir / "haproxy.pid",
    )


def render_config(
    home: Path,
    listen: tuple[str, int],
    control_origin: tuple[str, int],
    *,
    domain: str = "localhost",
    nbthread: int = 1,
) -> EdgeFiles:
    """Write `home/edge/haproxy.cfg` (and an empty routes map if there is none yet).

    `domain` and `marketplace.{domain}` go to the control plane, as does any host not in the
    routes map."""
    files = edge_files(home)
    for path in (files.cfg_path, files.map_path, files.admin_socket, files.pid_path):
        if not _SAFE_PATH.fullmatch(str(path)):
            raise LaunchError(
                f"the edge cannot use {path}: keep PAITHO_HOME to letters, digits and ./_-+@= "
                "(no spaces or quotes)"
            )
    if len(str(files.admin_socket)) > MAX_SOCKET_PATH:
        raise LaunchError(
            f"the edge's admin socket path {files.admin_socket} is longer than "
            f"{MAX_SOCKET_PATH} characters (a unix socket limit); use a shorter PAITHO_HOME"
        )
    if not _SAFE_HOST.fullmatch(domain) or ":" in domain:
        raise LaunchError(f"invalid platform domain {domain!r}: use a host name such as localhost")
    for what, (host, port) in (("listen", listen), ("control origin", control_origin)):
        if not _SAFE_HOST.fullmatch(host) or not 1 <= port <= 65535:
            raise LaunchError(f"invalid edge {what} address {host}:{port}")
    edge_dir = files.cfg_path.parent
    edge_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    edge_dir.chmod(0o700)
    text = Template(TEMPLATE.read_text()).substitute(
        pid_path=files.pid_path,
        admin_socket=files.admin_socket,
        map_path=files.map_path,
        nbthread=nbthread,
        listen_host=listen[0],
        listen_port=listen[1],
        control_host=control_origin[0],
        control_port=control_origin[1],
        control_hosts=" ".join(sorted(control_hosts(domain))),
        control_hosts_doc=", ".join(sorted(control_hosts(domain))),
        domain=domain,
    )
    tmp = files.cfg_path.with_suffix(".cfg.tmp")
    tmp.write_text(text)
    tmp.replace(files.cfg_path)
    if not files.map_path.exists():
        write_map_file(files.map_path, {})
    return files


def find_haproxy() -> str:
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if found is None:
        raise LaunchError(
            "HAProxy is not installed: install the distribution's haproxy package "
            "(`make up` does this)"
        )
    return found


def haproxy_argv(files: EdgeFiles, binary: str | None = None) -> list[str]:
    """The command line that runs the edge in the foreground, for a supervisor to own."""
    return [binary or find_haproxy(), "-W", "-db", "-f", str(files.cfg_path)]


def check_config(files: EdgeFiles, binary: str | None = None) -> None:
    """`haproxy -c`: a LaunchError quoting HAProxy's complaint if the config is not valid."""
    proc = subprocess.run(
        [binary or find_haproxy(), "-c", "-q", "-f", str(files.cfg_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        alerts = [ln for ln in proc.stderr.splitlines() if "ALERT" in ln] or ["(no output)"]
        raise LaunchError(f"the edge configuration {files.cfg_path} is invalid: {alerts[0]}")


def admin_command(files: EdgeFiles, line: str, timeout: float = 2.0) -> str:
    """One runtime API command; OSError if nothing answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(files.admin_socket))
        sock.sendall(line.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def running_pid(files: EdgeFiles) -> int | None:
    """The pid of the HAProxy worker answering on the admin socket, or None if none answers."""
    try:
        info = admin_command(files, "show info", timeout=1.0)
    except OSError:
        return None
    for line in info.splitlines():
        if line.startswith("Pid:"):
            return int(line.split(":", 1)[1])
    return None


def master_pid(files: EdgeFiles) -> int | None:
    """The pid recorded in the pid file (the master process), or None."""
    try:
        return int(files.pid_path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_ready(
    files: EdgeFiles, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> int:
    """Wait until HAProxy (started as `proc`, when given) serves; the pid of its worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise LaunchError(
                f"the edge (HAProxy) exited with code {proc.returncode} at start; "
                f"run `haproxy -c -f {files.cfg_path}` to see why"
            )
        pid = running_pid(files)
        if pid is not None and (proc is None or master_pid(files) == proc.pid):
            return pid
        time.sleep(0.02)
    raise LaunchError(f"the edge (HAProxy) did not answer on {files.admin_socket} in {timeout}s")


def spawn(files: EdgeFiles, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Start HAProxy on `files` and wait until it is ready (for tests and benchmarks).

    Its stderr (start-up alerts and warnings only; there is no traffic log) goes to
    `haproxy.log` next to the configuration."""
    log_path = files.cfg_path.with_name("haproxy.log")
    with open(log_path, "ab") as err:
        offset = err.tell()
        proc = subprocess.Popen(
            haproxy_argv(files),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        wait_ready(files, timeout, proc)
    except LaunchError as exc:
        stop(proc)
        with open(log_path, "rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        alerts = [line for line in lines if "ALERT" in line] or [f"see {log_path}"]
        raise LaunchError(f"{exc.message}: {alerts[0]}") from exc
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Graceful stop (SIGUSR1: finish open requests), then SIGKILL after `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGUSR1)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
