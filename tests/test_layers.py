"""The package's floors: the core imports nothing above it, each package imports only the siblings its row
of ALLOWED names, and no library imports the demo, the test-model factory or the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "annotaudit"
LIBRARIES = ("models", "annotate", "audit", "classifiers", "lvlm", "compare")

# Which sibling packages each package may import (at the top or inside a function); docs/architecture.md draws the floors.
ALLOWED = {
    "core": set(),
    "models": {"core"},
    "annotate": {"core", "models"},
    "lvlm": {"core", "models"},
    "audit": {"core", "models", "annotate"},
    "classifiers": {"core", "models", "annotate"},
    "compare": {"core", "annotate", "audit", "classifiers", "lvlm"},
    "testing": {"core", "models"},
    "demo": {"core", "models", "annotate", "audit", "classifiers", "lvlm", "compare", "testing"},
    "cli": {"core", "models", "annotate", "audit", "classifiers", "lvlm", "compare", "demo"},
}


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


def _siblings(folder: str, package: Path = PACKAGE) -> dict[str, set[str]]:
    """The sibling packages a package imports, each with the files that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted((package / folder).rglob("*.py")):
        for name in _imports(path, package):
            parts = name.split(".")
            if len(parts) > 1 and parts[1] != folder:
                found.setdefault(parts[1], set()).add(str(path.relative_to(package.parent)))
    return found


def test_every_package_is_in_the_table():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(ALLOWED)


def test_each_package_imports_only_the_siblings_its_row_allows():
    bad = {f"{folder} imports {sibling} ({', '.join(sorted(files))})"
           for folder, allowed in ALLOWED.items() for sibling, files in _siblings(folder).items() if sibling not in allowed}
    assert sorted(bad) == []


def test_the_core_imports_nothing_above_it():
    assert _offenders(("core",), (*LIBRARIES, "cli", "demo", "testing")) == []


def test_no_library_imports_the_demo_the_test_models_or_the_cli():
    assert _offenders(LIBRARIES, ("demo", "testing", "cli")) == []


def test_compare_reads_runs_without_training_or_serving_models():
    """compare reads every kind of run folder from its records: nothing that loads, trains or serves a model."""
    assert _offenders(("compare",), ("models", "lvlm.train", "lvlm.build", "lvlm.data", "classifiers.train", "classifiers.mmbt")) == []


def test_the_checker_sees_relative_and_nested_imports(tmp_path):
    package = tmp_path / "annotaudit"
    (package / "core").mkdir(parents=True)
    (package / "core" / "probe.py").write_text("def f():\n    from ..demo import shapes\n    import annotaudit.cli.main\n")
    assert sorted(_offenders(("core",), ("demo", "cli"), package)) == [
        "annotaudit/core/probe.py imports annotaudit.cli.main", "annotaudit/core/probe.py imports annotaudit.demo"]
    assert _siblings("core", package) == {"cli": {"annotaudit/core/probe.py"}, "demo": {"annotaudit/core/probe.py"}}
