from __future__ import annotations

import asyncio
import logging
import time

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.asgi_harness import call, http_scope, request
from zerodown import ASGIMiddleware, Lifecycle, Phase, ProbePaths, Settings
from zerodown._types import Message, Receive, Scope, Send


def make_lifecycle(**overrides: float) -> Lifecycle:
    return Lifecycle(settings=Settings.load(environ={}, **overrides))


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-type", b"text/plain"), (b"connection", b"keep-alive")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


def wrapped(lifecycle: Lifecycle, **kwargs: object) -> ASGIMiddleware:
    return ASGIMiddleware(hello, lifecycle=lifecycle, handle_signals=False, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("phase", "livez", "readyz", "startupz"),
    [
        (Phase.READY, 200, 200, 200),
        (Phase.DRAINING, 200, 503, 200),
        (Phase.STOPPED, 200, 503, 200),
    ],
)
def test_probe_statuses_by_phase(phase: Phase, livez: int, readyz: int, startupz: int) -> None:
    lifecycle = make_lifecycle()
    lifecycle.mark_ready()
    if phase in (Phase.DRAINING, Phase.STOPPED):
        lifecycle.start_draining()
    if phase is Phase.STOPPED:
        asyncio.run(lifecycle.shutdown())
    app = wrapped(lifecycle)
    for path, status in (("/livez", livez), ("/readyz", readyz), ("/startupz", startupz)):
        exchange = request(app, path)
        assert exchange.status == status, path
        assert exchange.headers["content-type"] == "application/health+json"
        assert exchange.headers["cache-control"] == "no-store"
        assert exchange.json()["status"] == ("pass" if status == 200 else "fail")
        assert exchange.json()["phase"] == phase.value


def test_not_ready_while_the_apps_startup_runs() -> None:
    lifecycle = make_lifecycle()
    release = asyncio.Event()

    async def slow_start(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await release.wait()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
        else:
            await hello(scope, receive, send)

    middleware = ASGIMiddleware(slow_start, lifecycle=lifecycle, handle_signals=False)

    async def scenario() -> dict[str, int]:
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        lifespan = asyncio.create_task(middleware({"type": "lifespan"}, inbox.get, send))
        await asyncio.sleep(0.01)
        statuses = {p: (await call(middleware, http_scope(p))).status for p in PROBES}
        release.set()
        await asyncio.sleep(0.01)
        statuses["/readyz after startup"] = (await call(middleware, http_scope("/readyz"))).status
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan
        return statuses

    assert asyncio.run(scenario()) == {
        "/livez": 200,
        "/readyz": 503,
        "/startupz": 503,
        "/readyz after startup": 200,
    }


PROBES = ("/livez", "/readyz", "/startupz")


def test_readiness_while_draining_says_so_with_the_in_flight_count() -> None:
    lifecycle = make_lifecycle()
    lifecycle.mark_ready()
    token = lifecycle.request_started()
    lifecycle.start_draining()
    exchange = request(wrapped(lifecycle), "/readyz")
    assert exchange.json() == {"status": "fail", "phase": "draining", "inFlight": 1}
    assert exchange.headers["connection"] == "close"
    lifecycle.request_finished(token)


def test_probes_never_reach_the_app_and_do_not_count() -> None:
    reached: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["path"])
        await hello(scope, receive, send)

    lifecycle = make_lifecycle()
    middleware = ASGIMiddleware(app, lifecycle=lifecycle, handle_signals=False)
    for path in ("/livez", "/readyz", "/startupz"):
        request(middleware, path)
    assert reached == []
    request(middleware, "/other")
    assert reached == ["/other"]
    assert lifecycle.in_flight == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "BREW"])
def test_other_methods_get_405_with_allow(method: str) -> None:
    exchange = request(wrapped(make_lifecycle()), "/readyz", method=method)
    assert exchange.status == 405
    assert exchange.headers["allow"] == "GET, HEAD"
    assert "GET and HEAD" in exchange.json()["output"]


def test_head_has_headers_and_no_body() -> None:
    lifecycle = make_lifecycle()
    lifecycle.mark_ready()
    get = request(wrapped(lifecycle), "/readyz")
    head = request(wrapped(lifecycle), "/readyz", method="HEAD")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == str(len(get.body))


