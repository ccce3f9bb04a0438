"""Edge overhead and route propagation, against direct access to the same tenant in one run.

One real tenant (its own PostgreSQL cluster and `paitho-tenant serve`) and the local edge
(HAProxy via paitho_local.edge, with a dummy control-plane origin). The same load generator with
the same parameters hits the tenant's port directly and through the edge with
`Host: bench.localhost`, back to back, in ROUNDS rounds (alternating which goes first). Each
round gives a ratio and a p99 difference; the figures are their medians, so load from elsewhere
on a shared machine drifting between rounds does not decide the result.

    wrk -t1 -c16 -d3s --latency   (one wrk thread: leaves a core for the servers on 2 cores)

Figures (bench/results.json):
    edge_rps_ratio      requests/s through the edge / direct            target >= 0.9
    edge_p99_added_ms   p99 through the edge - p99 direct
    (printed: HAProxy's own CPU time per proxied request, which does not depend on other load)
    route_live_s        median time from set_route() until a request through the edge reaches
                        the new backend, over LIVE_SAMPLES fresh hosts    target < 1

Run: .venv/bin/python -m bench bench_edge
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from paitho_local import edge

from bench.common import median, record
from chalicelib.launchers import pgcluster
from chalicelib.routes import HAProxyRoutes

WRK_THREADS = 1
WRK_CONNECTIONS = 16
WRK_SECONDS = 3
ROUNDS = 10
LIVE_SAMPLES = 10
PATH = "/healthz"


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p99_ms: float
    requests: int
    errors: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(
            "bench_edge needs the wrk load generator: run `make bootstrap` (it installs the "
            "distribution's wrk package) or `apt-get install wrk`"
        )
    return found


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(wrk: str, url: str, host: str | None, seconds: int = WRK_SECONDS) -> WrkResult:
    argv = [wrk, f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency"]
    if host is not None:
        argv += ["-H", f"Host: {host}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if rps is None or p99 is None or total is None:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    errors = "; ".join(
        line.strip() for line in out.splitlines() if "errors" in line or "Non-2xx" in line
    )
    p99_ms = float(p99.group(1)) * _UNIT_MS[p99.group(2)]
    return WrkResult(float(rps.group(1)), p99_ms, int(total.group(1)), errors)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by these processes."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class ControlOrigin:
    """A stand-in for the control plane: answers every request with 'control'."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.send_response(404)
                self.send_header("X-Bench-Control", "1")
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"control")

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # resets when the edge drops idle connections are expected

        self.server = Server(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_tenant(conninfo: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    binary = Path(sys.executable).with_name("paitho-tenant")
    env = dict(os.environ, PAITHO_TENANT_DB=conninfo, PAITHO_TENANT_SLUG="bench")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(binary), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(
                f"paitho-tenant exited with code {proc.returncode} at start: {' / '.join(tail)}"
            )
        status = get_status(port, None)
        if status == 200:
            return proc
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise RuntimeError("paitho-tenant did not answer GET /healthz with 200 within 30 s")


def get_status(port: int, host: str | None) -> int | None:
    """Status of GET PATH, or None if the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", PATH, headers={} if host is None else {"Host": host})
        resp = conn.getresponse()
        resp.read()
        return -1 if resp.getheader("X-Bench-Control") else resp.status
    except OSError:
        return None
    finally:
        conn.close()


def measure_route_live(routes: HAProxyRoutes, edge_port: int, tenant_port: int) -> float:
    """Median seconds from set_route() until the edge serves the new host from the tenant."""
    samples = []
    for i in range(LIVE_SAMPLES):
        host = f"live{i}.localhost"
        assert get_status(edge_port, host) == -1, "a fresh host must start at the control plane"
        start = time.perf_counter()
        routes.set_route(host, tenant_port)
        while get_status(edge_port, host) != 200:
            if time.perf_counter() - start > 10:
                raise RuntimeError(f"route for {host} not live after 10 s")
        samples.append(time.perf_counter() - start)
        routes.remove_route(host)
    return median(samples)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    wrk = find_wrk()
    root = Path(tempfile.mkdtemp(prefix="paitho-bench-edge-"))
    os.chmod(root, 0o755)  # noqa: S103 - the cluster user (paitho) must traverse it
    ids = pgcluster.run_as()
    bindir = pgcluster.find_bindir()
    cluster = pgcluster.Cluster(root / "pgdata", root / "pgrun", free_port())
    pg: subprocess.Popen[bytes] | None = None
    tenant: subprocess.Popen[bytes] | None = None
    haproxy: subprocess.Popen[bytes] | None = None
    control = ControlOrigin()
    try:
        pgcluster.initdb(cluster.data_dir, bindir, ids)
        pg = pgcluster.start(cluster, bindir, ids)
        tenant_port = free_port()
        tenant = start_tenant(cluster.conninfo(), tenant_port, root / "tenant.log")
        edge_port = free_port()
        files = edge.render_config(
            root / "home", ("127.0.0.1", edge_port), ("127.0.0.1", control.port)
        )
        haproxy = edge.spawn(files)
        routes = files.route_table()
        routes.set_route("bench.localhost", tenant_port)
        direct_url = f"http://127.0.0.1:{tenant_port}{PATH}"
        edge_url = f"http://127.0.0.1:{edge_port}{PATH}"
        print(
            f"wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s --latency, "
            f"{ROUNDS} paired rounds, medians; GET {PATH}",
            flush=True,
        )
        run_wrk(wrk, direct_url, None, seconds=2)  # warm-up: pool, caches
        run_wrk(wrk, edge_url, "bench.localhost", seconds=2)
        ratios: list[float] = []
        added: list[float] = []
        haproxy_pids = [haproxy.pid, edge.wait_ready(files, 5, haproxy)]
        edge_cpu = 0.0
        edge_requests = 0
        for i in range(ROUNDS):
            pair: dict[str, WrkResult] = {}
            for name in ("direct", "edge")[:: 1 - 2 * (i % 2)]:
                if name == "direct":
                    pair[name] = run_wrk(wrk, direct_url, None)
                else:
                    before = cpu_seconds(haproxy_pids)
                    pair[name] = run_wrk(wrk, edge_url, "bench.localhost")
                    edge_cpu += cpu_seconds(haproxy_pids) - before
                    edge_requests += pair[name].requests
            ratios.append(pair["edge"].rps / pair["direct"].rps)
            added.append(pair["edge"].p99_ms - pair["direct"].p99_ms)
            print(
                f"  round {i + 1}: direct {pair['direct']}\n           edge   {pair['edge']}"
                f"  load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        record("edge_rps_ratio", median(ratios), "ratio", median(ratios))
        p99_added = median(added)
        record("edge_p99_added_ms", p99_added, "ms")
        print(f"  HAProxy CPU per proxied request: {edge_cpu / edge_requests * 1e6:.0f} us")
        record("route_live_s", measure_route_live(routes, edge_port, tenant_port), "s")
    finally:
        if haproxy is not None:
            edge.stop(haproxy)
        if tenant is not None:
            stop_process(tenant)
        if pg is not None:
            pgcluster.stop(pg)
        control.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
