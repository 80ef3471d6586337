"""The schema lock file of an app's records, and the check that refuses breaking changes.

A schema describes a record version as plain JSON: each field's type, whether it is
required, and its default, with the nested records and enums it uses. ``lock`` adds the
current versions to the lock file; ``check`` compares the code with every locked version
inside the window, in both directions (FULL compatibility, transitively).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi

from .._errors import ConfigurationError
from .codec import Registry

Schema = dict[str, Any]
LOCK_FORMAT = 1


def record_schema(registry: Registry, name: str) -> Schema:
    record_type = registry.describe(name)
    structs: dict[str, Any] = {}
    enums: dict[str, list[Any]] = {}
    root = _struct(record_type.cls, structs, enums)
    return {
        "version": record_type.version,
        "min_reader": record_type.min_reader,
        "root": root,
        "structs": dict(sorted(structs.items())),
        "enums": dict(sorted(enums.items())),
    }


def _struct(cls: type[Any], structs: dict[str, Any], enums: dict[str, list[Any]]) -> str:
    name = cls.__name__
    if name in structs:
        return name
    structs[name] = {}  # placeholder against recursive types
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    fields = {}
    for f in info.fields:
        described: dict[str, Any] = {"type": _type(f.type, structs, enums), "required": f.required}
        if not f.required:
            default = f.default_factory() if f.default is msgspec.NODEFAULT else f.default
            described["default"] = msgspec.to_builtins(default)
        fields[f.encode_name] = described
    structs[name] = {"fields": fields, "tag": info.tag}
    return name


def _type(info: mi.Type, structs: dict[str, Any], enums: dict[str, list[Any]]) -> str:
    simple = {
        mi.IntType: "int",
        mi.StrType: "str",
        mi.BoolType: "bool",
        mi.FloatType: "float",
        mi.NoneType: "null",
        mi.BytesType: "bytes",
        mi.DateTimeType: "datetime",
        mi.DateType: "date",
        mi.TimeType: "time",
        mi.TimeDeltaType: "timedelta",
        mi.UUIDType: "uuid",
        mi.DecimalType: "decimal",
        mi.AnyType: "any",
    }
    if type(info) in simple:
        return simple[type(info)]
    if isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        kind = type(info).__name__.removesuffix("Type").lower()
        return f"{kind}[{_type(info.item_type, structs, enums)}]"
    if isinstance(info, mi.DictType):
        key, value = _type(info.key_type, structs, enums), _type(info.value_type, structs, enums)
        return f"dict[{key}, {value}]"
    if isinstance(info, mi.UnionType):
        return " | ".join(sorted(_type(member, structs, enums) for member in info.types))
    if isinstance(info, mi.StructType):
        return f"record:{_struct(info.cls, structs, enums)}"
    if isinstance(info, mi.EnumType):
        enums[info.cls.__name__] = sorted((m.value for m in info.cls), key=repr)
        return f"enum:{info.cls.__name__}"
    if isinstance(info, mi.LiteralType):
        return f"literal{sorted(info.values, key=repr)}"
    return type(info).__name__


# -- the lock file -------------------------------------------------------------------------


def read_lock(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"format": LOCK_FORMAT, "records": {}}
    try:
        lock = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{path} is not a zerodown schema lock file: {error}") from None
    if lock.get("format") != LOCK_FORMAT:
        raise ConfigurationError(
            f"{path} has lock format {lock.get('format')!r}; expected {LOCK_FORMAT}"
        )
    return dict(lock)


def lock_schemas(registry: Registry, path: Path, *, force: bool = False) -> list[str]:
    """Add the code's current record versions to the lock file; returns what changed.

    Refuses (ValueError) to rewrite a locked version whose shape changed, unless ``force``.
    """
    lock = read_lock(path)
    changes = []
    for record_type in registry.records:
        schema = record_schema(registry, record_type.name)
        versions = lock["records"].setdefault(record_type.name, {})
        key = str(record_type.version)
        locked = versions.get(key)
        if locked == schema:
            continue
        if locked is not None and not force:
            raise ConfigurationError(
                f"{record_type.name!r} version {key} is locked with another shape; bump the "
                "version (and add an upcaster if needed) or pass --force if it never shipped"
            )
        versions[key] = schema
        changes.append(f"locked {record_type.name!r} version {key}")
    lock["locked_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    path.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    return changes


# -- the check -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    record: str
    against: int
    text: str

    def __str__(self) -> str:
        return f"{self.record!r} against locked version {self.against}: {self.text}"


def check_schemas(registry: Registry, path: Path, *, window: int = 2) -> list[Problem]:
    """Breaking changes between the code and the locked versions within ``window``."""
    lock = read_lock(path)
    problems: list[Problem] = []
    for record_type in registry.records:
        name = record_type.name
        current = record_schema(registry, name)
        locked = {int(k): v for k, v in lock["records"].get(name, {}).items()}
        same = locked.get(record_type.version)
        if same is not None and same != current:
            problems += [
                Problem(name, record_type.version, f"shape change without a version bump: {text}")
                for text in _differences(same, current) or ["the schema differs"]
            ]
        oldest = record_type.version - window
        for version, schema in sorted(locked.items()):
            if oldest <= version < record_type.version:
                problems += [Problem(name, version, t) for t in _differences(schema, current)]
        problems += _reused_names(name, locked, current)
    return problems


def _differences(old: Schema, new: Schema) -> list[str]:
    texts = []
    for struct_name, new_struct in new["structs"].items():
        old_struct = old["structs"].get(struct_name)
        if old_struct is not None:
            texts += _field_differences(struct_name, old_struct["fields"], new_struct["fields"])
    for enum_name, values in old["enums"].items():
        removed = [v for v in values if v not in new["enums"].get(enum_name, values)]
        if removed:
            texts.append(f"enum {enum_name}: removed values {removed}")
        added = [v for v in new["enums"].get(enum_name, values) if v not in values]
        if added:
            # Older readers fall back to a field's default for a value they do not know;
            # a required field has none to fall back on.
            texts += [
                f"enum {enum_name}: added values {added}, but {where} is required, so older "
                "readers fail on them; give it a default"
                for where in _required_users(new, f"enum:{enum_name}")
            ]
    return texts


def _required_users(schema: Schema, type_name: str) -> list[str]:
    return [
        f"{struct_name}.{field_name}"
        for struct_name, struct in schema["structs"].items()
        for field_name, spec in struct["fields"].items()
        if spec["required"] and type_name in spec["type"]
    ]


def _field_differences(struct: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    texts = []
    for field_name, before in old.items():
        after = new.get(field_name)
        where = f"{struct}.{field_name}"
        if after is None:
            if before["required"]:
                texts.append(f"{where}: removed, but it had no default, so older readers fail")
            continue
        added = _added_variants(before["type"], after["type"])
        if added is not None:
            # Older readers keep a variant they do not know when the field has a default to
            # fall back on, and write it back as it was; without one they cannot read it.
            if after["required"]:
                texts.append(
                    f"{where}: added union variants {added}, but it is required, so older "
                    "readers fail on them; give it a default"
                )
        elif before["type"] != after["type"]:
            texts.append(f"{where}: type changed from {before['type']} to {after['type']}")
        elif (
            before.get("default") != after.get("default") or before["required"] != after["required"]
        ):
            texts.append(f"{where}: default changed from {_default(before)} to {_default(after)}")
    for field_name, after in new.items():
        if field_name not in old and after["required"]:
            texts.append(
                f"{struct}.{field_name}: new and required; give it a default so older data "
                "stays readable"
            )
    return texts


def _added_variants(before: str, after: str) -> list[str] | None:
    """The records a union field gained, when that is its only change; None otherwise."""
    if "[" in before or "[" in after:  # a union inside a container: judged as a whole
        return None
    old, new = set(before.split(" | ")), set(after.split(" | "))
    gained = sorted(new - old)
    if old - new or not gained or not all(member.startswith("record:") for member in gained):
        return None
    return [member.removeprefix("record:") for member in gained]


def _default(field: dict[str, Any]) -> str:
    return "(required)" if field["required"] else json.dumps(field["default"])


def _reused_names(name: str, locked: dict[int, Schema], current: Schema) -> list[Problem]:
    """A field name that an older version had, the next dropped, and the code uses again."""
    problems = []
    history = [locked[v] for v in sorted(locked) if v < current["version"]]
    for struct_name, struct in current["structs"].items():
        for field_name in struct["fields"]:
            present = [_has(s, struct_name, field_name) for s in history]
            if True in present and not present[-1]:
                dropped_after = max(
                    schema["version"] for schema, had in zip(history, present, strict=True) if had
                )
                problems.append(
                    Problem(
                        name,
                        dropped_after,
                        f"{struct_name}.{field_name}: reuses the name of a field removed after "
                        f"version {dropped_after}; old data may still hold the old meaning",
                    )
                )
    return problems


def _has(schema: Schema, struct: str, field: str) -> bool:
    return field in schema["structs"].get(struct, {}).get("fields", {})


__all__ = ["Problem", "check_schemas", "lock_schemas", "read_lock", "record_schema"]