def test_unknown_query_parameters_are_ignored() -> None:
    lifecycle = make_lifecycle()
    lifecycle.mark_ready()
    exchange = request(wrapped(lifecycle), "/readyz", query=b"verbose&x=%ff%00&" + b"a" * 5000)
    assert exchange.status == 200


def test_probe_paths_are_configurable_and_can_be_switched_off() -> None:
    lifecycle = make_lifecycle()
    lifecycle.mark_ready()
    lifecycle.start_draining()
    paths = ProbePaths(liveness="/health/live", readiness="/health/ready", startup=None)
    app = wrapped(lifecycle, probe_paths=paths)
    assert request(app, "/health/live").status == 200
    assert request(app, "/health/ready").status == 503
    assert request(app, "/startupz").body == b"hello"
    with pytest.raises(ValueError, match="must differ"):
        ProbePaths(liveness="/same", readiness="/same")


def test_draining_replaces_the_apps_connection_header_with_close() -> None:
    lifecycle = make_lifecycle()
    lifecycle.mark_ready()
    before = request(wrapped(lifecycle), "/")
    assert before.headers["connection"] == "keep-alive"
    lifecycle.start_draining()
    after = request(wrapped(lifecycle), "/")
    connection_headers = [v for k, v in after.raw_headers if k.lower() == b"connection"]
    assert connection_headers == [b"close"]
    assert after.body == b"hello"


def test_counts_streaming_responses_until_the_app_returns() -> None:
    lifecycle = make_lifecycle()
    seen: list[int] = []

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(3):
            seen.append(lifecycle.in_flight)
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    request(ASGIMiddleware(streaming, lifecycle=lifecycle, handle_signals=False), "/stream")
    assert seen == [1, 1, 1]
    assert lifecycle.in_flight == 0


def test_requests_on_a_serving_loop_are_counted_with_their_age() -> None:
    lifecycle = make_lifecycle()
    seen: list[tuple[int, float]] = []
    all_seen = asyncio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        entered = time.monotonic()
        await asyncio.sleep(0.3)
        age = lifecycle.oldest_request_age
        assert age is not None
        # How much older than it is the request looks: the clock it was stamped with
        # lags by at most one tick (the bound adds slack for a loaded machine).
        seen.append((lifecycle.in_flight, age - (time.monotonic() - entered)))
        if len(seen) in (1, 3):  # the first request alone, then two at once
            all_seen.set()
        await all_seen.wait()
        await hello(scope, receive, send)

    app = ASGIMiddleware(slow, lifecycle=lifecycle, handle_signals=False)

    async def main() -> None:
        await call(app, http_scope("/first"))  # no lifespan: the first request starts serving
        all_seen.clear()
        # A clock that stopped ticking would now make the next requests look 1 s older.
        await asyncio.sleep(1.0)
        await asyncio.gather(call(app, http_scope("/a")), call(app, http_scope("/b")))

    asyncio.run(main())
    assert [count for count, _ in seen] == [1, 2, 2]
    assert all(-0.01 <= excess <= 0.6 for _, excess in seen[1:]), seen
    assert lifecycle.in_flight == 0


def test_counts_down_when_the_app_raises() -> None:
    lifecycle = make_lifecycle()

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug in the app")

    with pytest.raises(RuntimeError):
        request(ASGIMiddleware(broken, lifecycle=lifecycle, handle_signals=False), "/")
    assert lifecycle.in_flight == 0


