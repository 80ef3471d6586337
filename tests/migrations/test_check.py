"""``zerodown migrations check``: the rules on PostgreSQL's parse tree, compared with
squawk's verdicts, and the notes example's cases read through Alembic's offline mode."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bed import REPO
from zerodown._cli.main import main
from zerodown._cli.migrations.rules import Statement, lint

CASES = REPO / "examples" / "notes" / "cases"
#: One statement a line, on an existing table ``notes`` (and ``users``), with the rules
#: zerodown finds. Line 1 sets nothing: every DDL line also lacks lock_timeout, which is
#: said once per file (on line 3 here).
CORPUS = {
    "CREATE TABLE fresh (id int)": set(),
    "CREATE INDEX fresh_id ON fresh (id)": set(),
    "CREATE INDEX notes_text ON notes (text)": {
        "require-concurrent-index-creation",
        "require-lock-timeout",
    },
    "CREATE INDEX CONCURRENTLY notes_text2 ON notes (text)": set(),
    "ALTER TABLE notes RENAME COLUMN text TO body": {"renaming-column"},
    "ALTER TABLE notes RENAME TO posts": {"renaming-table"},
    "ALTER TABLE notes ADD COLUMN b int NOT NULL": {"adding-required-field"},
    "ALTER TABLE notes ADD COLUMN c uuid DEFAULT gen_random_uuid()": {"adding-field-with-default"},
    "ALTER TABLE notes ADD COLUMN d int DEFAULT 0": set(),
    "ALTER TABLE notes ADD COLUMN e serial": {"adding-serial-field"},
    "ALTER TABLE notes ALTER COLUMN text SET NOT NULL": {"adding-not-nullable-field"},
    "ALTER TABLE notes ADD CONSTRAINT f FOREIGN KEY (b) REFERENCES users (id)": {
        "constraint-missing-not-valid"
    },
    "ALTER TABLE notes ADD CONSTRAINT g FOREIGN KEY (b) REFERENCES users (id) NOT VALID": set(),
    "ALTER TABLE notes ADD CONSTRAINT h CHECK (d > 0)": {"constraint-missing-not-valid"},
    "ALTER TABLE notes ADD CONSTRAINT u UNIQUE (b)": {"disallowed-unique-constraint"},
    "ALTER TABLE notes ADD CONSTRAINT u2 UNIQUE USING INDEX notes_text2": set(),
    "ALTER TABLE notes ALTER COLUMN text TYPE varchar(10)": {"changing-column-type"},
    "ALTER TABLE notes DROP COLUMN text": {"ban-drop-column"},
    "DROP TABLE users": {"ban-drop-table"},
    "BEGIN": set(),
    "CREATE INDEX CONCURRENTLY notes_d ON notes (d)": {
        "ban-concurrent-index-creation-in-transaction"
    },
    "COMMIT": set(),
}
#: Where zerodown and squawk differ on a rule both have, and why (docs/migrations.md).
DIFFERENCES = {
    # A table created in the same file has no reader yet: nothing waits on its lock.
    ("require-concurrent-index-creation", "CREATE INDEX fresh_id ON fresh (id)"): "squawk",
    # squawk says constraint-missing-not-valid for UNIQUE, where NOT VALID does not exist;
    # zerodown says disallowed-unique-constraint only.
    ("constraint-missing-not-valid", "ALTER TABLE notes ADD CONSTRAINT u UNIQUE (b)"): "squawk",
}


def findings_by_line(sql: str, pg_version: int = 15) -> dict[int, set[str]]:
    statements = [
        Statement(sql=line, path="corpus.sql", line=number)
        for number, line in enumerate(sql.splitlines(), 1)
    ]
    found: dict[int, set[str]] = {}
    for finding in lint(statements, pg_version=pg_version):
        found.setdefault(finding.statement.line, set()).add(finding.rule)
    return found


def test_each_rule_finds_what_its_statement_does() -> None:
    found = findings_by_line("\n".join(CORPUS))
    for number, (sql, expected) in enumerate(CORPUS.items(), 1):
        assert found.get(number, set()) == expected, sql


def test_every_finding_says_what_it_does_during_a_deploy_and_the_safe_steps() -> None:
    statements = [Statement(sql=sql, path="c.sql", line=1) for sql in CORPUS]
    for finding in lint(statements):
        assert finding.effect, finding.rule
        assert finding.instead, finding.rule
        assert "`" in finding.effect, f"{finding.rule} names the table: {finding.effect}"


@pytest.mark.servers  # squawk is a process
def test_the_rules_agree_with_squawk_where_squawk_has_them(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.sql"
    corpus.write_text(";\n".join(CORPUS) + ";\n")
    squawk = Path(sys.executable).with_name("squawk")
    done = subprocess.run(
        [str(squawk), "--reporter", "json", str(corpus)], capture_output=True, text=True
    )
    squawks: dict[int, set[str]] = {}
    for item in json.loads(done.stdout):
        squawks.setdefault(item["line"] + 1, set()).add(item["rule_name"])
    ours = findings_by_line("\n".join(CORPUS))
    shared = {rule for rules in CORPUS.values() for rule in rules} - {"adding-serial-field"}
    for number, sql in enumerate(CORPUS, 1):
        for rule in shared - {"require-lock-timeout"}:
            theirs, mine = rule in squawks.get(number, set()), rule in ours.get(number, set())
            if (rule, sql) in DIFFERENCES:
                assert (theirs, mine) == (True, False), (rule, sql)
            else:
                assert theirs == mine, (rule, sql, squawks.get(number))


def test_lock_timeout_set_first_and_a_widened_varchar_pass() -> None:
    sql = "\n".join(
        [
            "SET lock_timeout = '500ms'",
            "CREATE TABLE t (name varchar(20))",
            "ALTER TABLE notes ADD COLUMN d int DEFAULT 0",
        ]
    )
    assert findings_by_line(sql) == {}
    # The type before is in the history: longer is no rewrite, shorter is, and breaks writes.
    history = [
        Statement("CREATE TABLE t (name varchar(20))", "0001.py", 1, "0001"),
        Statement("SET lock_timeout = '1s'", "0002.py", 1, "0002"),
        Statement("ALTER TABLE t ALTER COLUMN name TYPE varchar(40)", "0002.py", 2, "0002"),
        Statement("ALTER TABLE t ALTER COLUMN name TYPE varchar(10)", "0002.py", 3, "0002"),
    ]
    assert [f.rule for f in lint(history)] == ["changing-column-type", "narrowing-column-type"]


def test_postgres_10_rewrites_for_any_default_and_a_validated_check_makes_not_null_safe() -> None:
    assert findings_by_line("ALTER TABLE notes ADD COLUMN d int DEFAULT 0", pg_version=10) == {
        1: {"adding-field-with-default", "require-lock-timeout"}
    }
    safe = "\n".join(
        [
            "SET lock_timeout = '1s'",
            "ALTER TABLE notes ADD CONSTRAINT body_nn CHECK (body IS NOT NULL) NOT VALID",
            "ALTER TABLE notes VALIDATE CONSTRAINT body_nn",
            "ALTER TABLE notes ALTER COLUMN body SET NOT NULL",
        ]
    )
    assert findings_by_line(safe) == {}
    assert findings_by_line(safe, pg_version=11) == {4: {"adding-not-nullable-field"}}


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def zerodown(capsys: pytest.CaptureFixture[str]) -> Callable[..., Done]:
    """``zerodown ARGS`` in this process, from the repository: its status and output."""

    def run(*args: str) -> Done:
        try:
            status = main(list(args))
        except SystemExit as exit:
            status = int(exit.code or 0)
        out, err = capsys.readouterr()
        return Done(status, out, err)

    return run


def test_a_suppression_needs_a_reason_and_a_contract_step_may_drop(
    tmp_path: Path, zerodown: Callable[..., Done]
) -> None:
    migration = tmp_path / "0003.sql"
    migration.write_text(
        "SET lock_timeout = '1s';\n"
        "-- zerodown: allow renaming-column: nothing reads notes.text since release 41\n"
        "ALTER TABLE notes RENAME COLUMN text TO old_text;\n"
        "-- zerodown: allow renaming-table\n"
        "ALTER TABLE notes RENAME TO posts;\n"
        "ALTER TABLE posts DROP COLUMN old_text;\n"
    )
    done = zerodown("migrations", "check", str(migration), "--json", "-")
    assert done.returncode == 1, done.stderr
    findings = json.loads(done.stdout)["findings"]
    assert [(f["rule"], f["line"]) for f in findings] == [
        ("renaming-table", 5),
        ("ban-drop-column", 6),
    ]
    assert "needs a reason" in findings[0]["instead"][-1]
    migration.write_text(
        "-- zerodown: contract\nSET lock_timeout = 500;\nALTER TABLE notes DROP COLUMN text;\n"
    )
    assert zerodown("migrations", "check", str(migration)).returncode == 0


@pytest.mark.parametrize(
    ("case", "rule", "line"),
    [
        ("rename", "renaming-column", 18),
        ("expand", None, None),
        ("switch", None, None),
        ("contract", None, None),
        ("drop_text", None, None),
        ("index", "require-concurrent-index-creation", 18),
        ("index_concurrently", None, None),
        ("not_null", "adding-not-nullable-field", 22),
    ],
)
def test_the_notes_cases_through_alembic_offline_sql(
    case: str, rule: str | None, line: int | None, zerodown: Callable[..., Done]
) -> None:
    done = zerodown(
        "migrations", "check", str(CASES / case / "alembic.ini"), "--since", "0001", "--json", "-"
    )
    findings = json.loads(done.stdout)["findings"]
    assert done.returncode == (1 if rule else 0), done.stderr
    if rule is not None:
        (finding,) = findings
        revision = next((CASES / case).glob("0*.py"))
        assert (finding["rule"], finding["line"]) == (rule, line)
        assert Path(REPO / finding["path"]) == revision
        # The line is the op call's in the revision file.
        assert "op." in revision.read_text().splitlines()[line - 1]


def test_unreadable_migrations_exit_2_and_say_why(
    tmp_path: Path, zerodown: Callable[..., Done]
) -> None:
    broken = tmp_path / "broken.sql"
    broken.write_text("ALTER TABLE notes ADD COLUMN;\n")
    done = zerodown("migrations", "check", str(broken))
    assert done.returncode == 2
    assert "cannot parse" in done.stderr
    done = zerodown("migrations", "check", str(CASES / "rename"), "--since", "nope")
    assert done.returncode == 2
    assert "no such revision" in done.stderr


def test_a_savepoint_stays_in_the_transaction_and_reset_undoes_the_lock_timeout() -> None:
    sql = "BEGIN\nSAVEPOINT s\nCREATE INDEX CONCURRENTLY a ON notes (text)\nCOMMIT"
    assert findings_by_line(sql) == {3: {"ban-concurrent-index-creation-in-transaction"}}
    sql = "SET lock_timeout = '1s'\nRESET lock_timeout\nALTER TABLE notes ADD COLUMN x int"
    assert findings_by_line(sql) == {3: {"require-lock-timeout"}}
    sql = "SET lock_timeout TO DEFAULT\nALTER TABLE notes ADD COLUMN x int"
    assert findings_by_line(sql) == {2: {"require-lock-timeout"}}
