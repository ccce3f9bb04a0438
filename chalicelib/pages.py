"""HTTP edge helpers: parse a form body safely, render a template, build responses with the
security headers every page carries (strict CSP, no referrer to other sites, no framing, no
caching). The referrer policy is same-origin, not no-referrer: under no-referrer browsers send
`Origin: null` on form posts, and the origin check below needs the real origin."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from chalice.app import Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from chalicelib.errors import Forbidden, PayloadTooLarge

TEMPLATES = Path(__file__).resolve().parent / "templates"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def html(
    env: Environment,
    template: str,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> Response:
    body = env.get_template(template).render(**context)
    all_headers: dict[str, str | list[str]] = {
        "Content-Type": "text/html; charset=utf-8",
        **SECURITY_HEADERS,
    }
    all_headers.update(headers or {})
    return Response(body=body, status_code=status, headers=all_headers)


def redirect(location: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        body="",
        status_code=303,
        headers={"Location": location, **SECURITY_HEADERS, **(headers or {})},
    )


def text(body: str, content_type: str = "text/plain; charset=utf-8", status: int = 200) -> Response:
    return Response(
        body=body,
        status_code=status,
        headers={"Content-Type": content_type, **SECURITY_HEADERS},
    )


def form_fields(raw_body: bytes | None, max_bytes: int) -> dict[str, str]:
    """Decode an application/x-www-form-urlencoded body; the first value of each name wins.
    Bytes that are not UTF-8 become U+FFFD, which validation reports as "not text"."""
    body = raw_body or b""
    if len(body) > max_bytes:
        raise PayloadTooLarge("The form is too large; shorten what you typed and try again.")
    try:
        pairs = parse_qsl(
            body.decode("latin-1"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="replace",
            max_num_fields=64,
        )
    except ValueError as exc:
        raise PayloadTooLarge("The form has too many fields.") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def check_origin(headers: Mapping[str, str], scheme: str) -> None:
    """Refuse a cross-site form post: a present Origin (or Referer) must name this host.
    `Origin: null` (sandboxed frames, no-referrer pages) is refused too."""
    host = headers.get("host", "")
    origin = headers.get("origin") or headers.get("referer")
    if not origin:
        return
    parts = urlsplit(origin)
    if parts.netloc != host or parts.scheme != scheme:
        raise Forbidden("This form was sent from another site; open the page here and retry.")
