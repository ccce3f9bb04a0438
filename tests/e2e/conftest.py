"""The whole local stack as a user runs it: `paitho up` in its own process and home."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

BIN = Path(sys.executable).parent


@dataclass
class Stack:
    home: Path
    edge_port: int
    proc: subprocess.Popen[str]
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. PAITHO_OUTBOUND_INTERVAL

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            {
                "PAITHO_HOME": str(self.home),
                "PAITHO_EDGE_PORT": str(self.edge_port),
                "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            }
        )
        env.update(self.extra_env)
        return env

    def paitho(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(BIN / "paitho"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"paitho {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def get(self, host: str, path: str = "/") -> tuple[int, Message, bytes]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.edge_port}{path}", headers={"Host": host}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def show(self, slug: str) -> dict[str, Any]:
        return dict(json.loads(self.paitho("tenants", "show", slug, "--json").stdout))

    def output(self) -> str:
        return self.log_path.read_text()


def start_stack(
    home: Path, edge_port: int, timeout: float = 180, extra_env: dict[str, str] | None = None
) -> Stack:
    """`paitho up` in `home`; `extra_env` is added to the platform's environment."""
    log_path = home.with_name(home.name + f"-up-{time.monotonic_ns()}.log")
    stack = Stack(home, edge_port, None, log_path, dict(extra_env or {}))  # type: ignore[arg-type]
    with log_path.open("w") as log:
        stack.proc = subprocess.Popen(
            [str(BIN / "paitho"), "up"],
            env={**stack.env, "COLUMNS": "200"},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Paitho is up" in log_path.read_text():
            return stack
        if stack.proc.poll() is not None:
            raise AssertionError(f"paitho up exited early:\n{log_path.read_text()}")
        time.sleep(0.2)
    stop_stack(stack)
    raise AssertionError(f"paitho up did not come up in {timeout}s:\n{log_path.read_text()}")


def stop_stack(stack: Stack, sig: int = signal.SIGINT) -> int:
    if stack.proc.poll() is None:
        stack.proc.send_signal(sig)
        try:
            return stack.proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(stack.proc.pid, signal.SIGKILL)
            stack.proc.wait()
            raise AssertionError("paitho up did not stop within 90s") from None
    return stack.proc.returncode


@pytest.fixture(scope="session")
def stack(work_root: Path) -> Iterator[Stack]:
    """One running platform for the e2e session."""
    home = work_root / "e2e"
    s = start_stack(home, free_port())
    yield s
    stop_stack(s)
