"""Records that two releases read and write back, in JSON and MessagePack."""

import datetime as dt
import decimal
import enum
import uuid
from typing import Any

import msgspec
import pytest

from zerodown import ConfigurationError
from zerodown.codec import Record, Registry, UnreadableRecord

FORMATS = ["json", "msgpack"]


class Kind(enum.Enum):
    BOOK = "book"
    FOOD = "food"


class KindV2(enum.Enum):
    BOOK = "book"
    FOOD = "food"
    GIFT = "gift"


def v1_registry(fmt: str) -> tuple[Registry, type[Record]]:
    registry = Registry(format=fmt)  # type: ignore[arg-type]

    class Item(Record):
        sku: str
        qty: int = 1
        kind: Kind = Kind.BOOK

    @registry.record("cart", version=1)
    class Cart(Record):
        owner: uuid.UUID
        items: list[Item] = msgspec.field(default_factory=list)
        note: str = ""

    return registry, Cart


def v2_registry(fmt: str) -> tuple[Registry, type[Record]]:
    registry = Registry(format=fmt)  # type: ignore[arg-type]

    class Item(Record):
        sku: str
        qty: int = 1
        kind: KindV2 = KindV2.BOOK
        gift_wrap: bool = False

    class Coupon(Record):
        code: str
        percent: decimal.Decimal

    @registry.record("cart", version=2)
    class Cart(Record):
        owner: uuid.UUID
        items: list[Item] = msgspec.field(default_factory=list)
        note: str = ""
        coupon: Coupon | None = None
        updated: dt.datetime | None = None

    @registry.upcaster("cart", from_version=1)
    def stamp(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "note": data.get("note") or "(from v1)"}

    return registry, Cart


OWNER = uuid.UUID("12345678-1234-5678-1234-567812345678")


def new_cart(v2: type[Record]) -> Record:
    fields = {f.name: f.type for f in msgspec.structs.fields(v2)}
    item_type = fields["items"].__args__[0]
    coupon_type = fields["coupon"].__args__[0]
    return v2(
        owner=OWNER,
        items=[item_type(sku="b-1", qty=2, kind=KindV2.GIFT, gift_wrap=True)],
        coupon=coupon_type(code="XMAS", percent=decimal.Decimal("12.5")),
        updated=dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC),
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_version_round_trip(fmt: str) -> None:
    registry, cart_v2 = v2_registry(fmt)
    cart = new_cart(cart_v2)
    assert registry.decode(registry.encode(cart), cart_v2) == cart


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_old_release_keeps_what_it_does_not_know_and_writes_it_back(fmt: str) -> None:
    new, cart_v2 = v2_registry(fmt)
    old, cart_v1 = v1_registry(fmt)
    written_by_new = new.encode(new_cart(cart_v2))

    read_by_old = old.decode(written_by_new, cart_v1)
    assert read_by_old.owner == OWNER  # type: ignore[attr-defined]
    item = read_by_old.items[0]  # type: ignore[attr-defined]
    assert (item.sku, item.qty) == ("b-1", 2)
    assert item.kind is Kind.BOOK, "an enum value it does not know falls back to the default"
    read_by_old.note = "edited by v1"  # type: ignore[attr-defined]

    back = new.decode(old.encode(read_by_old), cart_v2)
    expected = new_cart(cart_v2)
    expected.note = "edited by v1"  # type: ignore[attr-defined]
    assert back == expected, "fields, nested fields and enum values of v2 all survive"


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_new_release_reads_old_data_through_its_upcasters(fmt: str) -> None:
    new, cart_v2 = v2_registry(fmt)
    old, cart_v1 = v1_registry(fmt)
    item_v1 = msgspec.structs.fields(cart_v1)[1].type.__args__[0]
    cart = new.decode(old.encode(cart_v1(owner=OWNER, items=[item_v1(sku="a")])), cart_v2)
    assert cart.note == "(from v1)"  # type: ignore[attr-defined]
    assert cart.coupon is None  # type: ignore[attr-defined]
    assert cart.items[0].kind is KindV2.BOOK  # type: ignore[attr-defined]
    assert new.reads == {("cart", 1): 1}


def test_a_field_the_new_release_dropped_survives_its_write_back() -> None:
    old, cart_v1 = v1_registry("json")
    newer = Registry()

    @newer.record("cart", version=2)
    class Cart(Record):  # dropped "note", which had a default
        owner: uuid.UUID

    written = old.encode(cart_v1(owner=OWNER, note="keep me"))
    rewritten = newer.encode(newer.decode(written, Cart))
    assert old.decode(rewritten, cart_v1).note == "keep me"  # type: ignore[attr-defined]


