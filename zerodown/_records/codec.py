"""Versioned records that two releases of an app can both read and write back.

Every payload is an envelope: the record's type name, the version that wrote it, the lowest
reader version that can read it safely, and the data. Reading older data runs the
upcasters; reading newer data keeps what this release does not know and writes it back
unchanged; data that cannot be read raises :class:`UnreadableRecord` and the caller's bytes
are never touched. Nothing here unpickles anything.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import UnionType
from typing import Any, Generic, Literal, TypeVar, Union

import msgspec

from .._errors import ConfigurationError, UnreadableRecord
from .._telemetry import telemetry

Format = Literal["json", "msgpack"]
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
R = TypeVar("R", bound="Record")

#: Payloads larger than this are refused before parsing (a session is a few KB).
DEFAULT_MAX_PAYLOAD_SIZE = 1 << 20
_BYTES = (bytes, bytearray, memoryview)
#: How many versions past its own a registry counts reads of one by one.
COUNTED_NEWER_VERSIONS = 16
#: The version under which reads of records from further ahead are counted.
NEWER_VERSIONS = -1
_KEPT = "_zerodown_kept"
_OPAQUE = "_zerodown_opaque"
_ENVELOPE = "_zerodown_envelope"


class Record(msgspec.Struct, dict=True, kw_only=True):
    """Base class of records and of the structs nested in them.

    The instance dictionary (``dict=True``) holds what a newer release wrote and this one
    does not know, so that it can be written back.
    """


class _Envelope(msgspec.Struct):
    t: str
    v: int
    r: int
    d: msgspec.Raw


class _TypedEnvelope(msgspec.Struct, Generic[R]):
    """The envelope with the data typed: one pass when the writer's version is ours."""

    t: str
    v: int
    r: int
    d: R


class _EnvelopeOut(msgspec.Struct):
    t: str
    v: int
    r: int
    d: Any


@dataclass
class RecordType:
    """A registered record: its class, name, version and how older data is upgraded."""

    cls: type[Record]
    name: str
    version: int
    min_reader: int
    upcasters: dict[int, Upcaster] = field(default_factory=dict)
    downcasters: dict[int, Upcaster] = field(default_factory=dict)
    write_version: int | None = None


