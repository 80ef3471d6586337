"""Sessions against a real redis-server: concurrent requests of one user: merges and logouts."""

from __future__ import annotations

import asyncio

from tests.bed import Service
from tests.sessions.harness import (
    Gates,
    client,
    run,
    stored,
    with_cookie,
)
from zerodown.sessions import (
    RedisStore,
)


def test_concurrent_requests_changing_different_keys_both_persist(
    redis_server: Service,
) -> None:
    async def main() -> dict[str, str]:
        gates = Gates()
        async with client(RedisStore(redis_server.url), gates) as http:
            await http.post("/set?key=a&value=0")
            first = asyncio.create_task(http.post("/set?key=b&value=1&gate=b"))
            second = asyncio.create_task(http.post("/set?key=a&value=2&gate=a"))
            await gates.arrival("a").wait()
            await gates.arrival("b").wait()  # both read a=0 before either wrote
            gates.event("a").set()
            await second
            gates.event("b").set()  # writes last: it must not put its stale a=0 back
            await first
            return dict((await http.get("/get")).json())

    assert run(main) == {"a": "2", "b": "1"}


def test_a_slow_read_only_request_never_writes(redis_server: Service) -> None:
    async def main() -> dict[str, str]:
        gates = Gates()
        async with client(RedisStore(redis_server.url), gates) as http:
            await http.post("/set?key=a&value=old")
            slow = asyncio.create_task(http.get("/get?gate=slow"))
            await gates.arrival("slow").wait()
            await http.post("/set?key=a&value=new")
            gates.event("slow").set()
            assert (await slow).json() == {"a": "old"}
            return dict((await http.get("/get")).json())

    assert run(main) == {"a": "new"}


def test_a_logout_is_not_undone_by_a_slower_request(redis_server: Service) -> None:
    async def main() -> None:
        gates = Gates()
        async with client(RedisStore(redis_server.url), gates) as http:
            await http.post("/set?key=user&value=ada")
            cookie = http.cookies["session"]
            slow = asyncio.create_task(http.post("/set?key=cart&value=book&gate=slow"))
            await gates.arrival("slow").wait()
            await http.post("/logout")
            gates.event("slow").set()
            await slow
            assert stored(redis_server) == {}
            http.cookies.clear()
            assert (await http.get("/get", headers=with_cookie(cookie))).json() == {}

    run(main)
