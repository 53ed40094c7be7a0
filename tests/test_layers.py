"""The package's floors: the core imports nothing above it, and no library imports the demo or the test-model factory."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "annotaudit"
LIBRARIES = ("models", "annotate", "audit", "classifiers", "lvlm")


def _imports(path: Path, package: Path) -> set[str]:
    """Every annotaudit module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(path.relative_to(package.parent).with_suffix("").parts[: -node.level])
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("annotaudit")}


def _offenders(folders: tuple[str, ...], forbidden: tuple[str, ...], package: Path = PACKAGE) -> list[str]:
    bad = []
    for folder in folders:
        for path in sorted((package / folder).rglob("*.py")):
            for name in _imports(path, package):
                if any(name == f"annotaudit.{f}" or name.startswith(f"annotaudit.{f}.") for f in forbidden):
                    bad.append(f"{path.relative_to(package.parent)} imports {name}")
    return bad


def test_the_core_imports_nothing_above_it():
    assert _offenders(("core",), (*LIBRARIES, "cli", "demo", "testing")) == []


def test_no_library_imports_the_demo_the_test_models_or_the_cli():
    assert _offenders(LIBRARIES, ("demo", "testing", "cli")) == []


def test_the_checker_sees_relative_and_nested_imports(tmp_path):
    package = tmp_path / "annotaudit"
    (package / "core").mkdir(parents=True)
    (package / "core" / "probe.py").write_text("def f():\n    from ..demo import shapes\n    import annotaudit.cli.main\n")
    assert sorted(_offenders(("core",), ("demo", "cli"), package)) == [
        "annotaudit/core/probe.py imports annotaudit.cli.main", "annotaudit/core/probe.py imports annotaudit.demo"]
