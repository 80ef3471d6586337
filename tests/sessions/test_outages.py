"""Sessions against a real redis-server: redis down, paused or slow: the outage policy."""

from __future__ import annotations

import asyncio
import logging
import signal

import httpx
import pytest
import redis as redis_py

from tests.bed import ProcessGroup, Service
from tests.sessions.harness import (
    client,
    run,
    with_cookie,
)
from zerodown.sessions import (
    RedisStore,
)


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
