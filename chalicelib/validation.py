"""Signup form validation: pure functions, one clear inline message per field.

Every rule from the signup spec lives here, so the route only parses the body and renders what
this returns. Nothing here raises on any input: empty, huge, binary, markup or SQL all come back
as field messages.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

FIELDS = ("email", "password", "company", "subdomain", "region", "plan")
REGIONS = ("eu", "us")
PLAN_IDS = ("starter", "pro", "agency", "enterprise")
MAX_LEN = {"email": 254, "password": 128, "company": 100, "subdomain": 40, "region": 2, "plan": 10}

RESERVED = frozenset(
    {
        "www", "api", "app", "admin", "administrator", "marketplace", "licenses", "licences",
        "license", "licence", "status", "mail", "email", "smtp", "imap", "pop", "pop3", "mx",
        "webmail", "security", "billing", "support", "docs", "doc", "help", "blog", "static",
        "assets", "cdn", "media", "login", "logout", "signup", "register", "auth", "oauth",
        "sso", "account", "accounts", "dashboard", "portal", "console", "ftp", "sftp", "ns",
        "ns1", "ns2", "dns", "autodiscover", "autoconfig", "root", "paitho", "localhost",
        "internal", "trust", "changelog", "setup", "edge", "control", "staging", "stage",
        "dev", "test", "demo", "sandbox", "abuse", "postmaster", "hostmaster", "webmaster",
        "noreply", "no-reply", "info", "sales", "legal", "privacy", "terms", "jobs", "careers",
        "press", "hall-of-fame", "well-known", "api-docs", "health", "metrics",
    }
)  # fmt: skip

COMMON_PASSWORDS = frozenset(
    {
        "password", "password1", "password123", "123456789012", "qwertyuiopas", "qwerty123456",
        "letmein12345", "welcome12345", "iloveyou1234", "correcthorsebatterystaple",
        "passwordpassword", "aaaaaaaaaaaa", "111111111111", "administrator", "changeme1234",
        "trustno1trustno1", "monkeymonkey", "dragondragon", "football1234", "baseball1234",
    }
)  # fmt: skip

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TLD = re.compile(r"[A-Za-z]{2,63}|xn--[a-z0-9-]{1,59}")


@dataclass(frozen=True)
class SignupForm:
    email: str
    password: str
    company: str
    subdomain: str
    region: str
    plan: str


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in value)


def _not_text(value: str) -> bool:
    return "\ufffd" in value or _has_control(value)


def check_email(value: str) -> str | None:
    if not value:
        return "Enter your email address."
    if _not_text(value):
        return "The email address contains characters that are not text."
    if value != value.strip() or " " in value:
        return "Remove the spaces from the email address."
    if len(value) > MAX_LEN["email"]:
        return "That email address is too long (254 characters at most)."
    if not value.isascii():
        return "Use an email address written in plain ASCII letters."
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return "Enter an email address like name@example.com."
    if len(local) > 64 or not _EMAIL_LOCAL.fullmatch(local):
        return "The part before the @ is not valid; check for typos."
    labels = domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels):
        return "The domain after the @ is not valid; it should look like example.com."
    if not _TLD.fullmatch(labels[-1]):
        return "The domain after the @ is not valid; it should look like example.com."
    return None


def normalise_email(value: str) -> str:
    """The account key: the domain is case-insensitive; the local part is kept lower-case too
    so that `Ann@x.com` and `ann@x.com` cannot hold two accounts."""
    return value.strip().lower()


def check_subdomain(value: str) -> str | None:
    if not value:
        return "Choose a subdomain for your workspace."
    if _not_text(value):
        return "The subdomain contains characters that are not text."
    if len(value) > MAX_LEN["subdomain"]:
        return "The subdomain is too long: 40 characters at most."
    if not value.isascii():
        folded = unicodedata.normalize("NFKC", value)
        if folded.isascii():
            return (
                "The subdomain contains look-alike characters (for example full-width or "
                f"Cyrillic letters); type it with plain letters: {folded.lower()!r}."
            )
        return "Use only plain letters a–z, digits 0–9 and hyphens; look-alike letters are refused."
    if value != value.lower():
        return f"Use lower-case letters only: {value.lower()!r}."
    if len(value) < 3:
        return "The subdomain is too short: at least 3 characters."
    if not _LABEL.fullmatch(value):
        if value.startswith("-") or value.endswith("-"):
            return "The subdomain cannot start or end with a hyphen."
        return "Use only lower-case letters a–z, digits 0–9 and hyphens."
    if value[2:4] == "--":
        return "Two hyphens in 3rd and 4th place (as in 'xn--') are reserved for encoded names."
    if "--" in value:
        return "Use single hyphens only: two in a row are not allowed."
    if value in RESERVED:
        return f"{value!r} is reserved; choose another subdomain."
    return None


def check_password(value: str, email: str = "", subdomain: str = "") -> str | None:
    if not value:
        return "Choose a password."
    if "\ufffd" in value or "\x00" in value:
        return "The password contains characters that are not text."
    if len(value) < 12:
        return "Use at least 12 characters for the password."
    if len(value) > MAX_LEN["password"]:
        return "The password is too long: 128 characters at most."
    lowered = value.lower()
    if lowered in COMMON_PASSWORDS or len(set(value)) < 5:
        return "That password is too easy to guess; try a longer phrase of unrelated words."
    local = email.partition("@")[0].lower()
    if (len(local) >= 4 and local in lowered) or (len(subdomain) >= 4 and subdomain in lowered):
        return "The password must not contain your email name or subdomain."
    return None


def check_company(value: str) -> str | None:
    if not value.strip():
        return "Enter your company name."
    if _not_text(value):
        return "The company name contains characters that are not text."
    if len(value) > MAX_LEN["company"]:
        return "The company name is too long: 100 characters at most."
    return None


def check_region(value: str) -> str | None:
    if value not in REGIONS:
        return "Choose where your data lives: EU or US."
    return None


def check_plan(value: str) -> str | None:
    if value not in PLAN_IDS:
        return "Choose a plan: Starter, Pro, Agency or Enterprise."
    return None


def validate_signup(raw: Mapping[str, str]) -> tuple[SignupForm | None, dict[str, str]]:
    """Check every field; returns the form (when all pass) and the messages per field."""
    values = {name: raw.get(name, "") for name in FIELDS}
    errors: dict[str, str] = {}
    checks = {
        "email": check_email(values["email"]),
        "password": check_password(values["password"], values["email"], values["subdomain"]),
        "company": check_company(values["company"]),
        "subdomain": check_subdomain(values["subdomain"]),
        "region": check_region(values["region"]),
        "plan": check_plan(values["plan"]),
    }
    errors = {name: msg for name, msg in checks.items() if msg is not None}
    if errors:
        return None, errors
    return (
        SignupForm(
            email=normalise_email(values["email"]),
            password=values["password"],
            company=values["company"].strip(),
            subdomain=values["subdomain"],
            region=values["region"],
            plan=values["plan"],
        ),
        {},
    )
