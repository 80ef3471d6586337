"""Encoding and decoding a typical 1 KB session record, against three baselines.

    pip install -r benchmarks/requirements.txt
    python -m benchmarks.codec [--write]

The same data as a zerodown record (envelope included), as the raw msgspec struct (no
envelope), as a pydantic v2 model, and as plain dicts through the stdlib json module.
One operation is an encode plus a decode. Rounds alternate the four and the result is the
median of each one's per-round time. Targets: within 1.3x of raw msgspec (the floor), at
least 3x faster than pydantic v2 and than stdlib json.
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
from typing import Any

import msgspec
import pydantic

from benchmarks._report import report
from zerodown.codec import Record, Registry

ROUNDS = 41
OPS = 2_000
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
FIELDS: dict[str, object] = {
    "user_id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "created": NOW,
    "locale": "en-GB",
    "roles": ["customer", "beta"],
    "flags": {"dark_mode": True, "newsletter": False, "tour_done": True},
    "csrf": "9f8e7d6c5b4a39281706f5e4d3c2b1a0" * 2,
}


def cases_for(price_type: type, price: object) -> tuple[int, dict[str, Callable[[], object]]]:
    """The session record with prices of ``price_type``, as each codec holds it: its size
    as zerodown encodes it, and one encode + decode with each codec."""
    item_fields = [("sku", str), ("qty", int), ("price", price_type), ("added", dt.datetime)]
    session_fields: list[tuple[str, Any]] = [
        ("user_id", uuid.UUID),
        ("created", dt.datetime),
        ("locale", str),
        ("roles", list[str]),
        ("flags", dict[str, bool]),
        ("csrf", str),
    ]
    items = [
        {"sku": f"SKU-{i:05d}-BLUE-XL", "qty": i + 1, "price": price, "added": NOW}
        for i in range(8)
    ]

    records = Registry()
    item = msgspec.defstruct("Item", item_fields, bases=(Record,), kw_only=True)
    session = records.record("session", version=3)(
        msgspec.defstruct(
            "Session", [*session_fields, ("cart", list[item])], bases=(Record,), kw_only=True
        )
    )
    raw_item = msgspec.defstruct("RawItem", item_fields)
    raw_session = msgspec.defstruct("RawSession", [*session_fields, ("cart", list[raw_item])])
    pydantic_item = pydantic.create_model(
        "PydanticItem", **{name: (kind, ...) for name, kind in item_fields}
    )
    pydantic_session = pydantic.create_model(
        "PydanticSession",
        **{name: (kind, ...) for name, kind in session_fields},
        cart=(list[pydantic_item], ...),  # type: ignore[valid-type]
    )

    zerodown_value = session(**FIELDS, cart=[item(**fields) for fields in items])
    raw_value = raw_session(**FIELDS, cart=[raw_item(**fields) for fields in items])
    pydantic_value = pydantic_session(**FIELDS, cart=[pydantic_item(**fields) for fields in items])
    plain_value = msgspec.to_builtins(raw_value)
    raw_encoder, raw_decoder = msgspec.json.Encoder(), msgspec.json.Decoder(raw_session)
    assert records.decode(records.encode(zerodown_value), session) == zerodown_value
    cases: dict[str, Callable[[], object]] = {
        "zerodown": lambda: records.decode(records.encode(zerodown_value), session),
        "msgspec (raw struct)": lambda: raw_decoder.decode(raw_encoder.encode(raw_value)),
        "pydantic v2": lambda: pydantic_session.model_validate_json(
            pydantic_value.model_dump_json()
        ),
        "stdlib json (plain dicts)": lambda: json.loads(json.dumps(plain_value)),
    }
    return len(records.encode(zerodown_value)), cases


def measure(cases: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Each codec's seconds per operation in each round, the rounds rotating the order."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for round_number in range(ROUNDS):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            operation = cases[name]
            started = time.perf_counter()
            for _ in range(OPS):
                operation()
            times[name].append((time.perf_counter() - started) / OPS)
    return times


#: What each baseline's time must be, as a multiple of zerodown's.
TARGETS = {
    "msgspec (raw struct)": ("within 1.3x", 1 / 1.3),
    "pydantic v2": (">= 3x faster", 3.0),
    "stdlib json (plain dicts)": (">= 3x faster", 3.0),
}


def paired(times: dict[str, list[float]], name: str) -> float:
    """The median over rounds of ``name``'s time over zerodown's in the same round: the
    machine's speed drifts between rounds by more than the differences measured here."""
    return statistics.median(
        theirs / ours for theirs, ours in zip(times[name], times["zerodown"], strict=True)
    )


def table(times: dict[str, list[float]], *, judged: bool = True) -> tuple[str, bool]:
    """The rows of one record's table, and whether every target was met."""
    rows, all_met = [], True
    for name, seconds in times.items():
        ratio = paired(times, name)
        verdict = ""
        if judged and name in TARGETS:
            target, at_least = TARGETS[name]
            met = ratio >= at_least
            all_met &= met
            verdict = f"{target} {'met' if met else 'MISSED'}"
        median = statistics.median(seconds)
        rows.append(
            f"| {name} | {median * 1e6:.2f} us | {ratio:.2f}x zerodown's time | {verdict} |"
        )
    return "\n".join(rows), all_met


def floor(times: dict[str, list[float]]) -> str:
    raw = paired(times, "msgspec (raw struct)")
    return (
        f"{paired(times, 'pydantic v2') / raw:.1f}x faster than pydantic v2 and "
        f"{paired(times, 'stdlib json (plain dicts)') / raw:.1f}x faster than stdlib json"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    size, cents_cases = cases_for(int, 1999)
    decimal_size, decimal_cases = cases_for(decimal.Decimal, decimal.Decimal("19.99"))
    cents, decimals = measure(cents_cases), measure(decimal_cases)
    cents_rows, met = table(cents)
    decimal_rows, _ = table(decimals, judged=False)
    header = "| codec | per encode + decode | relative | target |\n|---|---|---|---|"
    body = f"""## Versioned records (`benchmarks/codec.py`)

Encode + decode of a session record of {size} bytes (JSON, envelope included): a user id
(UUID), a timestamp, locale, roles, flags, a CSRF token and a cart of 8 items, each with a
price in cents and a timestamp. {ROUNDS} rounds of {OPS:,} operations of each codec, the
order rotating; the time column is each codec's median, the relative column the median of
its per-round ratio to zerodown's (paired, as the machine's speed drifts between rounds).

{header}
{cents_rows}

The raw msgspec struct is the floor: the same data without the envelope or the version
bookkeeping, so the first target says what the envelope, the version checks (a crafted
version is refused before anything loops) and the read counts cost. The stdlib json row
does less work than the others (no types: it returns plain dicts). Raw msgspec is
{floor(cents)} on this record; an earlier target of 5x against pydantic v2 asked for more
than that floor, which no msgspec-based codec can pass, and was replaced by this one.
The targets are judged on this record.

The same record with `Decimal` prices ({decimal_size} bytes), where every codec calls
Python's `Decimal` for each price and the differences shrink (raw msgspec is
{floor(decimals)}); shown for scale, not judged:

{header}
{decimal_rows}
"""
    return report("codec", body, write=args.write, met=met)


if __name__ == "__main__":
    sys.exit(main())