def test_an_unknown_union_tag_in_a_defaulted_field_is_kept() -> None:
    class Card(Record, tag="card"):
        last4: str

    class Wire(Record, tag="wire"):
        iban: str

    class Crypto(Record, tag="crypto"):
        wallet: str

    old, new = Registry(), Registry()

    @old.record("order", version=1)
    class OrderV1(Record):
        total: int
        payment: Card | Wire | None = None

    @new.record("order", version=2)
    class OrderV2(Record):
        total: int
        payment: Card | Wire | Crypto | None = None

    written = new.encode(OrderV2(total=3, payment=Crypto(wallet="0xabc")))
    read = old.decode(written, OrderV1)
    assert read.payment is None
    assert new.decode(old.encode(read), OrderV2).payment == Crypto(wallet="0xabc")


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"", "not a zerodown record"),
        (b"\x80\x04pickle", "not a zerodown record"),
        (b'{"t":"cart","v":1,"r":1}', "not a zerodown record"),
        (b'{"t":"user","v":1,"r":1,"d":{}}', "it is a 'user' record"),
        (b'{"t":"cart","v":9,"r":9,"d":{}}', "requires readers of version 9 or newer"),
        (b'{"t":"cart","v":2,"r":1,"d":[1,2]}', "not an object"),
        (b'{"t":"cart","v":2,"r":1,"d":{"items":[]}}', "lacks required fields ['owner']"),
        (b'{"t":"cart","v":2,"r":1,"d":{"owner":"not-a-uuid"}}', "no default to fall back on"),
        (b'{"t":"cart","v":2,"r":1,"d":{"owner":' + b"[" * 5000 + b"]" * 5000 + b"}}", "cart"),
    ],
)
def test_unreadable_payloads_raise_one_clear_exception(payload: bytes, says: str) -> None:
    registry, cart_v2 = v2_registry("json")
    original = bytearray(payload)
    with pytest.raises(UnreadableRecord) as caught:
        registry.decode(original, cart_v2)
    assert says in str(caught.value)
    assert caught.value.type_name == "cart"
    assert original == payload, "the caller's bytes are never touched"


def test_payloads_over_the_size_limit_are_refused_before_parsing() -> None:
    registry = Registry(max_size=100)

    @registry.record("blob", version=1)
    class Blob(Record):
        text: str

    with pytest.raises(UnreadableRecord, match="more than the 100 allowed"):
        registry.decode(registry.encode(Blob(text="x" * 200)), Blob)


def test_a_failing_upcaster_makes_the_record_unreadable_not_a_crash() -> None:
    old, cart_v1 = v1_registry("json")
    new = Registry()

    @new.record("cart", version=2)
    class Cart(Record):
        owner: uuid.UUID

    @new.upcaster("cart", from_version=1)
    def broken(data: dict[str, Any]) -> dict[str, Any]:
        return {"owner": data["missing"]}

    with pytest.raises(UnreadableRecord, match="upcaster from version 1 failed: KeyError"):
        new.decode(old.encode(cart_v1(owner=OWNER)), Cart)


def test_rollout_mode_writes_the_previous_shape_until_switched() -> None:
    new, cart_v2 = v2_registry("json")
    old, cart_v1 = v1_registry("json")
    with pytest.raises(ValueError, match="register downcasters"):
        new.write_previous("cart", 1)

    @new.downcaster("cart", from_version=2)
    def drop_v2_fields(data: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in data.items() if k not in ("coupon", "updated")}

    new.write_previous("cart", 1)
    payload = new.encode(new_cart(cart_v2))
    assert msgspec.json.decode(payload)["v"] == 1
    assert old.decode(payload, cart_v1).owner == OWNER  # type: ignore[attr-defined]
    new.write_previous("cart", None)
    assert msgspec.json.decode(new.encode(new_cart(cart_v2)))["v"] == 2


def test_declaration_errors_say_what_to_fix() -> None:
    registry = Registry()
    with pytest.raises(ConfigurationError, match="versions start at 1"):
        registry.record("x", version=0)
    with pytest.raises(ConfigurationError, match="min_reader must be between 1 and 2"):
        registry.record("x", version=2, min_reader=3)
    with pytest.raises(ConfigurationError, match=r"must subclass zerodown\.codec\.Record"):
        registry.record("x", version=1)(msgspec.Struct)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="format must be"):
        Registry(format="pickle")  # type: ignore[arg-type]
