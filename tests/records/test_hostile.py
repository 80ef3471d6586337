"""Records a writer crafted: every envelope ends as a record or UnreadableRecord, at once.

The fuzzing here generates envelopes from the records' own schema (real encodings of
generated instances) and then mutates them, in JSON and msgpack.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerodown.codec import Record, Registry, UnreadableRecord

FORMATS = ("json", "msgpack")
CODECS = {"json": msgspec.json, "msgpack": msgspec.msgpack}
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Card(Record, tag="card", tag_field="type"):
    last4: str = ""


class Bank(Record, tag="bank", tag_field="type"):
    iban: str = ""


def old_and_new(fmt: str) -> tuple[Registry, type[Record], Registry, type[Record]]:
    """Release 1 pays by card only; release 2 adds bank transfers to the union."""
    v1, v2 = Registry(format=fmt), Registry(format=fmt)  # type: ignore[arg-type]

    @v1.record("order", version=1)
    class Order(Record):
        items: list[str] = msgspec.field(default_factory=list)
        pay: Card | None = None

    @v2.record("order", version=2, min_reader=1)
    class Order2(Record):
        items: list[str] = msgspec.field(default_factory=list)
        pay: Card | Bank | None = None

    @v2.upcaster("order", from_version=1)
    def same(data: dict[str, Any]) -> dict[str, Any]:
        return data

    return v1, Order, v2, Order2


def envelope(fmt: str, **fields: Any) -> bytes:
    return CODECS[fmt].encode({"t": "order", "v": 1, "r": 1, "d": {}, **fields})


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("version", "min_reader"),
    [(-9223372036854775808, 1), (-(10**8), 1), (0, 1), (1, 0), (1, 2), (3, 5), (2, -1)],
)
def test_a_crafted_version_is_unreadable_at_once(fmt: str, version: int, min_reader: int) -> None:
    _, _, v2, order = old_and_new(fmt)
    started = time.monotonic()
    with pytest.raises(UnreadableRecord):
        v2.decode(envelope(fmt, v=version, r=min_reader), order)
    assert time.monotonic() - started < 0.1  # was 2 s at -10**8, and a hang below


def test_versions_older_than_the_oldest_upcaster_are_unreadable() -> None:
    registry = Registry()

    @registry.record("order", version=5)
    class Order(Record):
        items: list[str] = msgspec.field(default_factory=list)

    @registry.upcaster("order", from_version=3)
    def three(data: dict[str, Any]) -> dict[str, Any]:
        return data

    assert registry.decode(envelope("json", v=3), Order) == Order()
    with pytest.raises(UnreadableRecord, match="older than the oldest"):
        registry.decode(envelope("json", v=2), Order)


def test_reads_of_crafted_newer_versions_are_counted_under_one_key() -> None:
    _, _, v2, order = old_and_new("json")
    for version in range(100, 200):
        v2.decode(envelope("json", v=version, r=1), order)
    v2.decode(envelope("json", v=3, r=1), order)
    assert v2.reads == {("order", -1): 100, ("order", 3): 1}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("tag", [["card"], {"card": 1}, 1.5, None, True])
def test_a_union_tag_of_another_shape_is_no_error(fmt: str, tag: object) -> None:
    _, _, v2, order = old_and_new(fmt)
    payload = envelope(fmt, v=2, d={"pay": {"type": tag, "iban": "x"}})
    decoded = v2.decode(payload, order)  # the field falls back to its default ...
    assert decoded.pay is None  # type: ignore[attr-defined]
    written_back = CODECS[fmt].decode(v2.encode(decoded))["d"]["pay"]
    assert written_back == {"type": tag, "iban": "x"}  # ... and keeps it as it was


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_old_reader_keeps_a_union_variant_it_does_not_know(fmt: str) -> None:
    v1, order, v2, order2 = old_and_new(fmt)
    written = v2.encode(order2(items=["book"], pay=Bank(iban="DE89")))  # type: ignore[call-arg]
    read = v1.decode(written, order)
    assert read.pay is None  # type: ignore[attr-defined]
    read.items.append("pen")  # type: ignore[attr-defined]
    back = v2.decode(v1.encode(read), order2)
    assert back.pay == Bank(iban="DE89")  # type: ignore[attr-defined]
    assert back.items == ["book", "pen"]  # type: ignore[attr-defined]
    # What the app changes is written as it says.
    read.pay = Card(last4="4242")  # type: ignore[attr-defined]
    assert v2.decode(v1.encode(read), order2).pay == Card(last4="4242")  # type: ignore[attr-defined]


def mutations() -> st.SearchStrategy[Any]:
    """Values a mutation puts anywhere in an envelope."""
    leaves = st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.text(max_size=8),
        st.booleans(),
        st.none(),
        st.floats(allow_nan=False),
        st.sampled_from(["card", "bank", "order", "type"]),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=8,
    )


def mutate(data: Any, path: list[int], value: Any) -> Any:
    """``data`` with the node that ``path`` picks (indices into its keys) replaced."""
    if not path or not isinstance(data, dict | list) or not data:
        return value
    keys = list(data) if isinstance(data, dict) else list(range(len(data)))
    key = keys[path[0] % len(keys)]
    copy = dict(data) if isinstance(data, dict) else list(data)
    copy[key] = mutate(data[key], path[1:], value)  # type: ignore[index]
    return copy


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(
    items=st.lists(st.text(max_size=5), max_size=3),
    pay=st.one_of(
        st.none(),
        st.builds(Card, last4=st.text(max_size=4)),
        st.builds(Bank, iban=st.text(max_size=6)),
    ),
    path=st.lists(st.integers(min_value=0, max_value=7), max_size=4),
    value=mutations(),
)
def test_mutated_envelopes_end_as_a_record_or_unreadable(
    fmt: str, items: list[str], pay: Record | None, path: list[int], value: Any
) -> None:
    v1, order, v2, order2 = old_and_new(fmt)
    codec = CODECS[fmt]
    valid = codec.decode(v2.encode(order2(items=items, pay=pay)))  # type: ignore[call-arg]
    payload = codec.encode(mutate(valid, path, value))
    for registry, cls in ((v1, order), (v2, order2)):
        started = time.monotonic()
        try:
            record = registry.decode(payload, cls)
        except UnreadableRecord:
            pass
        else:
            registry.encode(record)  # what was read can be written back
        assert time.monotonic() - started < 0.5
