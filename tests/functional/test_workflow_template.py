"""infra/aws/workflows.yaml and the .asl.json files it deploys: cfn-lint clean, and the state
machines' shape (bounded fan-out, per-tenant Retry and Catch, allowlisted ledger writes)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.backups import LEDGER_ATTRIBUTES

pytestmark = pytest.mark.functional

AWS = Path(__file__).resolve().parents[2] / "infra" / "aws"
MACHINES = ("backup.asl.json", "retention.asl.json")


def _states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in definition["States"].items():
        yield name, state
        if state["Type"] == "Map":
            yield from _states(state["ItemProcessor"])


def test_cfn_lint_is_clean() -> None:
    """cfn-lint reports nothing for workflows.yaml."""
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    proc = subprocess.run(
        [str(cfn_lint), str(AWS / "workflows.yaml")],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_template_deploys_exactly_the_asl_files() -> None:
    """The template's state machines point at the .asl.json files (no inline copy)."""
    text = (AWS / "workflows.yaml").read_text()
    for name in MACHINES:
        assert f"DefinitionS3Location: {name}" in text
    assert '"States"' not in text and "DefinitionString" not in text


@pytest.mark.parametrize("machine", MACHINES)
def test_fan_out_is_bounded_with_retry_and_catch_per_tenant(machine: str) -> None:
    """One Map with MaxConcurrency 1..10; the per-tenant task retries with backoff and
    catches everything into a failure record, so one tenant cannot stop the others."""
    definition = json.loads((AWS / machine).read_text())
    states = dict(_states(definition))
    maps = [s for s in states.values() if s["Type"] == "Map"]
    assert len(maps) == 1 and 1 <= maps[0]["MaxConcurrency"] <= 10
    tasks = [s for s in states.values() if s.get("Resource", "").endswith(".waitForTaskToken")]
    assert len(tasks) == 1
    (task,) = tasks
    assert all(r["BackoffRate"] > 1 for r in task["Retry"])
    assert [c["ErrorEquals"] for c in task["Catch"]] == [["States.ALL"]]
    assert states[task["Catch"][0]["Next"]]["Resource"] == "arn:aws:states:::dynamodb:putItem"


@pytest.mark.parametrize("machine", MACHINES)
def test_ledger_writes_use_only_allowlisted_attributes(machine: str) -> None:
    """Every putItem in the machine writes only attribute names the ledger allowlists."""
    definition = json.loads((AWS / machine).read_text())
    puts = [s for _, s in _states(definition) if s.get("Resource", "").endswith("dynamodb:putItem")]
    assert len(puts) == 3
    for put in puts:
        assert set(put["Parameters"]["Item"]) <= LEDGER_ATTRIBUTES
