"""Personalisation templates: `{{first_name}}`, `{{first_name|there}}` (fallback after `|`).

A variable that is missing or blank and has no fallback blocks the send: `render` raises
TemplateError naming the variable (a name, never a value). Values are inserted as they are;
the body is plain text, so nothing needs escaping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from paitho_tenant.outbound.errors import TemplateError

_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:\|([^}]*))?\}\}")
_OPEN = re.compile(r"\{\{")


@dataclass(frozen=True)
class Placeholder:
    name: str
    fallback: str | None


def placeholders(template: str) -> list[Placeholder]:
    """Every placeholder of a template, in order; TemplateError on an unclosed `{{`."""
    found = [Placeholder(m.group(1), _fallback(m.group(2))) for m in _VAR.finditer(template)]
    if len(_OPEN.findall(template)) != len(found):
        raise TemplateError("a template has a '{{' that is not a complete {{variable}}")
    return found


def _fallback(raw: str | None) -> str | None:
    return None if raw is None else raw.strip()


def missing(template: str, values: Mapping[str, str]) -> list[str]:
    """Names of variables without fallback that the values cannot fill."""
    return sorted(
        {
            p.name
            for p in placeholders(template)
            if p.fallback is None and not str(values.get(p.name, "") or "").strip()
        }
    )


def render(template: str, values: Mapping[str, str]) -> str:
    gaps = missing(template, values)
    if gaps:
        raise TemplateError("cannot personalise: no value and no fallback for " + ", ".join(gaps))

    def fill(match: re.Match[str]) -> str:
        value = str(values.get(match.group(1), "") or "").strip()
        if value:
            return value
        return _fallback(match.group(2)) or ""

    return _VAR.sub(fill, template)


def lead_values(
    email: str, profile: Mapping[str, object], extra: Mapping[str, str]
) -> dict[str, str]:
    """The variables of one lead: its profile fields, `email`, then campaign-level extras."""
    values = {str(k): str(v) for k, v in profile.items() if v is not None}
    values["email"] = email
    for key, value in extra.items():
        values.setdefault(key, value)
    return values
