"""Sessions against a real redis-server: how many Redis calls a request costs, as the server
counts them."""

from __future__ import annotations

from tests.bed import Service
from tests.sessions.harness import (
    calls_between,
    client,
    commands,
    run,
)
from zerodown.sessions import (
    RedisStore,
)


def test_redis_calls_per_request(redis_server: Service) -> None:
    """As the server counts them. Each call is one script (EVALSHA, one round trip); the
    commands a script runs inside Redis are counted too."""

    async def main() -> list[dict[str, int]]:
        seen = []
        async with client(RedisStore(redis_server.url)) as http:
            await http.post("/set?key=warm&value=up")  # loads both scripts into Redis
            await http.get("/get")
            http.cookies.clear()
            for method, path in [
                ("GET", "/get"),  # no cookie: nothing to read
                ("POST", "/set?key=a&value=1"),  # creates the session
                ("GET", "/noop"),  # a cookie, read but not changed
                ("GET", "/get"),
                ("POST", "/set?key=b&value=2"),
            ]:
                before = commands(redis_server)
                assert (await http.request(method, path)).status_code == 200
                seen.append(calls_between(before, commands(redis_server)))
        return seen

    no_cookie, create, untouched, read, write = run(main)
    read_call = {"evalsha": 1, "hgetall": 1, "expire": 1}
    assert no_cookie == {}
    # The save script reads the stored fields (HGETALL, inside Redis) to hold max_size.
    assert create == {"evalsha": 1, "hgetall": 1, "hset": 1, "exists": 1, "expire": 1}
    assert untouched == read_call
    assert read == read_call
    assert write == {"evalsha": 2, "hgetall": 2, "hset": 1, "exists": 2, "expire": 2}
