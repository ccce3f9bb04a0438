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
