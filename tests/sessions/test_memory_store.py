"""Sessions against a real redis-server: the in-process store."""

from __future__ import annotations

import logging

import pytest

from tests.sessions.harness import (
    SECRET,
    Gates,
    client,
    make_app,
    run,
)
from zerodown.sessions import (
    MemoryStore,
    SessionMiddleware,
)


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
