"""The import order of the four packages: proxy < netfilter < containers < awf, and no import
cycle among proxy/'s own modules.

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


# -- no import cycle inside proxy/ -----------------------------------------------------------


def module_level_imports(path: Path, package: str) -> set[str]:
    """The `package` modules that `path` imports when it is loaded: every import statement
    outside function bodies, including those under `if TYPE_CHECKING:` (none is excluded: a
    cycle that only type checkers follow is still two modules that describe each other)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:  # class and module bodies, not functions
        for node in nodes:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.split(".")[0] == package)
            elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                  and node.module.split(".")[0] == package):
                found.add(node.module)
                # `from proxy import tunnel` imports the submodule proxy.tunnel
                found.update(f"{node.module}.{a.name}" for a in node.names)
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    visit([n for n in inner if isinstance(n, ast.stmt)])
                    for handler in inner:  # try: ... except ...: (their bodies)
                        if isinstance(handler, ast.ExceptHandler):
                            visit(handler.body)

    visit(tree.body)
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    modules = {
        ".".join((package, *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"):
        p for p in sorted(root.rglob("*.py"))
    }
    return {name: module_level_imports(path, package) & modules.keys() - {name}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(found)


def test_proxy_modules_form_no_import_cycle() -> None:
    assert cycles(import_graph(ROOT / "proxy", "proxy")) == []


def test_the_check_sees_an_import_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import x\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from pkg import c\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("def f():\n    import pkg.a\n")  # lazy: not module level
    (pkg / "e.py").write_text("from pkg import d\n")
    graph = import_graph(pkg, "pkg")
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert graph["pkg.d"] == set()
