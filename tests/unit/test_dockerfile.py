"""The tenant image's Dockerfile copies files that exist, from the repository root context."""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "tenant_image" / "Dockerfile"


def test_every_copy_source_exists() -> None:
    """No COPY names a path missing from the build context (the repository root)."""
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            sources += shlex.split(line)[1:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source


def test_copied_chalicelib_modules_import_nothing_else_of_chalicelib() -> None:
    """The modules the image ships from chalicelib depend only on each other."""
    shipped = {
        "chalicelib",
        "chalicelib.errors",
        "chalicelib.launchers",
        "chalicelib.launchers.pgcluster",
    }
    for module in ("chalicelib/errors.py", "chalicelib/launchers/pgcluster.py"):
        tree = ast.parse((ROOT / module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("chalicelib"):
                assert node.module in shipped, f"{module} imports {node.module}"
