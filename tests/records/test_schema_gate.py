"""`zerodown schema lock|check`: each breaking change is caught, each safe one passes."""

import enum
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from zerodown._records.schema import check_schemas, lock_schemas
from zerodown.codec import Record, Registry

BASE: dict[str, tuple[Any, Any]] = {
    "owner": (str, msgspec.NODEFAULT),
    "items": (list[str], msgspec.field(default_factory=list)),
    "note": (str, ""),
    "kind": ("Kind", "a"),
}


def registry_for(
    version: int, fields: dict[str, tuple[Any, Any]], kinds: tuple[str, ...] = ("a", "b")
) -> Registry:
    kind = enum.Enum("Kind", {value.upper(): value for value in kinds})  # type: ignore[misc]
    spec = []
    for name, (annotation, default) in fields.items():
        resolved = kind if annotation == "Kind" else annotation
        value = (
            kind(default) if annotation == "Kind" and default is not msgspec.NODEFAULT else default
        )
        spec.append((name, resolved) if value is msgspec.NODEFAULT else (name, resolved, value))
    cart = msgspec.defstruct("Cart", spec, bases=(Record,), kw_only=True)
    registry = Registry()
    registry.record("cart", version=version)(cart)
    return registry


def problems_after(lock: Path, registry: Registry) -> list[str]:
    return [str(problem) for problem in check_schemas(registry, lock)]


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "zerodown-schema.lock.json"
    lock_schemas(registry_for(1, BASE), path)
    return path


def without(name: str) -> dict[str, tuple[Any, Any]]:
    return {k: v for k, v in BASE.items() if k != name}


@pytest.mark.parametrize(
    ("change", "code", "says"),
    [
        (
            "removed field without default",
            registry_for(2, without("owner")),
            "Cart.owner: removed, but it had no default",
        ),
        (
            "new required field",
            registry_for(2, {**BASE, "user": (int, msgspec.NODEFAULT)}),
            "Cart.user: new and required",
        ),
        (
            "changed type",
            registry_for(2, {**BASE, "note": (int, 0)}),
            "Cart.note: type changed from str to int",
        ),
        (
            "changed default",
            registry_for(2, {**BASE, "note": (str, "x")}),
            'Cart.note: default changed from "" to "x"',
        ),
        (
            "removed enum value",
            registry_for(2, BASE, kinds=("a",)),
            "enum Kind: removed values ['b']",
        ),
        (
            "no version bump",
            registry_for(1, {**BASE, "extra": (int, 0)}),
            "shape change without a version bump",
        ),
    ],
)
def test_breaking_changes_are_caught(lock: Path, change: str, code: Registry, says: str) -> None:
    found = problems_after(lock, code)
    assert any(says in problem for problem in found), (change, found)


@pytest.mark.parametrize(
    "code",
    [
        registry_for(1, BASE),
        registry_for(2, BASE),
        registry_for(2, {**BASE, "coupon": (str | None, None)}),
        registry_for(2, without("note")),
        registry_for(2, BASE, kinds=("a", "b", "c")),
    ],
    ids=[
        "unchanged",
        "bump only",
        "added with default",
        "removed with default",
        "added enum value",
    ],
)
def test_safe_changes_pass(lock: Path, code: Registry) -> None:
    assert problems_after(lock, code) == []


def test_a_reused_removed_name_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "lock.json"
    lock_schemas(registry_for(1, {**BASE, "legacy": (str, "")}), path)
    lock_schemas(registry_for(2, BASE), path)
    found = problems_after(path, registry_for(3, {**BASE, "legacy": (int, 0)}))
    assert any(
        "Cart.legacy: reuses the name of a field removed after version 1" in p for p in found
    )


def test_the_window_is_transitive_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "lock.json"
    lock_schemas(registry_for(1, BASE), path)
    lock_schemas(registry_for(2, {**BASE, "note": (str, "")}), path)
    changed_type = registry_for(
        3, {**BASE, "items": (list[int], msgspec.field(default_factory=list))}
    )
    assert len(check_schemas(changed_type, path, window=2)) == 2, "against v1 and v2"
    assert len(check_schemas(changed_type, path, window=1)) == 1, "against v2 only"


def test_lock_refuses_to_rewrite_a_locked_version(lock: Path) -> None:
    with pytest.raises(ValueError, match="locked with another shape; bump the version"):
        lock_schemas(registry_for(1, {**BASE, "extra": (int, 0)}), lock)
    lock_schemas(registry_for(1, {**BASE, "extra": (int, 0)}), lock, force=True)


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "zerodown._cli.main",
        "schema",
        *args,
        "--registry",
        "records:registry",
    ]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


@pytest.mark.servers
def test_the_command_exits_1_with_an_explanation_per_field(tmp_path: Path) -> None:
    module = tmp_path / "records.py"
    module.write_text(
        "from zerodown.codec import Record, Registry\n"
        "registry = Registry()\n"
        "@registry.record('cart', version=1)\n"
        "class Cart(Record):\n"
        "    owner: str\n"
        "    note: str = ''\n"
    )
    assert run_cli(tmp_path, "lock").returncode == 0
    assert run_cli(tmp_path, "check").returncode == 0
    module.write_text(
        module.read_text()
        .replace("version=1", "version=2")
        .replace("note: str = ''", "note: int = 0")
    )
    result = run_cli(tmp_path, "check")
    assert result.returncode == 1
    assert (
        "BREAKING 'cart' against locked version 1: Cart.note: type changed from str to int"
        in result.stdout
    )
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "zerodown._cli.main",
            "schema",
            "check",
            "--registry",
            "nowhere:registry",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2
    assert "No module named 'nowhere'" in missing.stderr


def test_an_added_enum_value_breaks_only_a_required_field(tmp_path: Path) -> None:
    path = tmp_path / "lock.json"
    required_kind = {**BASE, "kind": ("Kind", msgspec.NODEFAULT)}
    lock_schemas(registry_for(1, required_kind), path)
    found = problems_after(path, registry_for(2, required_kind, kinds=("a", "b", "c")))
    assert found == [
        "'cart' against locked version 1: enum Kind: added values ['c'], but Cart.kind is "
        "required, so older readers fail on them; give it a default"
    ]


class Card(Record, tag="card", tag_field="type"):
    last4: str = ""


class Bank(Record, tag="bank", tag_field="type"):
    iban: str = ""


def payments(version: int, pay: Any, default: Any = msgspec.NODEFAULT) -> Registry:
    spec = [("pay", pay)] if default is msgspec.NODEFAULT else [("pay", pay, default)]
    order = msgspec.defstruct("Order", spec, bases=(Record,), kw_only=True)
    registry = Registry()
    registry.record("order", version=version)(order)
    return registry


def test_a_union_variant_may_be_added_where_the_field_has_a_default(tmp_path: Path) -> None:
    # Older readers keep a variant they do not know, written back as it was (records.md).
    with_default = tmp_path / "default.lock.json"
    lock_schemas(payments(1, Card | None, None), with_default)
    assert problems_after(with_default, payments(2, Card | Bank | None, None)) == []
    # Without a default they cannot read it.
    required = tmp_path / "required.lock.json"
    lock_schemas(payments(1, Card | None), required)
    (problem,) = problems_after(required, payments(2, Card | Bank | None))
    assert "added union variants ['Bank'], but it is required" in problem
    # Taking a variant away is a type change either way.
    (problem,) = problems_after(with_default, payments(2, Bank | None, None))
    assert "type changed" in problem
