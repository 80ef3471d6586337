"""The rules of ``zerodown migrations check``, on PostgreSQL's own parse tree (``pglast``).

Statements are read in the order they would run, through every revision, so the linter
knows what the migrations themselves created: a table made in the same run takes no lock
anybody waits on, a column's type before an ``ALTER ... TYPE`` is known when an earlier
revision created it, and ``SET NOT NULL`` is safe after a validated ``CHECK (c IS NOT NULL)``.
Rule names are squawk's where squawk has the rule, so findings can be compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pglast import ast, enums

AT = enums.AlterTableType
CONSTR = enums.ConstrType

#: Rules whose findings a contract step (marked as one) may have: it is meant to drop.
CONTRACT_RULES = frozenset({"ban-drop-column", "ban-drop-table"})
#: Functions whose value does not change row to row: a default of theirs is written once.
_STABLE_DEFAULTS = frozenset(
    {"now", "statement_timestamp", "transaction_timestamp", "current_date", "lower", "upper"}
)
#: A type change that keeps every stored value as it is: (from, to) base type names.
_BINARY_COERCIBLE = frozenset(
    {("varchar", "text"), ("text", "varchar"), ("bpchar", "text"), ("citext", "text")}
)
#: Integer widths, for "narrowed".
_INTEGER_BYTES = {"int2": 2, "int4": 4, "int8": 8}


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement of a migration, and where it came from."""

    sql: str
    #: The file a person edits: the revision, the Django migration or the .sql file.
    path: str
    line: int
    #: The revision or migration name, when the source has one.
    revision: str | None = None
    #: Marked as a contract step: it removes what the previous release no longer uses.
    contract: bool = False
    #: Rules suppressed for this statement, with the reason given.
    allowed: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    statement: Statement
    #: What it does during a deploy, in one sentence.
    effect: str
    #: The safe way, step by step.
    instead: tuple[str, ...]

    def as_json(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "path": self.statement.path,
            "line": self.statement.line,
            "revision": self.statement.revision,
            "statement": self.statement.sql,
            "effect": self.effect,
            "instead": list(self.instead),
        }


