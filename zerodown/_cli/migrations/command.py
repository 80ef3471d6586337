"""``zerodown migrations check``: lint migrations for what breaks a deploy, for CI.

Exit 0 with no finding, 1 with one or more, 2 when the migrations could not be read.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..._json_output import words_stream, write_json
from ..postgres import ThrowawayPostgres, add_database_options
from .rules import Finding, Statement, lint
from .sources import SourceError, alembic_environment, django_apps, sql_file

DEFAULT_PG_VERSION = 15


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrations = commands.add_parser(
        "migrations", help="check database migrations for what breaks a running release"
    )
    actions = migrations.add_subparsers(dest="migrations_command", required=True)
    check = actions.add_parser(
        "check",
        help="lint migrations: locks that stall the app, changes the running release breaks on",
        description="Read each migration's SQL (a .sql file, Alembic's offline --sql output "
        "of an alembic.ini, or Django's sqlmigrate), parse it with PostgreSQL's own parser and "
        "report what would stall or break the release still serving during a deploy, with "
        "the safe expand-contract steps. Exit 0 clean, 1 on a finding, 2 when the migrations "
        "could not be read. Suppress one statement's rule with a comment `zerodown: allow "
        "RULE: REASON`; mark a contract step with `zerodown: contract`.",
    )
    check.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="a .sql file, a directory of them, or an alembic.ini (or its directory)",
    )
    check.add_argument(
        "--django",
        action="append",
        default=[],
        metavar="APP",
        help="a Django app's migrations, through sqlmigrate with your DJANGO_SETTINGS_MODULE",
    )
    add_database_options(
        check,
        throwaway="for --django: a throwaway PostgreSQL for sqlmigrate, as DATABASE_URL",
        yours="for --django: your database, as DATABASE_URL",
    )
    check.add_argument(
        "--since",
        metavar="REVISION",
        help="report only revisions after this one (those before still tell the linter the "
        "schema): the ones a branch adds",
    )
    check.add_argument(
        "--pg-version",
        type=float,
        help=f"the production server's major version (default: {DEFAULT_PG_VERSION})",
    )
    check.add_argument("--json", metavar="FILE", help="write the findings as JSON (- for stdout)")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not args.paths and not args.django:
        parser.error("migrations check: give a .sql file, an alembic.ini or --django APP")
    try:
        import pglast  # noqa: F401  (PostgreSQL's parser, which every rule reads)
    except ImportError:
        parser.error("migrations check needs pglast: pip install 'zerodown[migrations]'")
    version = args.pg_version if args.pg_version is not None else DEFAULT_PG_VERSION
    if not 9 <= version < 100:
        parser.error(
            f"migrations check: --pg-version {version:g}: expected a major version, e.g. 15"
        )
    try:
        statements = _statements(args)
    except SourceError as error:
        print(f"zerodown migrations check: {error}", file=sys.stderr)
        return 2
    findings = lint(statements, pg_version=int(version))
    if args.since is not None:
        later = _after(findings, statements, args.since)
        if later is None:
            parser.error(f"migrations check: --since {args.since}: no such revision")
        findings = later
    out = words_stream(args.json)
    print(render(findings, statements), file=out)
    if args.json is not None:
        write_json(
            {
                "pg_version": int(version),
                "statements": len(statements),
                "findings": [finding.as_json() for finding in findings],
            },
            args.json,
        )
    return 1 if findings else 0


def _statements(args: argparse.Namespace) -> list[Statement]:
    statements: list[Statement] = []
    for path in args.paths:
        if path.suffix == ".sql" and path.is_file():
            statements += sql_file(path)
        elif path.name == "alembic.ini" or (path / "alembic.ini").is_file():
            statements += alembic_environment(path)
        elif path.is_dir() and any(path.glob("*.sql")):
            for file in sorted(path.glob("*.sql")):
                statements += sql_file(file)
        else:
            raise SourceError(f"{path}: not a .sql file, a directory of them or an alembic.ini")
    if args.django:
        env = dict(os.environ)
        if args.database_url is not None:
            env["DATABASE_URL"] = args.database_url
        if args.database == "postgres":
            server = ThrowawayPostgres.start()
            try:
                statements += django_apps(args.django, {**env, "DATABASE_URL": server.database.url})
            finally:
                server.stop()
        else:
            statements += django_apps(args.django, env)
    return statements


def _after(
    findings: list[Finding], statements: list[Statement], since: str
) -> list[Finding] | None:
    """The findings of the revisions after ``since``, in the order they run."""
    order = list(dict.fromkeys(s.revision for s in statements if s.revision is not None))
    if since not in order:
        return None
    later = set(order[order.index(since) + 1 :])
    return [finding for finding in findings if finding.statement.revision in later]


def render(findings: list[Finding], statements: list[Statement]) -> str:
    lines = []
    for finding in findings:
        where = f"{finding.statement.path}:{finding.statement.line}"
        revision = f" (revision {finding.statement.revision})" if finding.statement.revision else ""
        lines += [f"{where}: {finding.rule}{revision}", f"  {_one_line(finding.statement.sql)}"]
        lines.append(f"  during a deploy: {finding.effect}")
        lines.append("  instead:")
        lines += [f"    {number}. {step}" for number, step in enumerate(finding.instead, 1)]
        lines.append("")
    files = len({s.path for s in statements})
    lines.append(
        f"{len(findings)} finding{'s' * (len(findings) != 1)} in {len(statements)} statements "
        f"of {files} file{'s' * (files != 1)}"
    )
    return "\n".join(lines)


def _one_line(sql: str, limit: int = 160) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
