"""Settings resolve once from the environment; the ECS launcher's configuration is complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib import factory
from chalicelib.errors import InvalidInput
from chalicelib.settings import from_env

ECS_ENV = {
    "PAITHO_LAUNCHER": "ecs",
    "PAITHO_ECS_CLUSTER": "paitho",
    "PAITHO_ECS_SUBNETS": "subnet-1, subnet-2",
    "PAITHO_ECS_SECURITY_GROUPS": "sg-1",
    "PAITHO_ECS_IMAGE_REPOSITORY": "123.dkr.ecr.eu-west-1.amazonaws.com/paitho-tenant",
    "PAITHO_ECS_EXECUTION_ROLE_ARN": "arn:aws:iam::123:role/exec",
    "PAITHO_ECS_TASK_ROLE_ARN": "arn:aws:iam::123:role/task",
    "PAITHO_ECS_INFRASTRUCTURE_ROLE_ARN": "arn:aws:iam::123:role/infra",
    "PAITHO_ECS_VOLUME_KEY_ARN": "arn:aws:kms:eu-west-1:123:key/k",
    "PAITHO_ECS_LOG_GROUP": "/paitho/tenants",
}


def test_defaults_and_home() -> None:
    """Without environment the platform runs locally on port 8000 under ./.paitho."""
    s = from_env({}, home=Path("/tmp/x"))
    assert (s.launcher, s.edge_port, s.domain) == ("local", 8000, "localhost")
    assert s.tenant_url("acme", "/setup") == "http://acme.localhost:8000/setup"


def test_bad_values_fail_clearly() -> None:
    """A non-numeric port or an unknown launcher is refused with the variable's name."""
    with pytest.raises(InvalidInput, match="PAITHO_EDGE_PORT"):
        from_env({"PAITHO_EDGE_PORT": "eighty"})
    with pytest.raises(InvalidInput, match="PAITHO_LAUNCHER"):
        from_env({"PAITHO_LAUNCHER": "docker"})


def test_ecs_config_from_settings() -> None:
    """Every PAITHO_ECS_* output lands in EcsConfig; lists are split on commas."""
    cfg = factory.ecs_config(from_env(ECS_ENV, home=Path("/tmp/x")))
    assert cfg.cluster == "paitho" and cfg.subnets == ("subnet-1", "subnet-2")
    assert cfg.kms_key_id.endswith("key/k")


def test_ecs_config_names_the_missing_setting() -> None:
    """A missing output is named, with where to find it."""
    env = {k: v for k, v in ECS_ENV.items() if k != "PAITHO_ECS_LOG_GROUP"}
    with pytest.raises(InvalidInput, match=r"PAITHO_ECS_LOG_GROUP.*tenants\.yaml"):
        factory.ecs_config(from_env(env, home=Path("/tmp/x")))
