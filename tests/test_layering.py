"""The package layering: no back-edges into the gateway, a contract that depends on nothing.

``contract`` is the bottom layer; ``edge``, ``simulators`` and ``dataflows`` build on
it and run without the gateway (an edge-only install has no ``gateway`` package);
``gateway`` may import all of them. Imports are read with :mod:`ast`, so an import
hidden in a function or behind ``except ImportError`` counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("contract", "dataflows", "edge", "gateway", "simulators")


def imported_packages(package: str) -> dict[str, set[str]]:
    """Map each module file of ``package`` to the project packages it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        top = {name.split(".")[0] for name in names} & set(PROJECT)
        found[str(path.relative_to(ROOT))] = top
    return found


@pytest.mark.parametrize("package", ["edge", "simulators", "contract", "dataflows"])
def test_never_imports_the_gateway(package: str) -> None:
    modules = imported_packages(package)
    assert modules, f"no modules found under {package}/"
    offenders = sorted(path for path, top in modules.items() if "gateway" in top)
    assert offenders == [], f"{package} must not import gateway: {offenders}"


def test_contract_imports_nothing_of_the_project() -> None:
    offenders = {
        path: sorted(top - {"contract"})
        for path, top in imported_packages("contract").items()
        if top - {"contract"}
    }
    assert offenders == {}, f"contract imports other project packages: {offenders}"
