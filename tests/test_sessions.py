"""Sessions against a real redis-server: ids, rotation, concurrency, outages, bad data."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import pytest
import redis as redis_py
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.bed import ProcessGroup, Service
from zerodown._session import storage_key
from zerodown.codec import Record, Registry
from zerodown.sessions import (
    MemoryStore,
    RedisStore,
    SessionMiddleware,
    SessionStore,
    SessionTooLarge,
    Signer,
)

SECRET = "first-secret-of-32-characters-xx"
OLD_SECRET = "older-secret-of-32-characters-xx"
PREFIX = "zerodown:session:"


class Gates:
    """Events the test opens to interleave concurrent requests deterministically."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}
        self.arrived: dict[str, asyncio.Event] = {}

    def event(self, name: str) -> asyncio.Event:
        return self.events.setdefault(name, asyncio.Event())

    def arrival(self, name: str) -> asyncio.Event:
        return self.arrived.setdefault(name, asyncio.Event())

    async def hold(self, name: str | None) -> None:
        if name:
            self.arrival(name).set()
            await self.event(name).wait()


def make_app(gates: Gates, cart_type: type[Any] | None = None) -> Starlette:
    async def get(request: Request) -> JSONResponse:
        await gates.hold(request.query_params.get("gate"))
        return JSONResponse(dict(request.session.items()))

    async def put(request: Request) -> Response:
        session = request.session
        await gates.hold(request.query_params.get("gate"))
        try:
            session[request.query_params["key"]] = request.query_params.get("value", "")
        except SessionTooLarge as error:
            return JSONResponse({"error": str(error)}, status_code=413)
        return JSONResponse(dict(session.items()))

    async def noop(request: Request) -> Response:
        return Response("ok")

    async def login(request: Request) -> JSONResponse:
        request.session.regenerate()
        request.session["user"] = request.query_params["user"]
        return JSONResponse(dict(request.session.items()))

    async def logout(request: Request) -> Response:
        request.session.invalidate()
        return Response("bye")

    async def add_to_cart(request: Request) -> JSONResponse:
        assert cart_type is not None
        cart = request.session.get("cart") or cart_type()
        cart.items.append(request.query_params["item"])
        request.session["cart"] = cart
        return JSONResponse({"items": cart.items})

    return Starlette(
        routes=[
            Route("/get", get),
            Route("/set", put, methods=["POST"]),
            Route("/noop", noop),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/cart/add", add_to_cart, methods=["POST"]),
        ]
    )


