"""The layout keeps its promise: the runtime library never imports the tooling.

The runtime is every module of the package outside ``zerodown/_cli`` (what apps import on
every request); the tooling is ``zerodown/_cli`` (what a person runs from a shell). Imports
go one way: the tooling may use the runtime, never the reverse.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "zerodown"
TOOLING = "zerodown._cli"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved, lazy ones included."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def test_no_runtime_module_imports_the_tooling() -> None:
    runtime = [path for path in PACKAGE.rglob("*.py") if "_cli" not in path.parts]
    assert len(runtime) > 20
    offenders = {
        module_name(path): sorted(
            name for name in imported_modules(path) if name.startswith(TOOLING)
        )
        for path in runtime
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_tooling_is_one_sub_package() -> None:
    tooling = {module_name(path) for path in (PACKAGE / "_cli").rglob("*.py")}
    assert {"zerodown._cli.main", "zerodown._cli.rehearse.run"} <= tooling
    # Nothing of the tooling is left beside the runtime modules.
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert not top & {"_rehearsal", "_fleet", "_haproxy", "_load", "_procs", "_wait_ready"}
