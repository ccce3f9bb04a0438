"""The local wiring the platform uses: DynamoDB on the local AWS endpoint, mail to the sink."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from chalicelib.cpwiring import ephemeral_keys, local_control_plane
from chalicelib.mailsink import last_mail, message_text, start_mail_sink
from chalicelib.settings import Settings
from tests.cp_support import FakeTenants, client_for, link_from, post_form, signup_fields

pytestmark = pytest.mark.functional


def test_local_control_plane_signs_up_through_dynamodb_and_the_sink(
    aws_client: Any, unique: str
) -> None:
    """Signup → mail in home/mail → link → tenant created → 303 to its setup page."""
    with tempfile.TemporaryDirectory(prefix="paitho-wiring-") as d:
        home = Path(d)
        sink = start_mail_sink(home)
        try:
            tenants = FakeTenants()
            cp = local_control_plane(
                Settings(home=home),
                tenants,
                aws_client("dynamodb"),
                sink.port,
                table_prefix=f"wire-{unique}",
            )
            client = client_for(cp)
            assert post_form(client, "/signup", signup_fields()).status_code == 200
            msg = last_mail(home, "ann@example.com")
            assert msg is not None
            token = link_from(message_text(msg), "/verify")
            resp = client.http.get(f"/verify?token={token}", headers={"Host": "localhost:8000"})
            assert resp.headers["Location"] == "http://acme.localhost:8000/setup"
            assert cp.stores.accounts.get("ann@example.com") is not None
            assert "acme" in tenants.records
        finally:
            sink.stop()


def test_ephemeral_keys_never_print() -> None:
    """The key bundle's repr shows neither the token key nor the licence keys."""
    keys = ephemeral_keys("whsec_x")
    text = repr(keys)
    assert keys.token_key.reveal().hex() not in text and "whsec_x" not in text


def test_platform_injection_and_mark_paid(aws_client: Any, unique: str) -> None:
    """start_local_control_plane starts the sink and injects the app; mark_paid resumes a tenant."""
    from chalicelib.cpwiring import mark_paid, start_local_control_plane
    from chalicelib.errors import PlatformUnavailable

    with tempfile.TemporaryDirectory(prefix="paitho-wiring-") as d:
        home = Path(d)
        settings = Settings(home=home)
        tenants = FakeTenants()
        injected: list[Any] = []
        handle = start_local_control_plane(
            settings,
            tenants,
            aws_client("dynamodb"),
            injected.append,
            table_prefix=f"inj-{unique}",
        )
        try:
            assert (home / "run" / "mailsink.port").read_text().strip() == str(handle.sink.port)
            cp = injected[0]()
            assert injected[0]() is cp  # built once
            tenants.create("acme")
            cp.billing.start_trial("acme", "ann@example.com", "pro")
            cp.billing.apply("acme", "payment_failed", "test")
            cp.billing.apply("acme", "canceled", "test")
            cp.stores.subscriptions.update("acme", {"state": "suspended"})
            tenants.suspend("acme")
            assert handle.tick() == 1
            got = mark_paid(settings, tenants, aws_client("dynamodb"), "acme", f"inj-{unique}")
            assert got.state == "active" and tenants.records["acme"].state == "running"
            saved = last_mail(home, "ann@example.com")
            assert saved is not None and "running again" in str(saved["Subject"])
        finally:
            handle.stop()
        assert not (home / "run" / "mailsink.port").exists()
        with pytest.raises(PlatformUnavailable, match="make up"):
            mark_paid(settings, tenants, aws_client("dynamodb"), "acme", f"inj-{unique}")


def test_the_saved_mail_holds_the_link_verbatim(aws_client: Any, unique: str) -> None:
    """The .eml file in home/mail contains the verification link unbroken (grep-able)."""
    with tempfile.TemporaryDirectory(prefix="paitho-wiring-") as d:
        home = Path(d)
        sink = start_mail_sink(home)
        try:
            cp = local_control_plane(
                Settings(home=home),
                FakeTenants(),
                aws_client("dynamodb"),
                sink.port,
                table_prefix=f"eml-{unique}",
            )
            post_form(client_for(cp), "/signup", signup_fields())
            msg = last_mail(home, "ann@example.com")
            assert msg is not None
            link = next(w for w in message_text(msg).split() if "/verify?token=" in w)
            raw = next((home / "mail").glob("*.eml")).read_text()
            assert link in raw
        finally:
            sink.stop()


def test_aws_keys_come_from_ssm_parameters(aws_client: Any, unique: str) -> None:
    """Keys are read from SecureString parameters; a missing licence kid is a clear error."""
    import base64
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from chalicelib.cpwiring import aws_keys
    from chalicelib.errors import InvalidInput, PlatformUnavailable

    ssm = aws_client("ssm")
    prefix = f"/paitho-{unique}/control-plane"
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )

    def put(name: str, value: str) -> None:
        ssm.put_parameter(Name=f"{prefix}/{name}", Value=value, Type="SecureString", Overwrite=True)

    with pytest.raises(PlatformUnavailable, match="token-key"):
        aws_keys(ssm, prefix)
    put("token-key", "ab" * 32)
    put("licence-keys", json.dumps({"2026-12": base64.b64encode(raw).decode()}))
    put("licence-kid", "2026-11")
    with pytest.raises(InvalidInput, match="licence-kid"):
        aws_keys(ssm, prefix)
    put("licence-kid", "2026-12")
    keys = aws_keys(ssm, prefix)
    assert keys.token_key.reveal() == bytes.fromhex("ab" * 32)
    assert keys.licence_kid == "2026-12" and keys.stripe_webhook_secret is None
    put("stripe-webhook-secret", "whsec_live")
    assert aws_keys(ssm, prefix).stripe_webhook_secret is not None