@asynccontextmanager
async def client(
    store: SessionStore, gates: Gates | None = None, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = SessionMiddleware(
        make_app(gates or Gates(), options.pop("cart_type", None)),
        store=store,
        secrets=options.pop("secrets", [SECRET]),
        **options,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


def with_cookie(value: str) -> dict[str, bytes]:
    """A Cookie header as a browser would send it (any bytes, not only ASCII)."""
    return {"cookie": f"session={value}".encode("latin-1", "replace")}


def commands(server: Service) -> dict[str, int]:
    """Calls per command so far, as the server counts them."""
    stats = redis_py.Redis.from_url(server.url).info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def calls_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    changed = {name: after[name] - before.get(name, 0) for name in after}
    return {name: n for name, n in changed.items() if n and name not in ("info", "hello")}


def stored(server: Service) -> dict[bytes, dict[bytes, bytes]]:
    connection = redis_py.Redis.from_url(server.url)
    return {key: connection.hgetall(key) for key in connection.keys(f"{PREFIX}*")}


def run(coroutine: Callable[[], Any]) -> Any:
    return asyncio.run(coroutine())


# -- cost -----------------------------------------------------------------------------------


def test_redis_calls_per_request(redis_server: Service) -> None:
    """Round trips as the server counts them: a read is one pipeline (HGETALL + EXPIRE),
    a write one script (EVALSHA; the commands it runs inside count too)."""

    async def main() -> list[dict[str, int]]:
        seen = []
        async with client(RedisStore(redis_server.url)) as http:
            await http.post("/set?key=warm&value=up")  # loads the script into Redis
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
    in_script = {"exists", "hset", "hdel"}
    assert no_cookie == {}
    assert {k: v for k, v in create.items() if k not in in_script} == {"evalsha": 1, "expire": 1}
    assert untouched == {"hgetall": 1, "expire": 1}
    assert read == {"hgetall": 1, "expire": 1}
    assert {k: v for k, v in write.items() if k not in in_script} == {
        "hgetall": 1,
        "expire": 2,  # the read's, and the script's
        "evalsha": 1,
    }


# -- ids and cookies ---------------------------------------------------------------------


def test_cookies_are_secure_by_default_and_ids_are_stored_hashed(redis_server: Service) -> None:
    async def main() -> httpx.Response:
        async with client(RedisStore(redis_server.url)) as http:
            return await http.post("/set?key=a&value=1")

    response = run(main)
    cookie = response.headers["set-cookie"]
    value = cookie.split(";")[0].removeprefix("session=")
    for attribute in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=1209600"):
        assert attribute in cookie
    session_id = value.rpartition(".")[0]
    assert len(session_id) == 43  # 256 bits in URL-safe base64
    keys = list(stored(redis_server))
    assert keys == [f"{PREFIX}{storage_key(session_id)}".encode()]
    assert session_id.encode() not in keys[0]


def test_an_unknown_id_is_never_adopted(redis_server: Service) -> None:
    planted = Signer([SECRET]).sign("A" * 43)  # validly signed, but not in the store

    async def main() -> httpx.Response:
        async with client(RedisStore(redis_server.url)) as http:
            return await http.post("/set?key=user&value=victim", headers=with_cookie(planted))

    response = run(main)
    issued = response.headers["set-cookie"].split(";")[0].removeprefix("session=")
    assert issued != planted
    assert f"{PREFIX}{storage_key('A' * 43)}".encode() not in stored(redis_server)


@pytest.mark.parametrize(
    "cookie",
    [
        "garbage",
        "",
        "A" * 43 + ".forged-signature",
        Signer(["somebody-elses-secret-32-chars-x"]).sign("B" * 43),
        "x" * 5000,
        "\u00e9\u00e8.abc",
    ],
)
def test_a_bad_cookie_is_an_anonymous_session(redis_server: Service, cookie: str) -> None:
    async def main() -> httpx.Response:
        async with client(RedisStore(redis_server.url)) as http:
            return await http.get("/get", headers=with_cookie(cookie))

    response = run(main)
    assert (response.status_code, response.json()) == (200, {})


def test_login_regenerates_and_logout_deletes(redis_server: Service) -> None:
    async def main() -> tuple[str, str, str]:
        async with client(RedisStore(redis_server.url)) as http:
            await http.post("/set?key=theme&value=dark")
            before = http.cookies["session"]
            login = await http.post("/login?user=ada")
            after = http.cookies["session"]
            assert login.json() == {"theme": "dark", "user": "ada"}
            assert len(stored(redis_server)) == 1  # the old record is gone
            assert (await http.get("/get")).json() == {"theme": "dark", "user": "ada"}
            logout = await http.post("/logout")
            return before, after, logout.headers["set-cookie"]

    before, after, cleared = run(main)
    assert before != after
    assert "Max-Age=0" in cleared
    assert stored(redis_server) == {}


def test_a_rotated_key_keeps_everyone_logged_in(redis_server: Service) -> None:
    async def main() -> None:
        store = RedisStore(redis_server.url)
        async with client(store, secrets=[OLD_SECRET]) as old:
            await old.post("/set?key=user&value=ada")
            cookie = old.cookies["session"]
        async with client(store, secrets=[SECRET, OLD_SECRET]) as rotated:
            response = await rotated.get("/get", headers=with_cookie(cookie))
            assert response.json() == {"user": "ada"}
            resigned = response.headers["set-cookie"].split(";")[0].removeprefix("session=")
            assert resigned != cookie
            assert Signer([SECRET]).verify(resigned) is not None
        async with client(store, secrets=[SECRET]) as dropped_old_key:
            assert (await dropped_old_key.get("/get", headers=with_cookie(cookie))).json() == {}

    run(main)


# -- concurrency ------------------------------------------------------------------------------


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


# -- outages ----------------------------------------------------------------------------------


def test_a_dead_redis_gives_503_or_an_anonymous_session_and_logs_once(
    procs: ProcessGroup, caplog: pytest.LogCaptureFixture
) -> None:
    server = procs.redis()

    async def main() -> tuple[list[httpx.Response], list[httpx.Response]]:
        store = RedisStore(server.url)
        async with client(store) as failing, client(store, on_unavailable="anonymous") as lenient:
            await failing.post("/set?key=user&value=ada")
            cookie = with_cookie(failing.cookies["session"])
            server.process.stop(signal.SIGKILL)
            refused = [await failing.get("/get") for _ in range(3)]
            served = [
                await lenient.post("/set?key=cart&value=book", headers=cookie) for _ in range(3)
            ]
            return refused, served

    with caplog.at_level(logging.WARNING, logger="zerodown"):
        refused, served = run(main)
    for response in refused:
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
    for response in served:
        assert (response.status_code, response.json()) == (200, {"cart": "book"})
        assert "set-cookie" not in response.headers
    assert caplog.text.count("unavailable") == 1


def test_a_paused_redis_is_bounded_and_the_stored_session_is_kept(
    redis_server: Service,
) -> None:
    async def main() -> None:
        store = RedisStore(redis_server.url)
        async with client(store, on_unavailable="anonymous") as http:
            await http.post("/set?key=user&value=ada")
            pauser = redis_py.Redis.from_url(redis_server.url)
            pause = asyncio.create_task(
                asyncio.to_thread(pauser.execute_command, "DEBUG", "SLEEP", "1.5")
            )
            await asyncio.sleep(0.2)
            started = asyncio.get_running_loop().time()
            response = await http.post("/set?key=user&value=mallory")
            elapsed = asyncio.get_running_loop().time() - started
            assert (response.status_code, response.json()) == (200, {"user": "mallory"})
            assert elapsed < 1.2  # bounded by the 250 ms timeout, not by the pause
            await pause
            assert (await http.get("/get")).json() == {"user": "ada"}

    run(main)


# -- size and version skew ----------------------------------------------------------------------


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


# -- the memory store --------------------------------------------------------------------------


def test_the_memory_store_keeps_the_same_rules_and_its_bound() -> None:
    async def main() -> None:
        store = MemoryStore(max_sessions=2)
        async with client(store) as first:
            await first.post("/set?key=a&value=1")
            async with client(store) as second, client(store) as third:
                await second.post("/set?key=b&value=2")
                await third.post("/set?key=c&value=3")
            assert (await first.get("/get")).json() == {}  # the least recently used went

    run(main)


def test_plain_http_cookies_are_an_explicit_logged_opt_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="zerodown"):
        SessionMiddleware(make_app(Gates()), store=MemoryStore(), secrets=[SECRET], secure=False)
    assert "without Secure" in caplog.text