class Registry:
    """The app's records, and encoding and decoding with them.

    Thread-safe: encoding and decoding keep no state but the read counts, which are kept
    under a lock.
    """

    def __init__(
        self, *, format: Format = "json", max_size: int = DEFAULT_MAX_PAYLOAD_SIZE
    ) -> None:
        self.format: Format = format
        self.max_size = max_size
        self._by_class: dict[type[Record], RecordType] = {}
        self._by_name: dict[str, RecordType] = {}
        # Each thread counts its reads in a dict of its own, with no lock on the decode path;
        # ``reads`` adds them up.
        self._thread_reads = threading.local()
        self._read_tables: list[dict[tuple[str, int], int]] = []
        self._reads_lock = threading.Lock()
        telemetry.watch_registry(self)
        modules = {"json": msgspec.json, "msgpack": msgspec.msgpack}
        if format not in modules:
            raise ConfigurationError(f"format must be 'json' or 'msgpack', got {format!r}")
        self._module: Any = modules[format]
        self._encode: Callable[[Any], bytes] = self._module.Encoder().encode
        self._decode_any: Callable[[bytes], Any] = self._module.Decoder().decode
        self._envelope: Callable[[bytes], _Envelope] = self._module.Decoder(_Envelope).decode
        self._tail = b"}" if format == "json" else b""
        self._typed: dict[type[Record], Callable[[bytes], _TypedEnvelope[Any]]] = {}
        #: Per class, the encoded envelope up to its data, for the common write (this
        #: version's shape, nothing kept): the data's encoding is appended to it.
        self._heads: dict[type[Record], bytes] = {}
        #: Per class, reads of its own version: ``next()`` on a count is one atomic call,
        #: which the common read can afford where a lock or a thread-local cannot.
        self._current_reads: dict[type[Record], itertools.count[int]] = {}

    # -- declaring -----------------------------------------------------------------------

    def record(
        self, name: str, *, version: int, min_reader: int | None = None
    ) -> Callable[[type[R]], type[R]]:
        """Register a record class under a stable ``name`` and an integer ``version``.

        ``min_reader`` is the lowest version that can read what this version writes
        (default: this version - 1, i.e. the previous release keeps working).
        """
        if version < 1:
            raise ConfigurationError(f"record versions start at 1, got {version} for {name!r}")
        lowest = max(1, version - 1) if min_reader is None else min_reader
        if not 1 <= lowest <= version:
            raise ConfigurationError(f"min_reader must be between 1 and {version}, got {lowest}")

        def register(cls: type[R]) -> type[R]:
            if not issubclass(cls, Record):
                raise ConfigurationError(f"{cls.__name__} must subclass zerodown.codec.Record")
            if name in self._by_name:
                raise ConfigurationError(f"a record named {name!r} is already registered")
            record_type = RecordType(cls, name, version, lowest)
            self._by_class[cls] = record_type
            self._by_name[name] = record_type
            self._typed[cls] = self._module.Decoder(_TypedEnvelope[cls]).decode  # type: ignore[valid-type]
            self._heads[cls] = self._envelope_head(name, version, lowest)
            self._current_reads[cls] = itertools.count()
            return cls

        return register

    def upcaster(self, name: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function that turns version ``from_version`` data into the next one."""

        def register(function: Upcaster) -> Upcaster:
            self.describe(name).upcasters[from_version] = function
            return function

        return register

    def downcaster(self, name: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function that turns version ``from_version`` data into the previous one.

        Needed only for :meth:`write_previous` (the rollout mode).
        """

        def register(function: Upcaster) -> Upcaster:
            self.describe(name).downcasters[from_version] = function
            return function

        return register

    def write_previous(self, name: str, version: int | None) -> None:
        """Rollout mode: keep writing ``version``'s shape until every instance runs this one.

        ``None`` goes back to writing the current version.
        """
        record_type = self.describe(name)
        if version is not None:
            missing = [
                v
                for v in range(record_type.version, version, -1)
                if v not in record_type.downcasters
            ]
            if missing or not 1 <= version <= record_type.version:
                raise ConfigurationError(
                    f"cannot write {name!r} as version {version}: register downcasters from "
                    f"versions {missing or '?'} (registry.downcaster({name!r}, from_version=N))"
                )
        record_type.write_version = version

    def describe(self, name_or_class: str | type[Record]) -> RecordType:
        table: dict[Any, RecordType] = (
            self._by_name if isinstance(name_or_class, str) else self._by_class
        )
        try:
            return table[name_or_class]
        except KeyError:
            raise KeyError(f"{name_or_class!r} is not a registered record") from None

    @property
    def records(self) -> list[RecordType]:
        return list(self._by_name.values())

    @property
    def reads(self) -> dict[tuple[str, int], int]:
        """How many payloads of each (name, written version) were read since start."""
        with self._reads_lock:
            tables = list(self._read_tables)
        total: Counter[tuple[str, int]] = Counter()
        for table in tables:
            total.update(table.copy())
        for cls, count in self._current_reads.items():
            record_type = self._by_class[cls]
            # A count's repr is "count(N)", N the next value: the reads so far.
            read = int(repr(count)[6:-1])
            if read:
                total[(record_type.name, record_type.version)] += read
        return dict(total)

    # -- encoding ------------------------------------------------------------------------

    def encode(self, record: Record) -> bytes:
        record_type = self._by_class.get(type(record)) or self.describe(type(record))
        kept = getattr(record, _ENVELOPE, None)  # reading __dict__ would create it
        write_version = record_type.write_version
        if write_version is not None and write_version < record_type.version:
            data = _with_kept(record, msgspec.to_builtins(record))
            for version in range(record_type.version, write_version, -1):
                data = record_type.downcasters[version](data)
            envelope = _EnvelopeOut(record_type.name, write_version, write_version, data)
        elif kept is not None:
            # Decoded from a newer release: write its envelope back with its fields.
            version, min_reader = kept
            data = _with_kept(record, msgspec.to_builtins(record))
            envelope = _EnvelopeOut(record_type.name, version, min_reader, data)
        else:
            return b"".join((self._heads[type(record)], self._encode(record), self._tail))
        return self._encode(envelope)

    def _envelope_head(self, name: str, version: int, min_reader: int) -> bytes:
        """The bytes of an envelope before its data, as the encoder writes them."""
        marker = self._encode(_EnvelopeOut(name, version, min_reader, None))
        # Both formats end the envelope with the data's encoding (JSON then closes it).
        null = self._encode(None)
        head = marker[: len(marker) - len(null) - len(self._tail)]
        assert head + null + self._tail == marker
        return head

    # -- decoding ------------------------------------------------------------------------

    def decode_registered(self, payload: bytes) -> Record:
        """Read a payload of whichever registered record it holds.

        For stores that keep records of several types side by side (sessions); raises
        :class:`UnreadableRecord` for a type this registry does not know, nothing else.
        """
        try:
            name = self._envelope(payload).t
        except (ValueError, RecursionError, TypeError) as error:
            raise UnreadableRecord(f"not a zerodown record: {error}", type_name="?") from None
        record_type = self._by_name.get(name)
        if record_type is None:
            raise UnreadableRecord(
                "no record of that name is registered here", type_name=name, another_release=True
            )
        return self.decode(payload, record_type.cls)

    def decode(self, payload: bytes, cls: type[R]) -> R:
        """Read ``payload`` as a ``cls``; raises :class:`UnreadableRecord`, nothing else."""
        record_type = self._by_class.get(cls) or self.describe(cls)
        name = record_type.name
        if not isinstance(payload, _BYTES):
            raise UnreadableRecord(f"expected bytes, got {type(payload).__name__}", type_name=name)
        if len(payload) > self.max_size:
            raise UnreadableRecord(
                f"{len(payload)} bytes is more than the {self.max_size} allowed", type_name=name
            )
        try:
            typed = self._typed[cls](payload)
        except (ValueError, RecursionError):
            pass  # another version's shape, or not a record: the general path says which
        else:
            if typed.v == record_type.version and typed.t == name and 1 <= typed.r <= typed.v:
                next(self._current_reads[cls])
                return typed.d  # type: ignore[no-any-return]
        try:
            envelope = self._envelope(payload)
        except (ValueError, RecursionError) as error:  # msgspec.DecodeError, bad UTF-8
            raise UnreadableRecord(f"not a zerodown record: {error}", type_name=name) from None
        written, reader = envelope.v, record_type.version
        if not 1 <= envelope.r <= written:
            # Checked before anything loops over versions: the numbers are the writer's.
            raise UnreadableRecord(
                f"a malformed envelope: version {written}, readers from version {envelope.r}",
                type_name=name,
            )
        oldest = min(record_type.upcasters, default=1)
        if written < oldest:
            raise UnreadableRecord(
                f"version {written} is older than the oldest this release upcasts from ({oldest})",
                type_name=name,
                written_version=written,
                reader_version=reader,
            )
        if envelope.t != name:
            raise UnreadableRecord(
                f"it is a {envelope.t!r} record", type_name=name, written_version=written
            )
        if envelope.r > reader:
            raise UnreadableRecord(
                f"the writer requires readers of version {envelope.r} or newer",
                type_name=name,
                written_version=written,
                reader_version=reader,
                another_release=True,
            )
        # The version is the writer's word: one far ahead of ours is counted under
        # NEWER_VERSIONS, so a crafted payload cannot add a key per number it makes up.
        counted = NEWER_VERSIONS if written > reader + COUNTED_NEWER_VERSIONS else written
        self._count_read((name, counted))
        try:
            data = self._decode_any(envelope.d)
            if not isinstance(data, dict):
                raise UnreadableRecord(
                    f"its data is a {type(data).__name__}, not an object",
                    type_name=name,
                    written_version=written,
                    reader_version=reader,
                )
            for version in sorted(v for v in record_type.upcasters if written <= v < reader):
                data = _upcast(record_type.upcasters[version], data, version)
            record = _build(cls, data, path=name)
        except _Unreadable as error:
            # What a newer release wrote, that release reads; older data is this one's to read.
            raise UnreadableRecord(
                error.reason,
                type_name=name,
                written_version=written,
                reader_version=reader,
                another_release=written > reader,
            ) from None
        except (ValueError, TypeError, RecursionError) as error:  # msgspec errors, bad UTF-8
            raise UnreadableRecord(
                f"corrupt data: {error}",
                type_name=name,
                written_version=written,
                reader_version=reader,
            ) from None
        # Written back with what it carried: a newer release's fields and values, or an
        # older one's fields that this release dropped (instances of that release may still
        # be running and reading them).
        if written > reader:
            record.__dict__[_ENVELOPE] = (written, envelope.r)
        else:
            record.__dict__[_ENVELOPE] = (reader, record_type.min_reader)
        return record

    def _count_read(self, key: tuple[str, int]) -> None:
        try:
            table: dict[tuple[str, int], int] = self._thread_reads.table
        except AttributeError:
            table = self._thread_reads.table = {}
            with self._reads_lock:
                self._read_tables.append(table)
        table[key] = table.get(key, 0) + 1


def _upcast(upcast: Upcaster, data: dict[str, Any], version: int) -> dict[str, Any]:
    try:
        upgraded = upcast(data)
    except Exception as error:
        raise _Unreadable(
            f"the upcaster from version {version} failed: {type(error).__name__}: {error}"
        ) from None
    if not isinstance(upgraded, dict):
        raise _Unreadable(f"the upcaster from version {version} returned no dict")
    return upgraded


class _Unreadable(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _build(cls: type[R], data: dict[str, Any], *, path: str) -> R:
    """Convert ``data`` to ``cls`` field by field, keeping what cannot be typed.

    Keys the class does not know are kept. A value that cannot be typed (an enum value or
    union tag from a newer release) in a field with a default becomes the default and is
    kept; without a default the record is unreadable.
    """
    known = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    values: dict[str, Any] = {}
    opaque: dict[str, tuple[Any, Any]] = {}
    for key, raw in data.items():
        spec = known.get(key)
        if spec is None:
            continue
        try:
            values[spec.name] = _convert(raw, spec.type, path=f"{path}.{key}")
        except (msgspec.ValidationError, _Unreadable) as error:
            if spec.required:
                reason = error.reason if isinstance(error, _Unreadable) else str(error)
                raise _Unreadable(
                    f"{path}.{key} cannot be read and has no default to fall back on: {reason}"
                ) from None
            default = spec.default_factory() if spec.default is msgspec.NODEFAULT else spec.default
            values[spec.name] = default
            opaque[spec.name] = (raw, default)
    missing = [f.encode_name for f in known.values() if f.required and f.name not in values]
    if missing:
        raise _Unreadable(f"{path} lacks required fields {missing} and no upcaster fills them")
    try:
        record = cls(**values)
    except (TypeError, msgspec.ValidationError) as error:
        raise _Unreadable(f"{path}: {error}") from None
    unknown = {key: raw for key, raw in data.items() if key not in known}
    if unknown:
        record.__dict__[_KEPT] = unknown
    if opaque:
        record.__dict__[_OPAQUE] = opaque
    return record


def _convert(raw: Any, annotation: Any, *, path: str) -> Any:
    """Type ``raw`` as ``annotation``, building nested records with :func:`_build`."""
    if isinstance(annotation, type) and issubclass(annotation, Record):
        if not isinstance(raw, dict):
            raise _Unreadable(f"{path} should be an object, got {type(raw).__name__}")
        return _build(annotation, raw, path=path)
    variants = _record_variants(annotation)
    if variants is not None:
        if raw is None and type(None) in annotation.__args__:
            return None
        return _build_variant(variants, raw, path)
    origin = getattr(annotation, "__origin__", None)
    args: tuple[Any, ...] = getattr(annotation, "__args__", ())
    if origin is list and args and _holds_records(args[0]) and isinstance(raw, list):
        return [_convert(item, args[0], path=f"{path}[{i}]") for i, item in enumerate(raw)]
    if origin is dict and len(args) == 2 and _holds_records(args[1]) and isinstance(raw, dict):
        return {
            msgspec.convert(k, args[0]): _convert(v, args[1], path=f"{path}.{k}")
            for k, v in raw.items()
        }
    return msgspec.convert(raw, annotation)


def _record_variants(annotation: Any) -> dict[Any, type[Record]] | None:
    """For ``A | None`` or a tagged union of records, the record classes by tag value."""
    if getattr(annotation, "__origin__", None) not in (Union, UnionType) and not isinstance(
        annotation, UnionType
    ):
        return None
    members = [arg for arg in annotation.__args__ if arg is not type(None)]
    if not members or not all(_holds_records(member) for member in members):
        return None
    if len(members) == 1:
        return {None: members[0]}
    return {member.__struct_config__.tag: member for member in members}


def _build_variant(variants: dict[Any, type[Record]], raw: Any, path: str) -> Record:
    """The variant ``raw`` names by its tag; :class:`_Unreadable` for one this release does
    not know (a newer release's), so that the field falls back and keeps ``raw`` as it is.

    ``A | None`` has one variant; when ``A`` is tagged, a dict with another tag is still
    another variant, not an ``A``.
    """
    if not isinstance(raw, dict):
        raise _Unreadable(f"{path} should be an object, got {type(raw).__name__}")
    config = next(iter(variants.values())).__struct_config__
    if config.tag_field is None:  # an untagged A | None: any object is an A
        return _build(variants[None], raw, path=path)
    tag = raw.get(config.tag_field, config.tag if None in variants else None)
    if not isinstance(tag, str | int) or isinstance(tag, bool):
        raise _Unreadable(f"{path} has a tag of type {type(tag).__name__}, not a str or int")
    variant = variants.get(None) if None in variants and tag == config.tag else variants.get(tag)
    if variant is None:
        raise _Unreadable(f"{path} is a {tag!r}, a variant this release does not know")
    return _build(variant, {k: v for k, v in raw.items() if k != config.tag_field}, path=path)


def _holds_records(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Record)


def _with_kept(record: Record, data: Any) -> Any:
    """``data`` (the builtins of ``record``) with the kept fields of every record put back."""
    kept = record.__dict__.get(_KEPT)
    opaque = record.__dict__.get(_OPAQUE)
    fields = {f.name: f.encode_name for f in msgspec.structs.fields(type(record))}
    for name, encode_name in fields.items():
        value = getattr(record, name)
        if opaque and name in opaque and value == opaque[name][1]:
            data[encode_name] = opaque[name][0]
        else:
            data[encode_name] = _kept_in(value, data[encode_name])
    if kept:
        for key, raw in kept.items():
            data.setdefault(key, raw)
    return data


def _kept_in(value: Any, data: Any) -> Any:
    if isinstance(value, Record):
        return _with_kept(value, data)
    if isinstance(value, list) and isinstance(data, list):
        return [_kept_in(item, item_data) for item, item_data in zip(value, data, strict=True)]
    if isinstance(value, dict) and isinstance(data, dict) and len(value) == len(data):
        # to_builtins keeps the order of the keys while it turns them into strings.
        return {
            key: _kept_in(item, item_data)
            for (key, item_data), item in zip(data.items(), value.values(), strict=True)
        }
    return data
