"""infra/aws/controlplane.yaml: clean under cfn-lint, one table per control-plane store with the
key and TTL the code uses, and a policy that reaches exactly those tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from chalicelib.cpconfig import TableNames
from chalicelib.stores import SPECS, TTL_KINDS, DynamoTable

pytestmark = pytest.mark.functional

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "aws" / "controlplane.yaml"


def load() -> dict[str, Any]:
    return yaml.safe_load(TEMPLATE.read_text())  # type: ignore[no-any-return]


def test_cfn_lint_is_clean() -> None:
    """cfn-lint reports nothing for the template."""
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    proc = subprocess.run(
        [str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_store_has_its_table() -> None:
    """Each store kind has a table named like TableNames(), keyed as stores.py keys it."""
    resources = load()["Resources"]
    tables = {
        r["Properties"]["TableName"]["Fn::Sub"].removeprefix("${TablePrefix}-"): r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::DynamoDB::Table"
    }
    assert set(tables) == set(SPECS)
    defaults = TableNames()
    for kind, props in tables.items():
        assert getattr(defaults, kind) == f"paitho-{kind}"
        assert props["KeySchema"] == [{"AttributeName": SPECS[kind].key, "KeyType": "HASH"}]
        assert props["SSESpecification"] == {"SSEEnabled": True}
        ttl = props.get("TimeToLiveSpecification")
        if kind in TTL_KINDS:
            assert ttl == {"AttributeName": "expires_at", "Enabled": True}
            assert "expires_at" in SPECS[kind].allowed
        else:
            assert ttl is None


def test_the_policy_reaches_every_table() -> None:
    """The Lambda policy lists each table's ARN, SES sending and the control-plane parameters."""
    resources = load()["Resources"]
    statements = resources["ControlPlaneWebPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    arns = {r["Fn::GetAtt"][0] for r in by_sid["ControlPlaneTables"]["Resource"]}
    assert arns == {k for k, r in resources.items() if r["Type"] == "AWS::DynamoDB::Table"}
    assert "dynamodb:DeleteTable" not in by_sid["ControlPlaneTables"]["Action"]
    assert by_sid["TransactionalMail"]["Action"] == "ses:SendRawEmail"


def test_ensure_enables_ttl_where_the_template_does(aws_client: Any, unique: str) -> None:
    """Locally created tables expire `expires_at` items like the deployed ones."""
    client = aws_client("dynamodb")
    for kind in sorted(TTL_KINDS):
        table = DynamoTable(client, f"cfn-{unique}-{kind}", kind)
        table.ensure()
        ttl = client.describe_time_to_live(TableName=table.name)["TimeToLiveDescription"]
        assert ttl["TimeToLiveStatus"] == "ENABLED" and ttl["AttributeName"] == "expires_at"
