"""Run by ``zerodown migrations check --django APP``, in a child Python with the user's
``DJANGO_SETTINGS_MODULE``: every migration of the apps in the order they apply, each
operation's SQL as ``sqlmigrate`` makes it, with the line of that operation in the file.

Prints a JSON list of ``{app, name, path, statements: [[sql, line], ...]}``.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
from collections.abc import Sequence


def main(apps: Sequence[str]) -> int:
    import django
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    django.setup()
    # From the files alone: what is applied does not change the SQL of a migration.
    loader = MigrationLoader(None, ignore_no_migrations=True)
    missing = [app for app in apps if app not in loader.migrated_apps]
    if missing:
        print(f"no migrations for {', '.join(missing)} in this project", file=sys.stderr)
        return 1
    wanted = set(apps)
    plan = [key for key in loader.graph.leaf_nodes() if key[0] in wanted]
    ordered = []
    for leaf in plan:
        for key in loader.graph.forwards_plan(leaf):
            if key[0] in wanted and key not in ordered:
                ordered.append(key)
    migrations = []
    for key in ordered:
        migration = loader.graph.nodes[key]
        path = inspect.getsourcefile(type(migration)) or ""
        lines = _operation_lines(path)
        state = loader.project_state(key, at_end=False)
        statements: list[tuple[str, int]] = []
        atomic = migration.atomic and connection.features.can_rollback_ddl
        if atomic:
            statements.append(("BEGIN", 0))
        for index, operation in enumerate(migration.operations):
            with connection.schema_editor(collect_sql=True, atomic=False) as editor:
                before = state.clone()
                operation.state_forwards(migration.app_label, state)
                operation.database_forwards(migration.app_label, editor, before, state)
            line = lines[index] if index < len(lines) else 0
            statements += [(sql, line) for sql in editor.collected_sql]
        if atomic:
            statements.append(("COMMIT", 0))
        migrations.append({"app": key[0], "name": key[1], "path": path, "statements": statements})
    json.dump(migrations, sys.stdout)
    return 0


def _operation_lines(path: str) -> list[int]:
    """The line of each element of the ``operations`` list of a migration file."""
    with open(path) as file:
        tree = ast.parse(file.read())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "operations" for t in node.targets)
            and isinstance(node.value, ast.List)
        ):
            return [element.lineno for element in node.value.elts]
    return []


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as error:  # the user's settings and migrations run here
        first = (str(error).strip().splitlines() or [""])[0]
        print(f"{type(error).__name__}: {first}", file=sys.stderr)
        sys.exit(1)
