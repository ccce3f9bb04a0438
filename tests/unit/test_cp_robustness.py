"""No request to any control-plane route yields a 500: junk tokens, paths, bodies, headers."""

from __future__ import annotations

import pytest

from tests.cp_support import FORM_HEADERS, client_for, plane

JUNK = [
    "",
    "x",
    "a.b",
    "%00%ff",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "é" * 300,
    "A" * 5000,
    "eyJ9.eyJ9",
    "..%2f..%2fetc%2fpasswd",
]


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    return client_for(plane())


@pytest.mark.parametrize("junk", JUNK)
def test_junk_tokens_in_links_give_4xx(client, junk: str) -> None:  # type: ignore[no-untyped-def]
    """/verify and /reset with any junk token answer 400 (an empty reset token: the form)."""
    for path in ("/verify?token=", "/reset?token="):
        resp = client.http.get(path + junk)
        expected = 200 if (path, junk) == ("/reset?token=", "") else 400
        assert resp.status_code == expected, (path, junk, resp.status_code)


@pytest.mark.parametrize("junk", ["x", "%00", "A" * 300, "<b>", "..", "'"])
def test_junk_licence_slugs_give_4xx(client, junk: str) -> None:  # type: ignore[no-untyped-def]
    """/licences/{slug} with an unknown or odd slug answers 404."""
    assert client.http.get("/licences/" + junk).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        *("/signup", "/login", "/logout", "/reset", "/reset/request"),
        *("/billing/plan", "/billing/start", "/billing/cancel"),
    ],
)
@pytest.mark.parametrize(
    "body", [b"", b"\xff\xfe\x00", b"csrf=junk&email=a", b"=" * 3000, b"csrf=&&&&"]
)
def test_junk_form_posts_give_4xx(client, path: str, body: bytes) -> None:  # type: ignore[no-untyped-def]
    """Every form route answers a junk post with a 4xx page."""
    resp = client.http.post(path, headers=FORM_HEADERS, body=body)
    assert 400 <= resp.status_code < 500, (path, body[:20], resp.status_code)


@pytest.mark.parametrize(
    "headers",
    [
        {"Cookie": "paitho_session=" + "A" * 4000},
        {"Cookie": "\x00\x01;;;===="},
        {"Cookie": 'paitho_session="unterminated'},
        {"Origin": "%%%"},
        {"Host": ""},
    ],
)
def test_junk_headers_never_break_pages(client, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """Odd cookies and headers are ignored: the portal redirects to /login, pages render."""
    assert client.http.get("/billing", headers=headers).status_code == 303
    assert client.http.get("/", headers=headers).status_code == 200


def test_webhook_junk_gives_400(client) -> None:  # type: ignore[no-untyped-def]
    """The Stripe webhook answers junk bodies and signatures with 400."""
    for body in (b"", b"{", b"\xff" * 100, b"[]"):
        resp = client.http.post(
            "/webhooks/stripe",
            headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=x"},
            body=body,
        )
        assert resp.status_code == 400
