"""Sessions against a real redis-server: ids, rotation, concurrency, outages, bad data."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis as redis_py
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tests.bed import ProcessGroup, Service
from zerodown import ConfigurationError
from zerodown._cli.procs import LOOPBACK, free_port, wait_for_port
from zerodown._cli.rehearse.plan import RehearsalPlan
from zerodown._cli.rehearse.progress import Progress
from zerodown._cli.rehearse.report import RehearsalReport
from zerodown._cli.rehearse.run import rehearse
from zerodown._sessions.session import storage_key
from zerodown.codec import Record, Registry
from zerodown.sessions import (
    MemoryStore,
    RedisStore,
    SessionMiddleware,
    SessionStore,
    SessionTooLarge,
    Signer,
    init_flask,
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

    async def loaded(request: Request) -> JSONResponse:
        await request.session.load()
        return JSONResponse(dict(request.session.items()))

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.session["seen"] = websocket.session.get("user", "nobody")
        await websocket.send_json(dict(websocket.session.items()))
        await websocket.close()

    return Starlette(
        routes=[
            WebSocketRoute("/ws", socket),
            Route("/loaded", loaded),
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
    assert create == {"evalsha": 1, "hset": 1, "exists": 1, "expire": 1}
    assert untouched == read_call
    assert read == read_call
    assert write == {"evalsha": 2, "hgetall": 1, "hset": 1, "exists": 2, "expire": 2}


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


def test_without_a_store_sessions_live_in_memory_and_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="zerodown"):
        app = SessionMiddleware(make_app(Gates()), secrets=[SECRET])
    assert isinstance(app.store, MemoryStore)
    assert "kept in this process's memory" in caplog.text


def test_plain_http_cookies_are_an_explicit_logged_opt_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="zerodown"):
        SessionMiddleware(make_app(Gates()), store=MemoryStore(), secrets=[SECRET], secure=False)
    assert "without Secure" in caplog.text


# -- WSGI and Flask ------------------------------------------------------------------------------


def flask_client(store: SessionStore, **options: Any) -> httpx.Client:
    from flask import Flask, jsonify, request, session

    app = Flask(__name__)

    @app.get("/get")
    def get() -> Any:
        return jsonify(dict(session.items()))

    @app.post("/set")
    def put() -> Any:
        session[request.args["key"]] = request.args.get("value", "")
        return jsonify(dict(session.items()))

    @app.get("/noop")
    def noop() -> Any:
        return "ok"

    @app.post("/append")
    def append() -> Any:
        session["list"].append(request.args["value"])  # in place: Flask's idiom follows
        session.modified = True
        return jsonify(dict(session.items()))

    @app.post("/logout")
    def logout() -> Any:
        session.invalidate()  # type: ignore[attr-defined]
        return "bye"

    init_flask(app, store=store, secrets=[SECRET], **options)
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://testserver")


def test_flask_session_is_a_zerodown_session(redis_server: Service) -> None:
    with flask_client(RedisStore(redis_server.url)) as http:
        assert http.post("/set?key=user&value=ada").json() == {"user": "ada"}
        assert http.post("/set?key=theme&value=dark").status_code == 200
        assert http.get("/get").json() == {"user": "ada", "theme": "dark"}
        (key,) = stored(redis_server)
        assert stored(redis_server)[key] == {b"user": b'j"ada"', b"theme": b'j"dark"'}
        http.post("/set?key=list")
        redis_py.Redis.from_url(redis_server.url).hset(key, "list", b'j["a"]')
        http.post("/append?value=b")
        assert http.get("/get").json()["list"] == ["a", "b"]
        http.post("/logout")
        assert stored(redis_server) == {}


def test_flask_under_a_dead_or_paused_redis(procs: ProcessGroup) -> None:
    server = procs.redis()
    store = RedisStore(redis_py.Redis.from_url(server.url, socket_timeout=0.25))
    with flask_client(store) as failing, flask_client(store, on_unavailable="anonymous") as lenient:
        failing.post("/set?key=user&value=ada")
        cookie = with_cookie(failing.cookies["session"])
        pauser = redis_py.Redis.from_url(server.url)
        with ThreadPoolExecutor(1) as pool:
            pause = pool.submit(pauser.execute_command, "DEBUG", "SLEEP", "1.5")
            time.sleep(0.2)
            started = time.monotonic()
            refused = failing.get("/get")
            assert time.monotonic() - started < 1.2
            assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
            answer = lenient.post("/set?key=user&value=mallory", headers=cookie)
            assert (answer.status_code, answer.json()) == (200, {"user": "mallory"})
            pause.result()
        assert failing.get("/get").json() == {"user": "ada"}
        server.process.stop(signal.SIGKILL)
        assert failing.get("/get").status_code == 503
        assert lenient.get("/get", headers=cookie).json() == {}


def test_a_store_given_the_wrong_kind_of_client_says_which_it_needs(
    redis_server: Service,
) -> None:
    import redis.asyncio as redis_asyncio

    store = RedisStore(redis_asyncio.Redis.from_url(redis_server.url))
    with flask_client(store) as http, pytest.raises(ConfigurationError, match="sync one"):
        http.post("/set?key=a&value=1")


# -- the examples, and a rolling restart ----------------------------------------------------------


def example_env(server: Service) -> dict[str, str]:
    return {
        "REDIS_URL": server.url,
        "ZERODOWN_SESSION_SECRETS": f"{SECRET},{OLD_SECRET}",
        "SESSION_COOKIE_SECURE": "0",  # the test bed speaks plain http
    }


@pytest.mark.parametrize("example", ["starlette_app", "fastapi_app", "flask_app"])
def test_the_examples_keep_a_cart_that_their_instances_share(
    procs: ProcessGroup, redis_server: Service, example: str
) -> None:
    app, env = f"examples.{example}:app", example_env(redis_server)
    if example == "flask_app":
        instances = [procs.gunicorn(app, env=env, args=["-k", "gthread"]) for _ in range(2)]
    else:
        instances = [procs.uvicorn(app, env=env) for _ in range(2)]
    with httpx.Client() as http:
        assert http.post(f"{instances[0].url}/cart/add?item=book").json() == {"items": ["book"]}
        cookie = http.cookies["session"]
        added = http.post(f"{instances[1].url}/cart/add?item=pen")
        assert added.json() == {"items": ["book", "pen"]}
        assert http.get(f"{instances[0].url}/cart").json() == {"items": ["book", "pen"]}
        assert http.post(f"{instances[1].url}/cart/add?item=").status_code in (400, 422)
        assert http.cookies["session"] == cookie


def rolling_restart_with_carts(
    procs: ProcessGroup, tmp_path: Path, *, disabled: bool
) -> RehearsalReport:
    """Two Starlette examples replaced in turn while 30% of requests add to session carts."""
    plan = RehearsalPlan(
        "examples.starlette_app:app",
        rate=100,
        duration=22,  # the deploy takes about 13 s after a few steady seconds
        cart_fraction=0.3,
        env=example_env(procs.redis()),
        disabled=disabled,
    )
    return rehearse(plan, tmp_path, Progress(None))


@pytest.mark.e2e
def test_a_rolling_restart_loses_no_request_and_no_cart_item(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    report = rolling_restart_with_carts(procs, tmp_path, disabled=False)
    result = report.result
    assert result.failed == [], report.render()
    assert result.lost_cart_items() == [], report.render()
    added = result.cart_additions
    assert len(added) >= 300, report.render()
    # Visitors whose carts grew from before the deploy to after it: their session moved.
    spanning = {
        record.visitor
        for record in added
        if record.started > report.deploy_ended and len(record.cart or ()) > 1
    } & {record.visitor for record in added if record.ended < report.deploy_started}
    assert spanning, report.render()


def test_lazy_sessions_cost_nothing_until_used(redis_server: Service) -> None:
    async def main() -> None:
        store = RedisStore(redis_server.url)
        async with client(store) as eager:
            await eager.post("/set?key=warm&value=up")
            cookie = with_cookie(eager.cookies["session"])
        async with client(store, lazy=True) as http:
            before = commands(redis_server)
            assert (await http.get("/noop", headers=cookie)).status_code == 200
            assert calls_between(before, commands(redis_server)) == {}
            assert (await http.get("/loaded", headers=cookie)).json() == {"warm": "up"}
            with pytest.raises(RuntimeError, match=r"await request.session.load\(\)"):
                await http.get("/get", headers=cookie)

    run(main)


def test_a_flask_route_that_never_touches_the_session_costs_nothing(
    redis_server: Service,
) -> None:
    with flask_client(RedisStore(redis_server.url)) as http:
        http.post("/set?key=user&value=ada")
        before = commands(redis_server)
        assert http.get("/noop").text == "ok"
        assert calls_between(before, commands(redis_server)) == {}


def test_websockets_read_and_change_the_session() -> None:
    store = MemoryStore()
    app = SessionMiddleware(make_app(Gates()), store=store, secrets=[SECRET])

    async def websocket(cookie: str) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        inbox = [{"type": "websocket.connect"}]

        async def receive() -> dict[str, Any]:
            if inbox:
                return inbox.pop()
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

        async def send(message: Any) -> None:
            sent.append(dict(message))

        scope = {
            "type": "websocket",
            "path": "/ws",
            "raw_path": b"/ws",
            "query_string": b"",
            "root_path": "",
            "scheme": "wss",
            "headers": [(b"cookie", f"session={cookie}".encode())],
            "client": ("127.0.0.1", 5000),
            "server": ("testserver", 443),
            "subprotocols": [],
        }
        await app(scope, receive, send)
        return sent

    async def main() -> None:
        async with client(store) as http:
            await http.post("/set?key=user&value=ada")
            sent = await websocket(http.cookies["session"])
            assert json.loads(sent[1]["text"]) == {"user": "ada", "seen": "ada"}
            assert (await http.get("/get")).json() == {"user": "ada", "seen": "ada"}

    run(main)


def test_a_sentinel_managed_client_is_a_store_like_any_other(
    procs: ProcessGroup, redis_server: Service, tmp_path: Path
) -> None:
    import redis.asyncio.sentinel as redis_sentinel

    port = free_port()
    config = tmp_path / "sentinel.conf"  # sentinel rewrites its config, so a file of its own
    config.write_text(
        f"port {port}\nbind {LOOPBACK}\nsentinel monitor main {LOOPBACK} {redis_server.port} 1\n"
    )
    binary = shutil.which("redis-server")
    assert binary is not None
    procs.start("sentinel", [binary, str(config), "--sentinel"])

    async def main() -> dict[str, str]:
        sentinel = redis_sentinel.Sentinel([(LOOPBACK, port)], socket_timeout=0.5)
        for _ in range(100):  # until the sentinel listens
            try:
                await sentinel.discover_master("main")
                break
            except (redis_py.ConnectionError, redis_sentinel.MasterNotFoundError):
                await asyncio.sleep(0.05)
        async with client(RedisStore(sentinel.master_for("main"))) as http:
            await http.post("/set?key=user&value=ada")
            return dict((await http.get("/get")).json())

    assert run(main) == {"user": "ada"}
    assert len(stored(redis_server)) == 1


def test_a_cluster_client_is_a_store_like_any_other(procs: ProcessGroup, tmp_path: Path) -> None:
    import redis.asyncio.cluster as redis_cluster

    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    assert binary is not None
    assert cli is not None
    ports = [free_port() for _ in range(3)]
    for port in ports:
        node = tmp_path / f"node-{port}"
        node.mkdir()
        argv = [binary, "--port", str(port), "--bind", LOOPBACK, "--cluster-enabled", "yes"]
        # The bus port defaults to port + 10000, past 65535 for a high free port.
        argv += ["--cluster-port", str(free_port())]
        argv += ["--dir", str(node), "--save", "", "--appendonly", "no"]
        wait_for_port(procs.start(f"cluster-{port}", argv), port)
    nodes = [f"{LOOPBACK}:{port}" for port in ports]
    subprocess.run(
        [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    probe = redis_py.Redis(host=LOOPBACK, port=ports[0])
    for _ in range(200):
        if b"cluster_state:ok" in probe.execute_command("CLUSTER", "INFO"):
            break
        time.sleep(0.05)

    async def main() -> dict[str, str]:
        cluster = redis_cluster.RedisCluster(host=LOOPBACK, port=ports[0])
        try:
            async with client(RedisStore(cluster)) as http:
                await http.post("/set?key=theme&value=dark")
                await http.post("/login?user=ada")  # moves the session to another key
                seen = dict((await http.get("/get")).json())
                await http.post("/logout")
                assert (await http.get("/get")).json() == {}
                return seen
        finally:
            await cluster.aclose()

    assert run(main) == {"theme": "dark", "user": "ada"}


@pytest.mark.e2e
def test_the_same_rolling_restart_without_zerodown_fails_requests(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    report = rolling_restart_with_carts(procs, tmp_path, disabled=True)
    assert report.result.failed, f"the baseline must show failures: {report.render()}"
