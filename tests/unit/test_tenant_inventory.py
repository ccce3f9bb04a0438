"""The data inventory declaration and the migrations it describes (no I/O)."""

from __future__ import annotations

import re

from paitho_tenant import inventory, migrate, pages
from paitho_tenant.crypto import COLUMN_OPTIONS


def test_every_trust_page_category_is_rendered() -> None:
    """The trust page rows of TRUST.md's table come out of the inventory."""
    categories = {row["data_type"] for row in inventory.summary_rows()}
    for expected in (
        "Lead records",
        "Email message bodies (sent + received)",
        "LLM prompt + response logs",
        "Audit log (auth + admin actions)",
    ):
        assert expected in categories
    html = pages.trust_page()
    assert "Every byte, accounted for" in html and "stage_runs" in html


def test_personal_columns_are_declared_encrypted() -> None:
    """Lead PII, secrets, message bodies and prompts are declared as ciphertext."""
    enc = (inventory.ENCRYPTED, inventory.PERIOD_ENCRYPTED)
    assert set(inventory.BY_NAME["leads"].of_class(*enc)) == {"email", "profile"}
    assert inventory.BY_NAME["keychain"].of_class(*enc) == ["secret"]
    assert set(inventory.BY_NAME["messages"].of_class(*enc)) == {"headers", "body"}
    assert set(inventory.BY_NAME["stage_runs"].of_class(*enc)) == {"prompt", "response"}


def test_every_table_in_the_core_migration_is_declared() -> None:
    """Each CREATE TABLE of 0001 has an inventory entry (the functional test checks columns)."""
    sql = next(m for m in migrate.available() if m.version == 1).path.read_text()
    created = set(re.findall(r"CREATE TABLE (\w+)", sql))
    assert created <= set(inventory.BY_NAME)


def test_migrations_never_index_or_view_decrypted_values() -> None:
    """No migration builds an index, view or generated column on a decrypt expression."""
    for migration in migrate.available():
        text = migration.path.read_text().lower()
        assert "pgp_sym_decrypt" not in text, migration.path.name


def test_column_options_are_the_documented_ones() -> None:
    """Per-row encryption is AES-256 with the single-pass salted S2K (DESIGN.md point 1)."""
    assert COLUMN_OPTIONS == "cipher-algo=aes256, s2k-mode=1"
