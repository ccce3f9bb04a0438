"""Provisioning time of a tenant against a bare `initdb` + start, measured in the same run.

Provisioning is measured as an operator sees it: `TenantService.create` from the call until it
returns with the tenant running — registry writes (moto server), template clone, its own
PostgreSQL and app process started by the supervisor, /healthz answering, and the route live in
a real HAProxy. The baseline is what provisioning would cost without the template: `initdb` of
a fresh cluster plus starting it (no app, no registry, no route).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer
from paitho_local import edge
from paitho_local.supervisor import Supervisor

from bench.common import median, percentile, record
from chalicelib.launchers import pgcluster
from chalicelib.launchers.local import LocalLauncher, SupervisorClient, free_port
from chalicelib.lifecycle import Executor
from chalicelib.registry import Registry
from chalicelib.tenants import TenantService

N = 10


def baseline(root: Path, n: int) -> list[float]:
    bindir, ids = pgcluster.find_bindir(), pgcluster.run_as()
    times = []
    for i in range(n):
        began = time.perf_counter()
        data = root / f"bare{i}" / "pgdata"
        pgcluster.initdb(data, bindir, ids)
        proc = pgcluster.start(pgcluster.Cluster(data, root / f"bare{i}" / "run", free_port()),
                               bindir, ids)  # fmt: skip
        times.append(time.perf_counter() - began)
        pgcluster.stop(proc)
    return times


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    for key, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}.items():
        os.environ.setdefault(key, value)
    root = Path(tempfile.mkdtemp(prefix="paitho-bench-"))
    os.chmod(root, 0o755)  # noqa: S103 - the cluster user must traverse it
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    supervisor = Supervisor()
    supervisor.serve(root / "run" / "supervisor.sock")
    files = edge.render_config(root, ("127.0.0.1", free_port()), ("127.0.0.1", free_port()))
    haproxy = edge.spawn(files)
    try:
        db = boto3.client("dynamodb", endpoint_url=f"http://localhost:{port}",
                          region_name="us-east-1")  # fmt: skip
        registry = Registry(db, "bench-tenants")
        registry.ensure_table()
        launcher = LocalLauncher(root, SupervisorClient(root / "run" / "supervisor.sock"))
        launcher.prepare_template()
        service = TenantService(
            registry, Executor(registry, launcher, files.route_table(), "localhost"), "1"
        )
        times = []
        for i in range(N):
            launcher.refill_spares()  # what the platform's background thread does between signups
            began = time.perf_counter()
            rec = service.create(f"bench{i:02d}")
            times.append(time.perf_counter() - began)
            assert rec.state == "running", rec.last_error
        base = baseline(root, N)
        p50, p95 = median(times), percentile(times, 95)
        record("provision_p50_s", p50, "s")
        record("provision_p95_s", p95, "s")
        record("provision_ratio_vs_initdb", p50 / median(base), "ratio", p50 / median(base))
        print(f"   baseline initdb+start p50 {median(base):.3f}s")
        for i in range(N):
            service.delete(f"bench{i:02d}")
    finally:
        supervisor.shutdown()
        edge.stop(haproxy)
        moto.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
