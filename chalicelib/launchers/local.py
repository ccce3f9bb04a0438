"""The local launcher: each tenant is a PostgreSQL cluster and an app process on this machine.

Storage is a data directory cloned from a prepared template cluster (initdb + migrations run
once), which is what makes provisioning fast. Processes are run by the platform's supervisor
(`paitho up`), which restarts them with backoff if they die; this launcher talks to it over a
Unix socket in the platform's home directory.

PostgreSQL refuses to run as root, so when the platform runs as root each cluster runs as the
unprivileged system user `paitho` (created by the bootstrap). The app process runs as the
platform's own user: the interpreter of the virtual environment may live where `paitho` cannot
reach (pyenv under /root), and the app reaches its cluster through the socket directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chalicelib.errors import LaunchError, PlatformUnavailable
from chalicelib.launchers import pgcluster
from chalicelib.launchers.base import Observed, Placement, TenantSpec

MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL


class SupervisorClient:
    """JSON-lines client for the supervisor's control socket."""

    def __init__(self, socket_path: Path, timeout: float = 60) -> None:
        self._path = socket_path
        self._timeout = timeout

    def call(self, op: str, **params: Any) -> dict[str, Any]:
        payload = json.dumps({"op": op, **params}).encode() + b"\n"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self._timeout)
                sock.connect(str(self._path))
                sock.sendall(payload)
                chunks: list[bytes] = []
                while not chunks or not chunks[-1].endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise PlatformUnavailable(
                "the local platform is not running; start it with `make up` "
                f"(no supervisor at {self._path})"
            ) from exc
        except OSError as exc:
            raise PlatformUnavailable(f"the local platform's supervisor failed: {exc}") from exc
        reply: dict[str, Any] = json.loads(b"".join(chunks) or b"{}")
        if not reply.get("ok"):
            raise LaunchError(str(reply.get("error", "the supervisor refused the request")))
        return reply

    def start(self, name: str, argv: list[str], **opts: Any) -> dict[str, Any]:
        return self.call("start", name=name, argv=argv, **opts)

    def stop(self, name: str, timeout: float = 30) -> None:
        self.call("stop", name=name, timeout=timeout)

    def status(self, name: str) -> dict[str, Any]:
        return self.call("status", name=name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def tenant_command() -> list[str]:
    return [str(Path(sys.executable).with_name("paitho-tenant"))]


def migrations_fingerprint() -> str:
    """Changes whenever the tenant's migrations change, so the template is rebuilt."""
    import paitho_tenant

    root = Path(paitho_tenant.__file__).parent / "migrations"
    digest = hashlib.sha256(paitho_tenant.__version__.encode())
    for path in sorted(root.glob("*.sql")) if root.is_dir() else []:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


class LocalLauncher:
    kind = "local"

    def __init__(
        self,
        home: Path,
        supervisor: SupervisorClient,
        bindir: Path | None = None,
        tenant_cmd: list[str] | None = None,
        public_origin: Callable[[str], str] | None = None,
        ready_timeout: float = 60,
        sleep: Callable[[float], None] = time.sleep,
        tenant_env: dict[str, str] | None = None,
    ) -> None:
        """`tenant_env`: extra, non-secret settings for every tenant app (e.g. the outbound
        engine's polling interval); never a passphrase or key."""
        self._tenant_env = dict(tenant_env or {})
        self._home = home
        self._supervisor = supervisor
        self._bindir = bindir or pgcluster.find_bindir()
        self._tenant_cmd = tenant_cmd or tenant_command()
        self._origin = public_origin
        self._ready_timeout = ready_timeout
        self._sleep = sleep
        self._ids = pgcluster.run_as()

    # -- layout ---------------------------------------------------------------------------------
    def tenant_dir(self, slug: str) -> Path:
        return self._home / "tenants" / slug

    def cluster(self, slug: str, db_port: int) -> pgcluster.Cluster:
        root = self.tenant_dir(slug)
        return pgcluster.Cluster(root / "pgdata", root / "run", db_port)

    def template_dir(self) -> Path:
        return self._home / "templates" / f"pg-{migrations_fingerprint()}"

    # -- template -------------------------------------------------------------------------------
    def prepare_template(self) -> Path:
        """initdb + migrate once; every tenant is a copy of this stopped cluster."""
        template = self.template_dir()
        if (template / "PG_VERSION").exists():
            return template
        pgcluster.check_reachable(self._home, self._ids)
        build = template.with_name(template.name + ".building")
        shutil.rmtree(build.parent / build.name, ignore_errors=True)
        shutil.rmtree(build.with_name(build.name + "-run"), ignore_errors=True)
        self._home.mkdir(parents=True, exist_ok=True)
        pgcluster.initdb(build, self._bindir, self._ids)
        cluster = pgcluster.Cluster(build, build.with_name(build.name + "-run"), free_port())
        proc = pgcluster.start(cluster, self._bindir, self._ids)
        try:
            env = {"PATH": "/usr/bin:/bin", "PAITHO_TENANT_DB": cluster.conninfo()}
            done = subprocess.run(
                [*self._tenant_cmd, "migrate"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise LaunchError(f"preparing the tenant template failed in migrate: {tail}")
        finally:
            pgcluster.stop(proc)
        shutil.rmtree(cluster.socket_dir, ignore_errors=True)
        build.rename(template)
        return template

    # -- Launcher protocol ----------------------------------------------------------------------
    def observe(self, spec: TenantSpec, placement: Placement | None) -> Observed:
        storage = (self.tenant_dir(spec.slug) / "pgdata" / "PG_VERSION").exists()
        app = self._supervisor.status(f"{spec.slug}/app")
        db = self._supervisor.status(f"{spec.slug}/postgres")
        running = bool(app.get("running")) and bool(db.get("running"))
        version = (app.get("meta") or {}).get("version") if running else None
        detail = f"app restarts={app.get('restarts', 0)}, postgres restarts={db.get('restarts', 0)}"
        return Observed(storage_exists=storage, running=running, version=version, detail=detail)

    def provision(self, spec: TenantSpec) -> Placement:
        root = self.tenant_dir(spec.slug)
        socket_path = root / "run" / ".s.PGSQL.65535"
        if len(str(socket_path)) > MAX_SOCKET_PATH:
            raise LaunchError(
                f"the tenant's PostgreSQL socket {socket_path} would pass the {MAX_SOCKET_PATH}-"
                "byte Unix socket limit; use a shorter tenant name or a shorter PAITHO_HOME"
            )
        if (root / "pgdata" / "PG_VERSION").exists():
            raise LaunchError(f"{root} already holds a cluster; delete the tenant first")
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        (root / "logs").mkdir()
        if not self._claim_spare(root / "pgdata"):
            pgcluster.clone(self.prepare_template(), root / "pgdata", self._ids)
        return Placement("127.0.0.1", free_port(), str(root), db_port=free_port())

    # -- spare clones: copying the template is most of provisioning, so do it ahead of time ---
    def spares_dir(self) -> Path:
        return self._home / "spares" / self.template_dir().name

    def _claim_spare(self, target: Path) -> bool:
        """Atomically take a ready spare clone (rename); False when there is none."""
        spares = self.spares_dir()
        for spare in sorted(spares.glob("ready-*")) if spares.is_dir() else []:
            try:
                spare.rename(target)
            except OSError:
                continue  # another provisioner took it first
            return True
        return False

    def refill_spares(self, count: int = 2) -> int:
        """Keep `count` ready clones of the current template; returns how many were made."""
        template = self.prepare_template()
        spares = self.spares_dir()
        spares.mkdir(parents=True, exist_ok=True)
        made = 0
        while len(list(spares.glob("ready-*"))) < count:
            token = f"{time.time_ns():x}"
            building = spares / f"building-{token}"
            pgcluster.clone(template, building, self._ids)
            building.rename(spares / f"ready-{token}")
            made += 1
        for stale in spares.parent.iterdir():
            if stale != spares:
                shutil.rmtree(stale, ignore_errors=True)
        return made

    def start(self, spec: TenantSpec, placement: Placement) -> Placement:
        root = self.tenant_dir(spec.slug)
        db_port = placement.db_port or free_port()
        app_port = placement.origin_port
        if not port_free(db_port) and not self._supervisor.status(f"{spec.slug}/postgres").get(
            "running"
        ):
            db_port = free_port()
        if not port_free(app_port) and not self._supervisor.status(f"{spec.slug}/app").get(
            "running"
        ):
            app_port = free_port()
        cluster = self.cluster(spec.slug, db_port)
        pgcluster.prepare_socket_dir(cluster.socket_dir, self._ids)
        user = {"uid": self._ids[0], "gid": self._ids[1]} if self._ids else {}
        self._supervisor.start(
            f"{spec.slug}/postgres",
            cluster.postgres_argv(self._bindir),
            log=str(root / "logs" / "postgres.out"),
            stop_signal="SIGINT",
            **user,
        )
        env = {
            "PATH": "/usr/bin:/bin",
            "PAITHO_TENANT_SLUG": spec.slug,
            "PAITHO_TENANT_DB": cluster.conninfo(),
        }
        if self._origin is not None:
            env["PAITHO_TENANT_ORIGIN"] = self._origin(spec.slug)
        env.update(self._tenant_env)
        env.update(self.install_licence(spec))
        self._supervisor.start(
            f"{spec.slug}/app",
            [*self._tenant_cmd, "serve", "--host", "127.0.0.1", "--port", str(app_port)],
            env=env,
            cwd=str(root),
            log=str(root / "logs" / "app.log"),
            stop_signal="SIGTERM",
            meta={"version": spec.version},
        )
        self.wait_healthy(spec.slug, app_port)
        return Placement("127.0.0.1", app_port, str(root), db_port=db_port)

    def install_licence(self, spec: TenantSpec) -> dict[str, str]:
        """Ask the platform for the tenant's licence; write it where the app reads it.

        Returns the app's licence settings (the token file and the trusted public keys), or
        nothing when the platform issues no licences (the tenant then runs with the check off).
        """
        try:
            reply = self._supervisor.call("licence", slug=spec.slug, plan=spec.plan)
        except LaunchError:
            return {}
        keys: dict[str, str] = reply.get("keys") or {}
        if not keys:
            return {}
        token_file = self.tenant_dir(spec.slug) / "licence.token"
        token = reply.get("token")
        if token:
            tmp = token_file.with_suffix(".tmp")
            tmp.write_text(str(token) + "\n", encoding="ascii")
            tmp.replace(token_file)
        else:
            token_file.unlink(missing_ok=True)  # no current licence: the tenant turns read-only
        return {
            "PAITHO_LICENCE_FILE": str(token_file),
            "PAITHO_LICENCE_KEYS": ",".join(f"{kid}:{key}" for kid, key in sorted(keys.items())),
        }

    def wait_healthy(self, slug: str, port: int) -> None:
        deadline = time.monotonic() + self._ready_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                last = f"/healthz answered {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                last = f"{getattr(exc, 'reason', exc)}"
            self._sleep(0.02)
        raise LaunchError(
            f"{slug} did not answer /healthz within {self._ready_timeout:.0f}s ({last}); "
            f"see {self.tenant_dir(slug) / 'logs'}"
        )

    def stop(self, spec: TenantSpec, placement: Placement) -> None:
        self._supervisor.stop(f"{spec.slug}/app")
        self._supervisor.stop(f"{spec.slug}/postgres")

    def destroy(self, spec: TenantSpec, placement: Placement) -> None:
        self.stop(spec, placement)
        shutil.rmtree(self.tenant_dir(spec.slug), ignore_errors=True)
        if self.tenant_dir(spec.slug).exists():
            raise LaunchError(f"could not remove {self.tenant_dir(spec.slug)}")
