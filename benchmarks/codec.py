"""Encoding and decoding a typical 1 KB session record, against three baselines.

    pip install -r benchmarks/requirements.txt
    python -m benchmarks.codec [--write]

The same data as a zerodown record (envelope included), as the raw msgspec struct (no
envelope), as a pydantic v2 model, and as plain dicts through the stdlib json module.
One operation is an encode plus a decode. Rounds alternate the four and the result is the
median of each one's per-round time. Targets: within 2x of raw msgspec, at least 5x faster
than pydantic v2, at least 3x faster than stdlib json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable

import msgspec
import pydantic

from benchmarks._report import report
from zerodown.codec import Record, Registry

ROUNDS = 21
OPS = 2_000


class Item(Record):
    sku: str
    qty: int
    price: decimal.Decimal
    added: dt.datetime


records = Registry()


@records.record("session", version=3)
class Session(Record):
    user_id: uuid.UUID
    created: dt.datetime
    locale: str
    roles: list[str]
    cart: list[Item]
    flags: dict[str, bool]
    csrf: str


class RawItem(msgspec.Struct):
    sku: str
    qty: int
    price: decimal.Decimal
    added: dt.datetime


class RawSession(msgspec.Struct):
    user_id: uuid.UUID
    created: dt.datetime
    locale: str
    roles: list[str]
    cart: list[RawItem]
    flags: dict[str, bool]
    csrf: str


class PydanticItem(pydantic.BaseModel):
    sku: str
    qty: int
    price: decimal.Decimal
    added: dt.datetime


class PydanticSession(pydantic.BaseModel):
    user_id: uuid.UUID
    created: dt.datetime
    locale: str
    roles: list[str]
    cart: list[PydanticItem]
    flags: dict[str, bool]
    csrf: str


NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
FIELDS = {
    "user_id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "created": NOW,
    "locale": "en-GB",
    "roles": ["customer", "beta"],
    "flags": {"dark_mode": True, "newsletter": False, "tour_done": True},
    "csrf": "9f8e7d6c5b4a39281706f5e4d3c2b1a0" * 2,
}
ITEMS = [
    {"sku": f"SKU-{i:05d}-BLUE-XL", "qty": i + 1, "price": decimal.Decimal("19.99"), "added": NOW}
    for i in range(8)
]
zerodown_value = Session(**FIELDS, cart=[Item(**item) for item in ITEMS])
raw_value = RawSession(**FIELDS, cart=[RawItem(**item) for item in ITEMS])
pydantic_value = PydanticSession(**FIELDS, cart=[PydanticItem(**item) for item in ITEMS])
plain_value = msgspec.to_builtins(raw_value)
raw_encoder, raw_decoder = msgspec.json.Encoder(), msgspec.json.Decoder(RawSession)


def zerodown_op() -> object:
    return records.decode(records.encode(zerodown_value), Session)


def raw_op() -> object:
    return raw_decoder.decode(raw_encoder.encode(raw_value))


def pydantic_op() -> object:
    return PydanticSession.model_validate_json(pydantic_value.model_dump_json())


def json_op() -> object:
    return json.loads(json.dumps(plain_value))


CASES: dict[str, Callable[[], object]] = {
    "zerodown": zerodown_op,
    "msgspec (raw struct)": raw_op,
    "pydantic v2": pydantic_op,
    "stdlib json (plain dicts)": json_op,
}


def measure() -> dict[str, float]:
    assert zerodown_op() == zerodown_value
    times: dict[str, list[float]] = {name: [] for name in CASES}
    names = list(CASES)
    for round_number in range(ROUNDS):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            operation = CASES[name]
            started = time.perf_counter()
            for _ in range(OPS):
                operation()
            times[name].append((time.perf_counter() - started) / OPS)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    size = len(records.encode(zerodown_value))
    medians = measure()
    ours = medians["zerodown"]
    targets = {
        "msgspec (raw struct)": ("within 2x", ours <= 2 * medians["msgspec (raw struct)"]),
        "pydantic v2": (">= 5x faster", medians["pydantic v2"] >= 5 * ours),
        "stdlib json (plain dicts)": (
            ">= 3x faster",
            medians["stdlib json (plain dicts)"] >= 3 * ours,
        ),
    }
    rows = []
    for name, seconds in medians.items():
        ratio = seconds / ours
        target, met = targets.get(name, ("", True))
        verdict = f"{target} {'met' if met else 'MISSED'}" if target else ""
        rows.append(
            f"| {name} | {seconds * 1e6:.2f} us | {ratio:.2f}x zerodown's time | {verdict} |"
        )
    body = f"""## Versioned records (`benchmarks/codec.py`)

Encode + decode of a session record of {size} bytes (JSON, envelope included): a user id,
timestamps, roles, flags and a cart of 8 items with decimal prices. Median of {ROUNDS}
alternating rounds of {OPS:,} operations each.

| codec | per encode + decode | relative | target |
|---|---|---|---|
{chr(10).join(rows)}

The raw msgspec struct is the floor: the same data without the envelope or the version
bookkeeping. The stdlib json row does less work than the others (no types: it returns
plain dicts) and is still slower. The targets against pydantic v2 (5x) and stdlib json
(3x) ask for more than the floor itself reaches on this record: raw msgspec is
{medians["pydantic v2"] / medians["msgspec (raw struct)"]:.1f}x faster than pydantic v2 and
{medians["stdlib json (plain dicts)"] / medians["msgspec (raw struct)"]:.1f}x faster than
stdlib json here, so no msgspec-based codec within 2x of it can meet them on this record.
"""
    return report("codec", body, write=args.write, met=all(met for _, met in targets.values()))


if __name__ == "__main__":
    sys.exit(main())
