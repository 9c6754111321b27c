"""The import order of the four packages: proxy < netfilter < containers < awf.

A module may import its own package and the packages below it, never one above: the standalone
awf-proxy must run without the CLI package, and containers/ must know nothing of the CLI. The
imports are read with `ast` (function-level imports included), so a lazy import upward fails too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ORDER = ("proxy", "netfilter", "containers", "awf")


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(ORDER)


def upward_imports(package: str) -> list[str]:
    rank = ORDER.index(package)
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for other in sorted(imported_packages(path)):
            if ORDER.index(other) > rank:
                bad.append(f"{path.relative_to(ROOT)} imports {other}")
    return bad


@pytest.mark.parametrize("package", ORDER)
def test_no_package_imports_upward(package: str) -> None:
    assert upward_imports(package) == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from awf.cli import main\n    import containers.driver\n")
    assert imported_packages(bad) == {"awf", "containers"}


def test_proxy_runs_without_the_other_packages() -> None:
    """`import proxy.main` (and every proxy module) with netfilter, containers and awf hidden."""
    code = f"""
import importlib, pkgutil, sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("awf", "netfilter", "containers"):
            raise ImportError(f"{{name}} is hidden")
        return None
sys.meta_path.insert(0, Hide())
sys.path.insert(0, {str(ROOT)!r})
import proxy, proxy.main
for mod in pkgutil.iter_modules(proxy.__path__):
    importlib.import_module("proxy." + mod.name)
print(proxy.__file__)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(ROOT / "proxy" / "__init__.py")
