"""Pure pieces of the web app: the CSRF verdict (including browsers' `Origin: null` under
no-referrer), the security headers, the SVG charts, the ported licence check and its modes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paitho_tenant import websec
from paitho_tenant.licence import LicenceCheck, LicenceInvalid, mode_for, verify_licence
from paitho_tenant.ui.charts import Bar, bar_chart

ORIGIN = "https://acme.paitho.ai"
FORM_CT = {"content-type": "application/x-www-form-urlencoded"}


def test_csrf_verdicts() -> None:
    """Own-origin XHR is ok; app forms are 'form' (token checked by the handler); a browser's
    Origin: null form post counts only with Sec-Fetch-Site same-origin; the rest is refused."""
    v = websec.csrf_verdict
    assert v("GET", "/app", {}, ORIGIN) == "ok"
    assert (
        v("POST", "/api/x", {"origin": ORIGIN, "x-requested-with": "XMLHttpRequest"}, ORIGIN)
        == "ok"
    )
    assert v("POST", "/app/brands", {"origin": ORIGIN, **FORM_CT}, ORIGIN) == "form"
    assert (
        v(
            "POST",
            "/app/brands",
            {"origin": "null", "sec-fetch-site": "same-origin", **FORM_CT},
            ORIGIN,
        )
        == "form"
    )
    assert (
        v(
            "POST",
            "/app/brands",
            {"origin": "null", "sec-fetch-site": "cross-site", **FORM_CT},
            ORIGIN,
        )
        == "refuse"
    )
    assert (
        v(
            "POST",
            "/app/brands",
            {"origin": "https://evil.test", "sec-fetch-site": "same-origin", **FORM_CT},
            ORIGIN,
        )
        == "refuse"
    )
    assert (
        v(
            "POST",
            "/api/brands",
            {"origin": "null", "sec-fetch-site": "same-origin", **FORM_CT},
            ORIGIN,
        )
        == "refuse"
    )
    assert v("POST", "/api/brands", {"origin": ORIGIN, **FORM_CT}, ORIGIN) == "refuse"
    assert v("POST", "/u/tok", {}, ORIGIN) == "ok"
    assert websec.is_form_path("/app") and not websec.is_form_path("/apples")


def test_headers_are_strict() -> None:
    """No unsafe-inline anywhere in the CSP; framing, referrer and features are denied."""
    csp = websec.SECURITY_HEADERS["Content-Security-Policy"]
    assert "unsafe" not in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert websec.SECURITY_HEADERS["Referrer-Policy"] == "no-referrer"
    assert all(
        f"{feature}=()" in websec.SECURITY_HEADERS["Permissions-Policy"]
        for feature in ("camera", "microphone", "geolocation", "payment", "usb")
    )
    assert "max-age=31536000" in websec.HSTS


def test_bar_chart_is_accessible_and_escaped() -> None:
    """The SVG names itself for screen readers, escapes labels and scales bars to the max."""
    svg = bar_chart("c1", "Leads <per> day", [Bar("<b>", 5), Bar("Tue", 10)])
    assert svg.startswith('<svg id="c1"') and 'role="img"' in svg
    assert '<title id="c1-t">Leads &lt;per&gt; day</title>' in svg and "<b>" not in svg
    assert 'height="84.0"' in svg and 'height="42.0"' in svg
    assert "style=" not in svg
    assert "no data" in bar_chart("c2", "Empty", [])


def _token(key: Ed25519PrivateKey, claims: dict[str, object], kid: str = "k1") -> str:
    def b64(d: dict[str, object]) -> str:
        raw = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing = b64({"alg": "EdDSA", "kid": kid, "typ": "paitho-licence"}) + "." + b64(claims)
    sig = base64.urlsafe_b64encode(key.sign(signing.encode())).rstrip(b"=").decode()
    return f"{signing}.{sig}"


CLAIMS = {"lid": "lic_1", "tenant": "acme", "plan": "pro", "limits": {}, "iat": 0, "exp": 1000}


def test_licence_verification_and_modes(tmp_path: Path) -> None:
    """A signed token verifies; a forged or unknown-key one does not; expiry, another tenant or
    no licence mean read-only; without trusted keys the check is off."""
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys = {"k1": key.public_key().public_bytes_raw()}
    licence = verify_licence(_token(key, CLAIMS), keys)
    assert licence.tenant == "acme" and licence.expires_at == 1000
    with pytest.raises(LicenceInvalid):
        verify_licence(_token(other, CLAIMS), keys)
    with pytest.raises(LicenceInvalid):
        verify_licence(_token(key, CLAIMS, kid="k9"), keys)
    with pytest.raises(LicenceInvalid):
        verify_licence("not.a-token", keys)
    assert mode_for(licence, "acme", 999) == "full"
    assert mode_for(licence, "acme", 1000) == "read_only"
    assert mode_for(licence, "globex", 10) == "read_only"
    assert mode_for(None, "acme", 10) == "read_only"
    path = tmp_path / "licence"
    path.write_text(_token(key, CLAIMS))
    assert LicenceCheck("acme", path, keys, clock=lambda: 10).status().mode == "full"
    expired = LicenceCheck("acme", path, keys, clock=lambda: 2000).status()
    assert expired.read_only and expired.problem == "the licence has expired"
    missing = LicenceCheck("acme", tmp_path / "none", keys).status()
    assert missing.read_only and missing.problem == "no licence installed"
    assert not LicenceCheck("acme", None, {}).status().checked


def test_licence_settings_from_env() -> None:
    """The edge's environment names the token file and the trusted keys by id."""
    from paitho_tenant.licence import settings_from_env

    raw = bytes(range(32))
    text = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    got = settings_from_env(
        {"PAITHO_LICENCE_FILE": "/run/lic", "PAITHO_LICENCE_KEYS": f"k1:{text}"}
    )
    assert got == {"licence_file": Path("/run/lic"), "licence_keys": (("k1", raw),)}
    assert settings_from_env({}) == {}