def test_counts_websockets() -> None:
    lifecycle = make_lifecycle()
    seen: list[int] = []

    async def ws(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        seen.append(lifecycle.in_flight)
        await send({"type": "websocket.close", "code": 1000})

    scope = {"type": "websocket", "path": "/ws", "headers": []}
    messages: list[Message] = [{"type": "websocket.connect"}]
    asyncio.run(
        call(ASGIMiddleware(ws, lifecycle=lifecycle, handle_signals=False), scope, messages)
    )
    assert seen == [1]
    assert lifecycle.in_flight == 0


def lifespan_messages() -> list[Message]:
    return [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]


def test_lifespan_ready_only_after_the_apps_startup_and_callbacks_before_its_shutdown() -> None:
    lifecycle = make_lifecycle()
    events: list[str] = []
    lifecycle.on_shutdown(lambda: events.append("zerodown callback"))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        events.append(f"app startup, phase {lifecycle.phase.value}")
        await send({"type": "lifespan.startup.complete"})
        events.append(f"after startup, phase {lifecycle.phase.value}")
        assert (await receive())["type"] == "lifespan.shutdown"
        events.append("app shutdown")
        await send({"type": "lifespan.shutdown.complete"})

    middleware = ASGIMiddleware(app, lifecycle=lifecycle, handle_signals=False)
    exchange = asyncio.run(call(middleware, {"type": "lifespan"}, lifespan_messages()))
    assert [m["type"] for m in exchange.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert events == [
        "app startup, phase starting",
        "after startup, phase ready",
        "zerodown callback",
        "app shutdown",
    ]
    assert lifecycle.phase is Phase.STOPPED


def test_lifespan_startup_failure_keeps_the_app_unready() -> None:
    lifecycle = make_lifecycle()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    middleware = ASGIMiddleware(app, lifecycle=lifecycle, handle_signals=False)
    exchange = asyncio.run(call(middleware, {"type": "lifespan"}, lifespan_messages()))
    assert exchange.sent == [{"type": "lifespan.startup.failed", "message": "no database"}]
    assert lifecycle.phase is Phase.STARTING


@pytest.mark.parametrize("behaviour", ["raises", "returns", "reads then raises"])
def test_apps_without_lifespan_get_it_spoken_for_them(behaviour: str) -> None:
    lifecycle = make_lifecycle()
    calls: list[str] = []
    lifecycle.on_shutdown(lambda: calls.append("callback"))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if behaviour == "reads then raises":
            await receive()
        if behaviour != "returns":
            raise RuntimeError(f"unsupported scope {scope['type']}")

    middleware = ASGIMiddleware(app, lifecycle=lifecycle, handle_signals=False)
    exchange = asyncio.run(call(middleware, {"type": "lifespan"}, lifespan_messages()))
    assert [m["type"] for m in exchange.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert calls == ["callback"]
    assert lifecycle.phase is Phase.STOPPED


def test_a_server_without_lifespan_makes_the_app_ready_on_first_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lifecycle = make_lifecycle()
    app = wrapped(lifecycle)
    assert request(app, "/readyz").status == 200
    assert "runs no ASGI lifespan" in caplog.text


def test_disabled_passes_everything_to_the_app_untouched() -> None:
    lifecycle = Lifecycle(settings=Settings.load(environ={"ZERODOWN_DISABLED": "1"}))
    lifecycle.start_draining()
    app = wrapped(lifecycle)
    probe = request(app, "/readyz")
    assert probe.body == b"hello"
    assert probe.headers["connection"] == "keep-alive"
    assert lifecycle.in_flight == 0


def test_works_inside_starlettes_middleware_stack(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="zerodown")
    lifecycle = make_lifecycle()
    starlette = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])
    starlette.add_middleware(ASGIMiddleware, lifecycle=lifecycle, handle_signals=False)
    exchange = asyncio.run(call(starlette, {"type": "lifespan"}, lifespan_messages()))
    assert exchange.sent[0]["type"] == "lifespan.startup.complete"
    assert lifecycle.phase is Phase.STOPPED


def test_the_default_lifecycle_is_one_per_process() -> None:
    first = ASGIMiddleware(hello)
    second = ASGIMiddleware(hello)
    assert first.lifecycle is second.lifecycle
    assert asyncio.run(call(first, http_scope("/livez"))).status == 200


def test_an_app_that_rejects_the_lifespan_costs_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Django's ASGI handler, on every boot under uvicorn or gunicorn's UvicornWorker.
    async def django_like(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")

    middleware = ASGIMiddleware(django_like, lifecycle=make_lifecycle(), handle_signals=False)
    with caplog.at_level(logging.INFO, logger="zerodown"):
        asyncio.run(call(middleware, {"type": "lifespan"}, lifespan_messages()))
    (record,) = [r for r in caplog.records if "lifespan" in r.getMessage()]
    assert record.getMessage() == (
        "zerodown: the app does not speak lifespan (ValueError: Django can only handle "
        "ASGI/HTTP connections, not lifespan.); zerodown answers it"
    )
    assert record.exc_info is None
