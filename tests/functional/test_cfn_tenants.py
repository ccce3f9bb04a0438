"""infra/aws/tenants.yaml: clean under cfn-lint, and its task definition equal to the one the ECS
launcher registers (chalicelib/launchers/ecs.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from chalicelib.launchers.ecs import EcsConfig, task_definition

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "aws" / "tenants.yaml"
INTRINSIC = "<intrinsic>"


def load() -> dict[str, Any]:
    # Long-form intrinsics only (Fn::Sub, Ref): plain YAML, so the safe loader reads it as is.
    return yaml.safe_load(TEMPLATE.read_text())  # type: ignore[no-any-return]


def camel(node: Any) -> Any:
    """CloudFormation's PascalCase property names as the ECS API's camelCase; intrinsic
    functions (values the stack resolves) become a placeholder."""
    if isinstance(node, dict):
        if len(node) == 1 and next(iter(node)) in ("Ref", "Fn::Sub", "Fn::GetAtt"):
            return INTRINSIC
        return {
            (k if k.islower() or "-" in k else k[0].lower() + k[1:]): (
                v if k == "Options" else camel(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [camel(x) for x in node]
    return node


def builder_output() -> dict[str, Any]:
    config = EcsConfig(
        cluster="c",
        subnets=(),
        security_groups=(),
        image_repository="repo",
        execution_role_arn=INTRINSIC,
        task_role_arn=INTRINSIC,
        infrastructure_role_arn="r",
        kms_key_id="k",
        log_group=INTRINSIC,
        aws_region=INTRINSIC,
        domain="d",
    )
    body = task_definition(config, "1.0.0")
    for container in body["containerDefinitions"]:
        container["image"] = INTRINSIC
    return body


def template_task_definition() -> dict[str, Any]:
    resource = load()["Resources"]["TenantTaskDefinition"]
    assert resource["Type"] == "AWS::ECS::TaskDefinition"
    body = camel(resource["Properties"])
    for container in body["containerDefinitions"]:
        options = container["logConfiguration"]["options"]
        options.update({k: camel(v) for k, v in options.items()})
    return body  # type: ignore[no-any-return]


def test_cfn_lint_is_clean() -> None:
    """cfn-lint reports nothing for the template."""
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    proc = subprocess.run(
        [str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_container_names_env_and_trust_flags_match_the_builder() -> None:
    """Containers, env var names and the postgres trust flags are the builder's, in order."""
    ours, theirs = builder_output(), template_task_definition()
    names = [c["name"] for c in ours["containerDefinitions"]]
    assert [c["name"] for c in theirs["containerDefinitions"]] == names
    for mine, cfn in zip(ours["containerDefinitions"], theirs["containerDefinitions"], strict=True):
        assert [e["name"] for e in cfn["environment"]] == [e["name"] for e in mine["environment"]]
        assert cfn["command"] == mine["command"]


def test_task_definition_equals_the_builder() -> None:
    """Every field of the template's task definition equals the builder's (tags aside)."""
    ours, theirs = builder_output(), template_task_definition()
    ours.pop("tags")
    theirs.pop("tags")
    assert theirs == ours


def test_registry_table_and_volume_key() -> None:
    """Tenants table: slug key, on demand, encrypted, PITR; the volume key rotates."""
    resources = load()["Resources"]
    table = resources["TenantsTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "slug", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "slug", "AttributeType": "S"}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert resources["VolumeKey"]["Properties"]["EnableKeyRotation"] is True
    task_role = resources["TenantTaskRole"]["Properties"]
    assert "Policies" not in task_role and "ManagedPolicyArns" not in task_role
