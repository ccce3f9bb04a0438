"""Every signup validation rule, one message per field, and no input that raises."""

from __future__ import annotations

import pytest

from chalicelib.validation import (
    RESERVED,
    check_company,
    check_email,
    check_password,
    check_plan,
    check_region,
    check_subdomain,
    validate_signup,
)
from tests.cp_support import signup_fields


@pytest.mark.parametrize("value", ["abc", "acme", "a1-b2", "x" * 40, "123", "my-team-7"])
def test_valid_subdomains_pass(value: str) -> None:
    """DNS labels of 3–40 lower-case letters, digits and inner hyphens are accepted."""
    assert check_subdomain(value) is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "Choose a subdomain"),
        ("ab", "too short"),
        ("x" * 41, "too long"),
        ("-acme", "start or end with a hyphen"),
        ("acme-", "start or end with a hyphen"),
        ("ac_me", "lower-case letters a–z"),
        ("ac.me", "lower-case letters a–z"),
        ("Acme", "lower-case letters only"),
        ("xn--acme", "reserved for encoded names"),
        ("ab--cd", "reserved for encoded names"),
        ("acme--eu", "single hyphens"),
        ("аcme", "look-alike"),  # Cyrillic а
        ("ａｃｍｅ", "look-alike characters"),  # full-width
        ("acme\x00", "not text"),
        ("ac\ufffdme", "not text"),
    ],
)
def test_invalid_subdomains_get_a_clear_message(value: str, fragment: str) -> None:
    """Each subdomain rule refuses its bad input with a message naming the problem."""
    message = check_subdomain(value)
    assert message is not None and fragment in message


@pytest.mark.parametrize(
    "name",
    [
        *("www", "api", "app", "admin", "marketplace", "licenses", "status"),
        *("mail", "smtp", "imap", "security", "billing", "support", "docs"),
    ],
)
def test_reserved_subdomains_are_refused(name: str) -> None:
    """The names the platform itself uses cannot be claimed by a customer."""
    assert name in RESERVED
    message = check_subdomain(name)
    assert message is not None and "reserved" in message


@pytest.mark.parametrize("value", ["ann@example.com", "a.b+tag@sub.example.co.uk", "x@ex-ample.io"])
def test_valid_emails_pass(value: str) -> None:
    """Ordinary addresses, including sub-addressing and sub-domains, are accepted."""
    assert check_email(value) is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "Enter your email"),
        ("annexample.com", "like name@example.com"),
        ("ann@", "like name@example.com"),
        ("@example.com", "like name@example.com"),
        ("ann@example", "domain after the @"),
        ("ann@-example.com", "domain after the @"),
        ("ann..x@example.com", "before the @"),
        ("ann @example.com", "spaces"),
        ("ann@exämple.com", "plain ASCII"),
        ("a" * 65 + "@example.com", "before the @"),
        ("a@" + "b" * 250 + ".com", "too long"),
        ("<script>@example.com", "before the @"),
        ("ann@example.com\r\nBcc: x@y.z", "not text"),
    ],
)
def test_invalid_emails_get_a_clear_message(value: str, fragment: str) -> None:
    """Each email syntax rule refuses its bad input with a message naming the problem."""
    message = check_email(value)
    assert message is not None and fragment in message


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "Choose a password"),
        ("short-pass1", "at least 12"),
        ("x" * 129, "too long"),
        ("passwordpassword", "too easy"),
        ("abababababababab", "too easy"),
        ("annabel-is-the-best-24", "email name"),
        ("my-acme-workspace-99", "subdomain"),
    ],
)
def test_weak_passwords_are_refused(value: str, fragment: str) -> None:
    """Short, long, common, repetitive or personal passwords are refused with a reason."""
    message = check_password(value, "annabel@example.com", "acme-workspace")
    assert message is not None and fragment in message


def test_a_strong_password_passes() -> None:
    """A long passphrase unrelated to the email and subdomain is accepted."""
    assert check_password("quiet-harbour-lantern-92", "ann@example.com", "acme") is None


def test_company_region_and_plan_rules() -> None:
    """Company is required and bounded; region is eu|us; plan is one of the four."""
    assert check_company("  ") is not None
    assert check_company("x" * 101) is not None
    assert check_company("<b>Acme</b> & Co") is None
    assert check_region("eu") is None and check_region("us") is None
    assert check_region("apac") is not None
    assert all(check_plan(p) is None for p in ("starter", "pro", "agency", "enterprise"))
    assert check_plan("free") is not None


def test_validate_signup_reports_every_field_at_once() -> None:
    """An empty form yields one message for each of the six fields."""
    form, errors = validate_signup({})
    assert form is None
    assert set(errors) == {"email", "password", "company", "subdomain", "region", "plan"}


def test_validate_signup_normalises_the_email() -> None:
    """A valid form comes back with the email lower-cased (the account key)."""
    form, errors = validate_signup(signup_fields(email="Ann@Example.COM"))
    assert errors == {} and form is not None
    assert form.email == "ann@example.com"


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "x" * 100_000,
        "\x00\x01\x02\xff",
        "<script>alert(1)</script>",
        "'; DROP TABLE accounts; --",
        "\ud800",
        "\u202e\u200b",
        "🙂" * 50,
    ],
)
def test_no_input_raises(junk: str) -> None:
    """Empty, huge, binary, markup, SQL and odd Unicode in every field give messages, not errors."""
    form, errors = validate_signup({name: junk for name in signup_fields()})
    assert form is None and errors


def test_signup_rules_agree_with_the_tenant_service() -> None:
    """Whatever signup accepts, TenantService.create accepts too (reserved names included)."""
    from chalicelib.tenants import RESERVED_SLUGS, validate_slug

    assert RESERVED_SLUGS <= RESERVED
    for candidate in ("abc", "acme-eu", "a1b2c3", "x" * 40, "9lives", "acme--eu", "ab-", "ab"):
        if check_subdomain(candidate) is None:
            assert validate_slug(candidate) == candidate
