"""Warm-up: the app's own paths called in-process before readiness first passes."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

import zerodown
from zerodown import ConfigurationError, Health, Lifecycle, Warmup


def _starlette_like(seen: list[str], delay: float = 0.0) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            scope["state"]["pool"] = "opened at startup"
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await asyncio.sleep(delay)
        warm = dict(scope["headers"]).get(b"x-zerodown-warmup") == b"1"
        seen.append(f"{scope['path']}?{scope['query_string'].decode()} {warm} {scope.get('state')}")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def _ready_after(app: zerodown.ASGIMiddleware, seconds: float) -> list[int]:
    """The readiness answers, every 50 ms, until one is 200 or ``seconds`` passed."""
    statuses = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            statuses.append((await http.get("/readyz")).status_code)
            if statuses[-1] == 200:
                break
            await asyncio.sleep(0.05)
    return statuses


def _readiness_after_startup(app: zerodown.ASGIMiddleware) -> list[int]:
    """Run the app's lifespan startup as a server does (with a state dict), then poll its
    readiness: every answer, until a 200."""
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    queue.put_nowait({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

    async def send(message: Any) -> None:
        pass

    async def main() -> list[int]:
        lifespan = asyncio.ensure_future(app(scope, queue.get, send))
        await asyncio.sleep(0.05)
        statuses = await _ready_after(app, seconds=5)
        lifespan.cancel()
        return statuses

    return asyncio.run(main())


def test_readiness_waits_for_the_warm_up_of_every_path() -> None:
    seen: list[str] = []
    warmup = Warmup(paths=["/", "/notes?page=1"])
    app = zerodown.ASGIMiddleware(
        _starlette_like(seen, delay=0.2),
        lifecycle=Lifecycle(),
        health=Health(),
        warmup=warmup,
        handle_signals=False,
    )

    statuses = _readiness_after_startup(app)
    assert statuses[0] == 503
    assert statuses[-1] == 200
    # Every path, in-process, marked as a warm-up, with the lifespan's state.
    assert seen == [
        "/? True {'pool': 'opened at startup'}",
        "/notes?page=1 True {'pool': 'opened at startup'}",
    ]


def test_a_warm_up_that_does_not_finish_gives_up_at_its_timeout_and_warns() -> None:
    app = zerodown.ASGIMiddleware(
        _starlette_like([], delay=30),
        lifecycle=Lifecycle(),
        health=(health := Health()),
        warmup=Warmup(paths=["/"], timeout=0.3),
        handle_signals=False,
    )

    assert _readiness_after_startup(app)[-1] == 200
    (result,) = [r for c, r in health.run_sync(health.checks).results if c.name == "warmup"]
    assert result.status == "warn"
    assert result.output == "the warm-up gave up after 0.3s at /"


def test_a_wsgi_app_is_warmed_in_a_thread_and_a_function_is_called_too() -> None:
    seen: list[str] = []
    called = threading.Event()

    def wsgi(environ: Any, start_response: Any) -> list[bytes]:
        seen.append(f"{environ['PATH_INFO']} {environ.get('HTTP_X_ZERODOWN_WARMUP')}")
        start_response("200 OK", [])
        return [b"ok"]

    app = zerodown.WSGIMiddleware(
        wsgi,
        lifecycle=Lifecycle(),
        health=Health(),
        warmup=Warmup(paths=["/a"], function=called.set),
    )
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as http:
        deadline = time.monotonic() + 5
        while http.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert http.get("/readyz").status_code == 200
    assert seen == ["/a 1"]
    assert called.is_set()


def test_the_paths_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZERODOWN_WARMUP_PATHS", "/, /notes")
    monkeypatch.setenv("ZERODOWN_WARMUP_TIMEOUT", "12")
    warmup = Warmup()
    assert (warmup.paths, warmup.timeout) == (("/", "/notes"), 12.0)
    monkeypatch.setenv("ZERODOWN_WARMUP_PATHS", "notes")
    with pytest.raises(ConfigurationError, match="must start with '/'"):
        Warmup()
    monkeypatch.delenv("ZERODOWN_WARMUP_PATHS")
    assert not Warmup().wanted
