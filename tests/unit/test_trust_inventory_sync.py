"""The control plane's /trust table is the tenant's data inventory, not a hand-kept copy."""

from __future__ import annotations

import json
from pathlib import Path

from paitho_tenant import inventory

from chalicelib import posture

EXPORTED = Path(posture.__file__).with_name("trust_inventory.json")


def test_exported_inventory_matches_the_tenant_declaration() -> None:
    """trust_inventory.json equals paitho_tenant.inventory.summary_rows(); regenerate it with
    `.venv/bin/python -c "import json; from paitho_tenant import inventory;
    print(json.dumps(inventory.summary_rows(), indent=2, ensure_ascii=False))"
    > chalicelib/trust_inventory.json` when this fails."""
    assert json.loads(EXPORTED.read_text("utf-8")) == inventory.summary_rows()


def test_trust_page_covers_every_category_of_the_public_page() -> None:
    """The six categories the public trust page lists are all in the inventory."""
    names = " | ".join(c.data_type for c in posture.INVENTORY)
    for category in (
        "Lead records",
        "LLM provider keys",
        "SMTP/IMAP credentials",
        "Email message bodies",
        "LLM prompt + response logs",
        "Audit log",
    ):
        assert category in names
