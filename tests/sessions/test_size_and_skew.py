"""Sessions against a real redis-server: the size limit, and values written by another release."""

from __future__ import annotations

from typing import Any

import msgspec
import redis as redis_py

from tests.bed import Service
from tests.sessions.harness import (
    client,
    run,
    stored,
    with_cookie,
)
from zerodown.codec import Record, Registry
from zerodown.sessions import (
    RedisStore,
)


def test_a_session_larger_than_max_size_is_refused_whole(redis_server: Service) -> None:
    async def main() -> None:
        async with client(RedisStore(redis_server.url), max_size=1000) as http:
            await http.post("/set?key=a&value=small")
            big = await http.post("/set?key=b&value=" + "x" * 2000)
            assert big.status_code == 413
            assert "max_size=1000" in big.json()["error"]
            assert (await http.get("/get")).json() == {"a": "small"}

    run(main)


def cart_registry(version: int) -> dict[str, Any]:
    """The options of an app whose cart record is at ``version``."""
    records = Registry()
    if version == 1:

        @records.record("cart", version=1)
        class CartV1(Record):
            items: list[str] = msgspec.field(default_factory=list)

        return {"records": records, "cart_type": CartV1}

    @records.record("cart", version=2, min_reader=1)
    class CartV2(Record):
        items: list[str] = msgspec.field(default_factory=list)
        coupon: str | None = None

    return {"records": records, "cart_type": CartV2}


def test_versions_a_and_b_share_sessions_without_losing_fields(redis_server: Service) -> None:
    store = RedisStore(redis_server.url)
    version_a, version_b = cart_registry(1), cart_registry(2)

    async def main() -> None:
        async with client(store, **version_b) as b:
            await b.post("/cart/add?item=book")
            cookie = b.cookies["session"]
        connection = redis_py.Redis.from_url(redis_server.url)
        (key,) = stored(redis_server)
        # Version B's own field, which version A does not know.
        raw = connection.hget(key, "cart")
        assert raw is not None
        connection.hset(key, "cart", raw.replace(b'"coupon":null', b'"coupon":"SAVE10"'))
        for turn, options in enumerate([version_a, version_b, version_a]):
            async with client(store, **options) as http:
                response = await http.post(
                    f"/cart/add?item=item{turn}", headers=with_cookie(cookie)
                )
                assert response.status_code == 200
        final = version_b["records"].decode_registered(connection.hget(key, "cart")[1:])
        assert final.items == ["book", "item0", "item1", "item2"]  # type: ignore[attr-defined]
        assert final.coupon == "SAVE10"  # type: ignore[attr-defined]

    run(main)


def test_a_record_this_release_cannot_read_is_left_untouched(redis_server: Service) -> None:
    store = RedisStore(redis_server.url)
    future = Registry()

    @future.record("cart", version=5, min_reader=5)
    class CartV5(Record):
        items: list[str] = msgspec.field(default_factory=list)

    async def main() -> None:
        async with client(store, records=future, cart_type=CartV5) as newer:
            await newer.post("/cart/add?item=book")
            cookie = newer.cookies["session"]
        before = stored(redis_server)
        for policy, status in (("fail", 503), ("anonymous", 200)):
            async with client(store, **cart_registry(1), on_unavailable=policy) as old:
                answer = await old.post("/cart/add?item=pen", headers=with_cookie(cookie))
                assert answer.status_code == status
        assert stored(redis_server) == before

    run(main)
