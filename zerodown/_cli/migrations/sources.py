"""Where a migration's SQL comes from: plain ``.sql`` files, Alembic's offline ``--sql``
mode, Django's ``sqlmigrate``; each statement attributed to the file a person edits.

Markers, in a comment (``--`` in SQL, ``#`` in Python) on the statement's line or the lines
just above it:

- ``zerodown: allow RULE: REASON`` suppresses RULE for that statement; the reason is
  required, so a review can judge it.
- ``zerodown: contract`` starting a comment or docstring line marks the file a contract
  step, allowed to drop what the previous release no longer uses.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from .rules import Statement

MARKER = "zerodown:"


class SourceError(Exception):
    """The migrations could not be read; the message says why and what to do."""


def sql_file(path: Path) -> list[Statement]:
    """The statements of a ``.sql`` file, each with its line and the comments above it."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    text = path.read_text()
    try:
        raws = parse_sql(text)
    except ParseError as error:
        raise SourceError(f"{path}: PostgreSQL cannot parse it: {error}") from None
    contract = _is_contract(text)
    statements = []
    previous_end = 0
    for raw in raws:
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(text)
        line = text.count("\n", 0, start) + 1
        comments = text[previous_end:start].splitlines()
        statements.append(
            Statement(
                sql=text[start:end].strip(),
                path=str(path),
                line=line,
                contract=contract,
                allowed=_allowed(comments, "--"),
            )
        )
        previous_end = end
    return statements


def alembic_environment(config_path: Path) -> list[Statement]:
    """Every revision's SQL from base to head, through Alembic's own offline ``--sql`` mode.

    Each statement is attributed to the line of the revision that emitted it, found in the
    call stack when Alembic writes it out; statements of ``env.py`` (a ``SET``, the version
    table) belong to no revision.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.ddl.impl import DefaultImpl
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    ini = config_path / "alembic.ini" if config_path.is_dir() else config_path
    if not ini.is_file():
        raise SourceError(f"{config_path}: no alembic.ini here; give the file or its directory")
    config = Config(str(ini), output_buffer=io.StringIO())
    try:
        script = ScriptDirectory.from_config(config)
        revisions = {
            os.path.realpath(revision.path): revision.revision
            for revision in script.walk_revisions()
            if revision.path
        }
    except CommandError as error:
        raise SourceError(f"{ini}: {error}") from None
    emitted: list[tuple[str, str | None, int]] = []
    original = DefaultImpl.static_output

    def capture(impl: DefaultImpl, text: str) -> None:
        emitted.append((text, *_revision_frame(revisions)))

    DefaultImpl.static_output = capture  # type: ignore[method-assign,assignment]
    try:
        # As `alembic -c FILE upgrade head --sql` from here: script_location is relative to
        # the current directory unless it uses %(here)s.
        command.upgrade(config, "head", sql=True)
    except CommandError as error:
        raise SourceError(f"{ini}: alembic upgrade head --sql failed: {error}") from None
    except Exception as error:  # the user's env.py and revisions run here
        raise SourceError(
            f"{ini}: alembic upgrade head --sql failed in your env.py or a revision: "
            f"{type(error).__name__}: {error} (does env.py handle offline mode, "
            "context.is_offline_mode()?)"
        ) from None
    finally:
        DefaultImpl.static_output = original  # type: ignore[method-assign]
    sources = {path: Path(path).read_text().splitlines() for path in revisions}
    statements = []
    for text, path, line in emitted:
        sql = text.strip()
        if not sql or sql.startswith("--"):
            continue
        if path is None:
            statements.append(Statement(sql=sql, path=str(ini.parent / "env.py"), line=0))
            continue
        lines = sources[path]
        statements.append(
            Statement(
                sql=sql,
                path=os.path.relpath(path),
                line=line,
                revision=revisions[path],
                contract=_is_contract("\n".join(lines)),
                allowed=_allowed(_comments_above(lines, line), "#"),
            )
        )
    return statements


def django_apps(apps: Sequence[str], env: dict[str, str]) -> list[Statement]:
    """Each migration of the apps, as ``sqlmigrate`` prints it, operation by operation.

    Runs in a child Python with the user's ``DJANGO_SETTINGS_MODULE``: Django's settings
    are process-wide, and its loader needs the database to tell what is applied.
    """
    completed = subprocess.run(
        [sys.executable, "-m", "zerodown._cli.migrations.django_sql", *apps],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if completed.returncode != 0:
        raise SourceError(
            "Django's migrations could not be read: "
            f"{completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else ''} "
            "(is DJANGO_SETTINGS_MODULE set? Django's PostgreSQL backend needs a database to "
            "write SQL: give --database postgres, a throwaway one, if your settings read "
            "DATABASE_URL, or --database-url)"
        )
    statements = []
    for migration in json.loads(completed.stdout):
        lines = Path(migration["path"]).read_text().splitlines()
        contract = _is_contract("\n".join(lines))
        for sql, line in migration["statements"]:
            statements.append(
                Statement(
                    sql=sql,
                    path=os.path.relpath(migration["path"]),
                    line=line,
                    revision=f"{migration['app']}.{migration['name']}",
                    contract=contract,
                    allowed=_allowed(_comments_above(lines, line), "#"),
                )
            )
    return statements


def _revision_frame(revisions: dict[str, str]) -> tuple[str | None, int]:
    """The revision file and line in the current call stack, if a revision is running."""
    frame = inspect.currentframe()
    while frame is not None:
        path = os.path.realpath(frame.f_code.co_filename)
        if path in revisions:
            return path, frame.f_lineno
        frame = frame.f_back
    return None, 0


def _comments_above(lines: list[str], line: int) -> list[str]:
    """The statement's own line and the comment lines just above it (1-based ``line``)."""
    picked = [lines[line - 1]] if 0 < line <= len(lines) else []
    index = line - 2
    while 0 <= index < len(lines) and lines[index].strip().startswith("#"):
        picked.append(lines[index])
        index -= 1
    return picked


def _markers(lines: Sequence[str], comment: str) -> Iterator[str]:
    for text in lines:
        _, found, rest = text.partition(comment)
        while found:
            body = rest.strip()
            if body.startswith(MARKER):
                yield body[len(MARKER) :].strip()
            _, found, rest = rest.partition(comment)


def _is_contract(text: str) -> bool:
    """``zerodown: contract`` at the start of a comment or docstring line of the file."""
    return any(
        line.strip().lstrip("#-").strip().startswith(MARKER + " contract")
        for line in text.splitlines()
    )


def _allowed(lines: Sequence[str], comment: str) -> tuple[tuple[str, str], ...]:
    """``allow RULE: REASON`` markers; one without a reason allows nothing."""
    allowed = []
    for marker in _markers(lines, comment):
        verb, _, rest = marker.partition(" ")
        rule, colon, reason = rest.partition(":")
        if verb == "allow" and rule.strip():
            allowed.append((rule.strip(), reason.strip() if colon else ""))
    return tuple(allowed)
