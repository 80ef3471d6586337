"""Property-based: random record evolutions never lose data, and decode never crashes."""

import contextlib
from typing import Any, NamedTuple

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerodown.codec import Record, Registry, UnreadableRecord

NAMES = [f"f{i}" for i in range(12)]
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

# (type, default, strategy of values)
KINDS: dict[str, tuple[Any, Any, st.SearchStrategy[Any]]] = {
    "int": (int, 0, INT64),
    "str": (str, "", st.text(max_size=20)),
    "bool": (bool, False, st.booleans()),
    "float": (float, 0.0, st.floats(allow_nan=False, allow_infinity=False)),
    "ints": (list[int], msgspec.field(default_factory=list), st.lists(INT64, max_size=4)),
    "map": (
        dict[str, int],
        msgspec.field(default_factory=dict),
        st.dictionaries(st.text(max_size=5), INT64, max_size=3),
    ),
    "maybe": (str | None, None, st.none() | st.text(max_size=5)),
}


@st.composite
def evolutions(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Fields of v1, of v2 (some removed, some added, none renamed) and of a nested record."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=2, max_size=8, unique=True))
    split = draw(st.integers(min_value=1, max_value=len(names) - 1))
    kinds = st.sampled_from(sorted(KINDS))
    common = {name: draw(kinds) for name in names[:split]}
    removed = {name: draw(kinds) for name in names[split : split + (len(names) - split) // 2]}
    added = {name: draw(kinds) for name in names[split + len(removed) :]}
    v1 = {**common, **removed}
    v2 = {**common, **added}
    nested_added = {
        name: draw(kinds)
        for name in draw(st.lists(st.sampled_from(NAMES[:4]), max_size=2, unique=True))
    }
    return v1, v2, nested_added


def make_records(
    fields: dict[str, str], nested_fields: dict[str, str], version: int
) -> tuple[Registry, type[Record]]:
    nested = msgspec.defstruct(
        "Nested",
        [("id", int, 0)]
        + [(n, KINDS[k][0], KINDS[k][1]) for n, k in nested_fields.items() if n != "id"],
        bases=(Record,),
        kw_only=True,
    )
    top = msgspec.defstruct(
        "Top",
        [(n, KINDS[k][0], KINDS[k][1]) for n, k in fields.items()]
        + [
            ("child", nested, msgspec.field(default_factory=nested)),
            ("children", list[nested], msgspec.field(default_factory=list)),
        ],
        bases=(Record,),
        kw_only=True,
    )
    registry = Registry()
    registry.record("top", version=version, min_reader=1)(top)
    return registry, top


def value_for(cls: type[Record], fields: dict[str, str], draw: st.DrawFn) -> Record:
    nested = {f.name: f.type for f in msgspec.structs.fields(cls)}["child"]
    nested_kinds = {f.name: f for f in msgspec.structs.fields(nested)}

    def nested_value() -> Record:
        values: dict[str, Any] = {"id": draw(INT64)}
        for name in nested_kinds:
            if name != "id":
                values[name] = draw(
                    next(s for k, (t, d, s) in KINDS.items() if t == nested_kinds[name].type)
                )
        return nested(**values)

    values = {name: draw(KINDS[kind][2]) for name, kind in fields.items()}
    return cls(
        **values,
        child=nested_value(),
        children=[nested_value() for _ in range(draw(st.integers(0, 2)))],
    )


Evolution = tuple[dict[str, str], dict[str, str], dict[str, str]]
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Releases(NamedTuple):
    old: Registry
    old_top: type[Record]
    new: Registry
    new_top: type[Record]


def releases(evolution: Evolution) -> Releases:
    v1_fields, v2_fields, nested_added = evolution
    return Releases(
        *make_records(v1_fields, {}, version=1), *make_records(v2_fields, nested_added, version=2)
    )


@EXAMPLES
@given(evolution=evolutions(), data=st.data())
def test_the_old_release_round_trips_new_data_with_nothing_lost(
    evolution: Evolution, data: st.DataObject
) -> None:
    old, old_top, new, new_top = releases(evolution)
    original = value_for(new_top, evolution[1], data.draw)

    through_old = old.encode(old.decode(new.encode(original), old_top))
    assert new.decode(through_old, new_top) == original


@EXAMPLES
@given(evolution=evolutions(), data=st.data())
def test_the_new_release_reads_old_data(evolution: Evolution, data: st.DataObject) -> None:
    old, old_top, new, new_top = releases(evolution)
    v1_fields, v2_fields, _ = evolution
    original = value_for(old_top, v1_fields, data.draw)

    read = new.decode(old.encode(original), new_top)
    for name in v1_fields.keys() & v2_fields.keys():
        assert getattr(read, name) == getattr(original, name)
    for name in v2_fields.keys() - v1_fields.keys():
        default = msgspec.structs.fields(new_top)[
            [f.name for f in msgspec.structs.fields(new_top)].index(name)
        ]
        expected = (
            default.default_factory() if default.default is msgspec.NODEFAULT else default.default
        )
        assert getattr(read, name) == expected
    # ...and what v1 had that v2 dropped comes back when v1 reads v2's write.
    assert old.decode(new.encode(read), old_top) == original


def fuzz_registry() -> tuple[Registry, type[Record]]:
    return make_records({"f0": "int", "f1": "str", "f2": "maybe", "f3": "map"}, {"f0": "ints"}, 2)


FUZZ_REGISTRY, FUZZ_TOP = fuzz_registry()
VALID = FUZZ_REGISTRY.encode(FUZZ_TOP(f0=1, f1="x"))


@settings(max_examples=400, deadline=None)
@given(
    payload=st.binary(max_size=300)
    | st.sampled_from([VALID]).flatmap(
        lambda valid: st.tuples(
            st.integers(0, len(valid) - 1), st.integers(0, 255), st.booleans()
        ).map(
            lambda edit: (
                (valid[: edit[0]] + bytes([edit[1]]) + valid[edit[0] + 1 :])
                if edit[2]
                else valid[: edit[0]]
            )
        )
    )
)
def test_decoding_random_or_corrupted_bytes_raises_only_the_documented_exception(
    payload: bytes,
) -> None:
    with contextlib.suppress(UnreadableRecord):
        FUZZ_REGISTRY.decode(payload, FUZZ_TOP)