@dataclass(slots=True)
class _Schema:
    """What the statements so far made: tables the current file created, column types and
    checks from every file before it."""

    new_tables: set[str] = field(default_factory=set)
    types: dict[tuple[str, str], tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    #: Constraints ``CHECK (column IS NOT NULL)``: name -> (table, column).
    not_null_checks: dict[str, tuple[str, str]] = field(default_factory=dict)
    validated: set[tuple[str, str]] = field(default_factory=set)
    #: Columns known to be NOT NULL: dropping their default makes them required.
    required: set[tuple[str, str]] = field(default_factory=set)
    in_transaction: bool = False
    lock_timeout: bool = False
    #: Files already told to set lock_timeout: once a file, as squawk does.
    told_lock_timeout: set[str] = field(default_factory=set)


def lint(statements: Iterable[Statement], pg_version: int = 15) -> list[Finding]:
    """Every finding of every statement, those suppressed with a reason left out."""
    from pglast import parse_sql  # the parser's import is slow; only the linter needs it

    schema = _Schema()
    findings: list[Finding] = []
    path = None
    for statement in statements:
        if statement.path != path:
            # Only a table created by the same revision or file has no readers yet.
            schema.new_tables.clear()
            path = statement.path
        for raw in parse_sql(statement.sql):
            if raw.stmt is None:
                continue
            for rule, effect, instead in _check(raw.stmt, schema, pg_version):
                if statement.contract and rule in CONTRACT_RULES:
                    continue
                if rule == "require-lock-timeout":
                    if statement.path in schema.told_lock_timeout:
                        continue
                    schema.told_lock_timeout.add(statement.path)
                reasons = [reason for allowed, reason in statement.allowed if allowed == rule]
                if any(reasons):
                    continue
                if reasons:
                    instead += (f"`zerodown: allow {rule}` needs a reason after a colon",)
                findings.append(Finding(rule, statement, effect, instead))
    return findings


_Result = tuple[str, str, tuple[str, ...]]


def _check(node: ast.Node, schema: _Schema, pg_version: int) -> Iterator[_Result]:
    if isinstance(node, ast.TransactionStmt):
        kind = enums.TransactionStmtKind
        if node.kind in (kind.TRANS_STMT_BEGIN, kind.TRANS_STMT_START):
            schema.in_transaction = True
        elif node.kind in (
            kind.TRANS_STMT_COMMIT,
            kind.TRANS_STMT_ROLLBACK,
            kind.TRANS_STMT_PREPARE,
        ):
            schema.in_transaction = False
    elif isinstance(node, ast.VariableSetStmt) and node.name == "lock_timeout":
        turned_off = node.kind == enums.VariableSetKind.VAR_RESET or _set_value(node) in (
            "0",
            "default",
        )
        schema.lock_timeout = not turned_off
    elif isinstance(node, ast.CreateStmt):
        table = _relname(node.relation)
        schema.new_tables.add(table)
        for element in node.tableElts or ():
            if isinstance(element, ast.ColumnDef) and element.typeName is not None:
                schema.types[(table, str(element.colname))] = _type_of(element.typeName)
                if _not_null(element):
                    schema.required.add((table, str(element.colname)))
    elif isinstance(node, ast.IndexStmt):
        yield from _index(node, schema)
    elif isinstance(node, ast.AlterTableStmt) and node.objtype == enums.ObjectType.OBJECT_TABLE:
        table = _relname(node.relation)
        existing = table not in schema.new_tables
        cmds = [cmd for cmd in node.cmds or () if isinstance(cmd, ast.AlterTableCmd)]
        if (
            existing
            and not schema.lock_timeout
            and any(c.subtype != AT.AT_ValidateConstraint for c in cmds)
        ):
            yield _no_lock_timeout(table)
        for cmd in cmds:
            yield from _alter(table, cmd, schema, pg_version, existing)
    elif isinstance(node, ast.RenameStmt):
        yield from _rename(node)
    elif isinstance(node, ast.DropStmt) and node.removeType == enums.ObjectType.OBJECT_TABLE:
        for names in node.objects or ():
            table = _last_name(names)
            yield (
                "ban-drop-table",
                f"the running release's queries on `{table}` fail with 42P01 (undefined table) "
                "from the moment it commits",
                (
                    "release N+1 stops reading and writing the table",
                    "once no instance of release N is left, drop it in a contract step "
                    "(`# zerodown: contract` in the revision)",
                ),
            )


def _index(node: ast.IndexStmt, schema: _Schema) -> Iterator[_Result]:
    table = _relname(node.relation)
    if node.concurrent and schema.in_transaction:
        yield (
            "ban-concurrent-index-creation-in-transaction",
            f"PostgreSQL refuses to build `{table}`'s index CONCURRENTLY inside a transaction "
            "block: the migration fails (25001) and the deploy stops",
            (
                "run it outside the migration's transaction: in Alembic, "
                "`with op.get_context().autocommit_block():`; in Django, a migration with "
                "`atomic = False` and `AddIndexConcurrently`",
            ),
        )
    if not node.concurrent and table not in schema.new_tables:
        yield (
            "require-concurrent-index-creation",
            f"takes SHARE on `{table}` while the whole index is built: every insert, update "
            f"and delete of `{table}` waits until it is done",
            (
                f"CREATE INDEX CONCURRENTLY ... ON {table} (...) outside a transaction "
                "(Alembic: `op.create_index(..., postgresql_concurrently=True)` in an "
                "`autocommit_block()`)",
                "if it fails, it leaves an INVALID index: drop it (DROP INDEX CONCURRENTLY) "
                "and build it again; zerodown.migrations' retry does this",
            ),
        )
        if not schema.lock_timeout:
            yield _no_lock_timeout(table)


def _alter(
    table: str, cmd: ast.AlterTableCmd, schema: _Schema, pg_version: int, existing: bool
) -> Iterator[_Result]:
    column = str(cmd.name)
    if cmd.subtype == AT.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
        definition = cmd.def_
        kind = _type_of(definition.typeName) if definition.typeName is not None else ("", ())
        schema.types[(table, str(definition.colname))] = kind
        if _not_null(definition):
            schema.required.add((table, str(definition.colname)))
        constraints = {
            c.contype: c
            for c in definition.constraints or ()
            if isinstance(c, ast.Constraint) and c.contype is not None
        }
        if existing:
            yield from _added_column(
                table, str(definition.colname), kind[0], constraints, pg_version
            )
    elif cmd.subtype == AT.AT_DropColumn and existing:
        yield (
            "ban-drop-column",
            f"the running release's queries that name `{table}.{column}` fail with 42703 "
            "(undefined column) from the moment it commits, and its inserts lose the value",
            (
                f"release N+1 stops reading and writing `{column}`",
                "once no instance of release N is left, drop it in a contract step "
                "(`# zerodown: contract` in the revision, or `-- zerodown: contract` in SQL)",
            ),
        )
    elif cmd.subtype == AT.AT_AlterColumnType and isinstance(cmd.def_, ast.ColumnDef) and existing:
        yield from _type_change(table, column, cmd.def_, schema)
    elif (
        cmd.subtype == AT.AT_ColumnDefault
        and cmd.def_ is None
        and (table, column) in schema.required
    ):
        if existing:
            yield (
                "adding-required-field",
                f"drops the default of NOT NULL `{table}.{column}`: from then on every insert "
                "of the running release, which does not write it, fails with 23502",
                (
                    "keep the default while any release that leaves the column out serves "
                    "(Django: `db_default=`, or `preserve_default=True`)",
                    "drop it in a contract step, once every release writes the column",
                ),
            )
    elif cmd.subtype == AT.AT_SetNotNull and existing:
        schema.required.add((table, column))
        if (table, column) not in schema.validated or pg_version < 12:
            yield (
                "adding-not-nullable-field",
                f"scans all of `{table}` under ACCESS EXCLUSIVE (every query on it waits), and "
                f"from then on every insert of the running release that leaves `{column}` out "
                "fails with 23502 (not-null violation)",
                (
                    f"give `{column}` a default first, so that the running release's inserts "
                    "still get a value: ALTER TABLE ... ALTER COLUMN ... SET DEFAULT ...",
                    f"ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_not_null CHECK "
                    f"({column} IS NOT NULL) NOT VALID",
                    f"ALTER TABLE {table} VALIDATE CONSTRAINT {table}_{column}_not_null "
                    "(a SHARE UPDATE EXCLUSIVE scan: reads and writes go on)",
                    f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL (PostgreSQL 12+ "
                    "uses the check and skips the scan), then drop the check",
                ),
            )
    elif cmd.subtype == AT.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
        yield from _constraint(table, cmd.def_, schema, existing)
    elif cmd.subtype == AT.AT_ValidateConstraint and column in schema.not_null_checks:
        schema.validated.add(schema.not_null_checks[column])


def _added_column(
    table: str,
    column: str,
    kind: str,
    constraints: dict[enums.ConstrType, ast.Constraint],
    pg_version: int,
) -> Iterator[_Result]:
    default = constraints.get(CONSTR.CONSTR_DEFAULT)
    if kind in ("serial", "serial2", "serial4", "serial8", "bigserial", "smallserial") or (
        CONSTR.CONSTR_IDENTITY in constraints or CONSTR.CONSTR_GENERATED in constraints
    ):
        yield (
            "adding-serial-field",
            f"fills the new column in every row: rewrites all of `{table}` under ACCESS "
            "EXCLUSIVE, and every query on it waits for the rewrite",
            (
                "add the column without a default, nullable",
                "create the sequence and set the column's default to nextval() for new rows",
                "backfill existing rows in batches, then add the constraints the safe way",
            ),
        )
    elif default is not None and (pg_version < 11 or _volatile(default.raw_expr)):
        yield (
            "adding-field-with-default",
            f"a default computed per row rewrites all of `{table}` under ACCESS EXCLUSIVE: "
            "every query on it waits for the rewrite",
            (
                "add the column with no default (or a constant one), nullable",
                "set the default for new rows: ALTER COLUMN ... SET DEFAULT ...",
                "backfill existing rows in batches of a few thousand, each its own transaction",
            ),
        )
    if (
        CONSTR.CONSTR_NOTNULL in constraints
        and default is None
        and (
            CONSTR.CONSTR_IDENTITY not in constraints and CONSTR.CONSTR_GENERATED not in constraints
        )
    ):
        yield (
            "adding-required-field",
            f"fails outright on a `{table}` with rows, and on an empty one every insert of the "
            f"running release, which does not know `{column}`, fails with 23502",
            (
                f"add `{column}` nullable (or with a constant default)",
                "release N+1 writes it; backfill the old rows",
                "then make it NOT NULL through a validated CHECK (see adding-not-nullable-field)",
            ),
        )


def _type_change(
    table: str, column: str, definition: ast.ColumnDef, schema: _Schema
) -> Iterator[_Result]:
    before = schema.types.get((table, column))
    if definition.typeName is None:
        return
    after = _type_of(definition.typeName)
    schema.types[(table, column)] = after
    if before is not None and _widens(before, after):
        return
    yield (
        "changing-column-type",
        f"rewrites all of `{table}` (and its indexes) under ACCESS EXCLUSIVE: every query on "
        "it waits for the rewrite"
        + ("" if before is not None else "; the type before is not in these migrations"),
        (
            f"add a new column of the new type; release N+1 writes both `{column}` and it",
            "backfill the new column in batches",
            "a release that reads the new column; then drop the old one in a contract step",
        ),
    )
    if before is not None and _narrows(before, after):
        yield (
            "narrowing-column-type",
            f"the running release's writes of values that fit `{column}` before but not "
            "after fail (22001 or 22003)",
            (
                "validate the values first (a CHECK ... NOT VALID, then VALIDATE) and make the "
                "release that writes them refuse the longer ones before narrowing",
            ),
        )


def _constraint(
    table: str, constraint: ast.Constraint, schema: _Schema, existing: bool
) -> Iterator[_Result]:
    if constraint.contype == CONSTR.CONSTR_CHECK and constraint.conname:
        test = constraint.raw_expr
        if (
            isinstance(test, ast.NullTest)
            and test.nulltesttype == enums.NullTestType.IS_NOT_NULL
            and isinstance(test.arg, ast.ColumnRef)
        ):
            column = _last_name(test.arg.fields)
            schema.not_null_checks[constraint.conname] = (table, column)
            if not constraint.skip_validation:
                schema.validated.add((table, column))
    if not existing:
        return
    if (
        constraint.contype in (CONSTR.CONSTR_FOREIGN, CONSTR.CONSTR_CHECK)
        and not constraint.skip_validation
    ):
        what = "foreign key" if constraint.contype == CONSTR.CONSTR_FOREIGN else "check"
        yield (
            "constraint-missing-not-valid",
            f"validates the {what} over every row of `{table}` while holding its lock: writes "
            f"to `{table}`"
            + (" and to the table it references" if what == "foreign key" else "")
            + " wait until the scan is done",
            (
                "ADD CONSTRAINT ... NOT VALID (new rows are checked at once, no scan)",
                "ALTER TABLE ... VALIDATE CONSTRAINT ... in a later step: it scans under SHARE "
                "UPDATE EXCLUSIVE, so reads and writes go on",
            ),
        )
    if (
        constraint.contype in (CONSTR.CONSTR_UNIQUE, CONSTR.CONSTR_PRIMARY)
        and not constraint.indexname
    ):
        yield (
            "disallowed-unique-constraint",
            f"builds a unique index on `{table}` under ACCESS EXCLUSIVE: every query on it "
            "waits until the index is built",
            (
                "CREATE UNIQUE INDEX CONCURRENTLY ... outside a transaction",
                f"ALTER TABLE {table} ADD CONSTRAINT ... UNIQUE USING INDEX ... (instant)",
            ),
        )


def _rename(node: ast.RenameStmt) -> Iterator[_Result]:
    if node.renameType == enums.ObjectType.OBJECT_COLUMN and node.relation is not None:
        table = _relname(node.relation)
        yield (
            "renaming-column",
            f"the running release's queries that name `{table}.{node.subname}` fail with 42703 "
            "(undefined column) from the moment it commits",
            (
                f"expand: add `{node.newname}`; release N+1 writes both and reads `{node.subname}`",
                f"backfill `{node.newname}` from `{node.subname}` in batches",
                f"switch: a release that reads `{node.newname}` (and still writes both)",
                f"contract: a release that stops writing `{node.subname}`, then drop it in a "
                "contract step",
            ),
        )
    elif node.renameType == enums.ObjectType.OBJECT_TABLE and node.relation is not None:
        yield (
            "renaming-table",
            f"the running release's queries on `{node.relation.relname}` fail with 42P01 "
            "(undefined table) from the moment it commits",
            (
                f"create `{node.newname}` (or a view of that name over the old table), write "
                "both, backfill, switch reads, then drop the old one in a contract step",
            ),
        )


def _no_lock_timeout(table: str) -> _Result:
    return (
        "require-lock-timeout",
        f"waits for its lock on `{table}` behind any long transaction, and every query on "
        f"`{table}` queues behind the waiting migration: the app stalls until it gets it",
        (
            "SET lock_timeout first (a fraction of your --max-lock-wait, e.g. '500ms') and "
            "retry a lock timeout (55P03) with backoff: zerodown.migrations.run_migrations "
            "(Alembic's env.py) and migrate_django (Django) do both",
        ),
    )


def _set_value(node: ast.VariableSetStmt) -> str:
    for arg in node.args or ():
        if isinstance(arg, ast.A_Const) and arg.val is not None:
            value = arg.val
            return str(getattr(value, "sval", None) or getattr(value, "ival", "")).lower()
    return "default"


def _type_of(name: ast.TypeName) -> tuple[str, tuple[int, ...]]:
    base = _last_name(name.names)
    modifiers = tuple(
        int(m.val.ival or 0)
        for m in name.typmods or ()
        if isinstance(m, ast.A_Const) and isinstance(m.val, ast.Integer)
    )
    return base, modifiers


def _widens(before: tuple[str, tuple[int, ...]], after: tuple[str, tuple[int, ...]]) -> bool:
    """No rewrite: a longer or unbounded varchar, varchar to text, more numeric precision."""
    (old, old_mods), (new, new_mods) = before, after
    if (old, new) in _BINARY_COERCIBLE:
        return new != "varchar" or not new_mods
    if old == new and old in ("varchar", "bit", "varbit"):
        return not new_mods or (bool(old_mods) and new_mods[0] >= old_mods[0])
    if old == new == "numeric" and old_mods and new_mods and len(old_mods) == len(new_mods):
        return new_mods[0] >= old_mods[0] and new_mods[1:] == old_mods[1:]
    return False


def _narrows(before: tuple[str, tuple[int, ...]], after: tuple[str, tuple[int, ...]]) -> bool:
    (old, old_mods), (new, new_mods) = before, after
    if new in ("varchar", "bpchar") and new_mods:
        return old in ("text",) or (old == new and (not old_mods or new_mods[0] < old_mods[0]))
    if old in _INTEGER_BYTES and new in _INTEGER_BYTES:
        return _INTEGER_BYTES[new] < _INTEGER_BYTES[old]
    return False


def _volatile(expression: ast.Node | None) -> bool:
    """A default that PostgreSQL computes for each row, which forces a rewrite."""
    if isinstance(expression, ast.FuncCall):
        name = _last_name(expression.funcname)
        return name not in _STABLE_DEFAULTS or any(_volatile(arg) for arg in expression.args or ())
    if isinstance(expression, ast.TypeCast):
        return _volatile(expression.arg)
    return False


def _not_null(definition: ast.ColumnDef) -> bool:
    return any(
        isinstance(c, ast.Constraint)
        and c.contype in (CONSTR.CONSTR_NOTNULL, CONSTR.CONSTR_PRIMARY)
        for c in definition.constraints or ()
    )


def _relname(relation: ast.RangeVar | None) -> str:
    return "" if relation is None else str(relation.relname)


def _last_name(names: tuple[ast.Node, ...] | None) -> str:
    """The unqualified name of a dotted name list (``pg_catalog.int4`` -> ``int4``)."""
    return str(getattr(names[-1], "sval", "")) if names else ""
