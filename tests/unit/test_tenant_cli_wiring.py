"""paitho-tenant exposes the workflow subcommands next to the trust-core ones."""

from __future__ import annotations

from paitho_tenant import backup_cli
from paitho_tenant.cli import build_parser


def test_backup_subcommands_dispatch_to_backup_cli() -> None:
    """backup, restore, retention and export-bundle parse and run through backup_cli.run."""
    parser = build_parser()
    args = parser.parse_args(["backup", "--to", "file:///nas", "--recipient", "k.pem"])
    assert args.func is backup_cli.run and args.to == "file:///nas"
    for argv in (
        ["restore", "--from", "file:///x", "--private-key", "k", "--data-dir", "d"],
        ["retention", "--tenant", "acme"],
        ["export-bundle", "--from", "file:///x", "--image", "i", "--out", "o"],
    ):
        assert parser.parse_args(argv).func is backup_cli.run
