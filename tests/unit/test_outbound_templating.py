"""Personalisation templates: variables, fallbacks and the blocking of a send with a gap."""

from __future__ import annotations

import pytest
from paitho_tenant.outbound import templating
from paitho_tenant.outbound.errors import TemplateError


def test_variables_and_fallbacks() -> None:
    """A present value is used; a missing or blank one takes the fallback after `|`."""
    out = templating.render(
        "Hi {{first_name|there}}, {{ company }} and {{city|your city}}",
        {"first_name": "Ada", "company": "Acme", "city": "  "},
    )
    assert out == "Hi Ada, Acme and your city"
    assert templating.render("Hi {{first_name|there}}", {}) == "Hi there"


def test_empty_fallback_is_allowed() -> None:
    """`{{title|}}` renders nothing when the value is missing, without blocking."""
    assert templating.render("Dear {{title|}}X", {}) == "Dear X"


def test_missing_variable_without_fallback_blocks() -> None:
    """A variable with no value and no fallback raises, naming the variable only."""
    with pytest.raises(TemplateError) as info:
        templating.render("Hi {{first_name}}, about {{company}}", {"company": "Secret Corp"})
    assert "first_name" in info.value.message
    assert "Secret Corp" not in info.value.message
    assert templating.missing("{{a}} {{b|x}} {{c}}", {"c": "1"}) == ["a"]


def test_unclosed_placeholder_is_an_error() -> None:
    """A `{{` that never closes is reported instead of being sent literally."""
    with pytest.raises(TemplateError):
        templating.render("Hi {{first_name", {"first_name": "Ada"})


def test_lead_values_merge_profile_email_and_extras() -> None:
    """Lead fields win over campaign extras; the address is available as `email`."""
    values = templating.lead_values(
        "ada@p.test", {"first_name": "Ada", "n": None}, {"first_name": "X", "sender": "Al"}
    )
    assert values == {"first_name": "Ada", "email": "ada@p.test", "sender": "Al"}
