"""Fuzzing the sessions: cookie headers, and whatever a session key in Redis can hold.

Each example may end only in the documented outcomes (the user's session, or an empty one;
never a 500), within a time bound, and the process serving them keeps answering /livez.
Bounded: a few hundred examples each, about half a minute in all.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from typing import Any

import msgspec
import pytest
import redis as redis_py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.asgi_harness import call, http_scope
from tests.bed import Instance, ProcessGroup, Service
from zerodown._sessions.session import Signer, storage_key
from zerodown.sessions import RedisStore, SessionMiddleware

SECRET = "first-secret-of-32-characters-xx"
PREFIX = "zerodown:session:"
ID = "z" * 43
COOKIE = Signer([SECRET]).sign(ID)
FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# What a Cookie header line can carry on the wire: latin-1 without line breaks or NUL.
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)


def cookie_lines() -> st.SearchStrategy[list[str]]:
    value = st.one_of(
        HEADER_TEXT,
        st.just(COOKIE),
        st.builds(lambda v: COOKIE[:-3] + v, HEADER_TEXT),
        st.builds(lambda v: v + "." + COOKIE.split(".")[1], HEADER_TEXT),
    )
    pair = st.one_of(st.builds(lambda v: f"session={v}", value), HEADER_TEXT)
    line = st.lists(pair, min_size=1, max_size=4).map(
        lambda parts: "; ".join(parts) if len(parts) % 2 else ", ".join(parts)
    )
    return st.lists(line, min_size=1, max_size=3)


@pytest.fixture(scope="module")
def fuzzed_redis(tmp_path_factory: pytest.TempPathFactory) -> Any:
    group = ProcessGroup(tmp_path_factory.mktemp("fuzz"))
    try:
        yield group, group.redis()
    finally:
        group.stop_all()


@pytest.mark.servers
@FUZZ
@given(lines=cookie_lines())
def test_any_cookie_header_is_the_session_or_an_empty_one(
    fuzzed_redis: tuple[ProcessGroup, Service], lines: list[str]
) -> None:
    _, server = fuzzed_redis
    redis_py.Redis.from_url(server.url).hset(PREFIX + storage_key(ID), "user", b'j"ada"')

    async def show(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = json.dumps(dict(scope["session"].items())).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    app = SessionMiddleware(show, store=RedisStore(server.url), secrets=[SECRET])
    scope = http_scope("/get")
    scope["headers"] += [(b"cookie", line.encode("latin-1")) for line in lines]
    started = time.monotonic()
    answer = asyncio.run(call(app, scope))
    assert time.monotonic() - started < 1.0
    assert answer.status == 200
    assert answer.json() in ({}, {"user": "ada"})
    if any(
        f"session={COOKIE}" in part for line in lines for part in line.replace(",", ";").split(";")
    ):
        assert answer.json() == {"user": "ada"}  # a valid cookie is found wherever it stands


def envelopes() -> st.SearchStrategy[bytes]:
    """Record envelopes from the app's own schema, then with any part replaced."""
    good = {"t": "cart", "v": 2, "r": 1, "d": {"items": ["book"], "pay": {"type": "card"}}}
    anything = st.recursive(
        st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=6),
                  st.none(), st.booleans()),
        lambda inner: st.one_of(st.lists(inner, max_size=3),
                                st.dictionaries(st.text(max_size=4), inner, max_size=3)),
        max_leaves=6,
    )  # fmt: skip

    def mutated(where: str, value: Any) -> bytes:
        envelope: dict[str, Any] = json.loads(json.dumps(good))
        if where == "pay.type":
            envelope["d"]["pay"]["type"] = value
        elif where in ("items", "pay"):
            envelope["d"][where] = value
        else:
            envelope[where] = value
        return b"r" + msgspec.json.encode(envelope)

    where = st.sampled_from(["t", "v", "r", "d", "items", "pay", "pay.type"])
    return st.builds(mutated, where, anything)


def stored_values() -> st.SearchStrategy[tuple[str, Any]]:
    value = st.one_of(
        st.binary(max_size=64),
        st.builds(lambda b: b"j" + b, st.binary(max_size=64)),
        envelopes(),
        st.integers(min_value=1, max_value=20_000).map(lambda n: b"j" + b"[" * n + b"]" * n),
        st.integers(min_value=1, max_value=200_000).map(lambda n: b"j" + b'"' + b"x" * n + b'"'),
    )
    names = st.one_of(st.sampled_from([b"user", b"cart", b"\x00created"]), st.binary(max_size=8))
    return st.one_of(
        st.tuples(st.just("hash"), st.dictionaries(names, value, min_size=1, max_size=3)),
        st.tuples(st.sampled_from(["string", "list", "set"]), st.binary(max_size=16)),
    )


@pytest.fixture(scope="module")
def fuzzed_app(fuzzed_redis: tuple[ProcessGroup, Service]) -> Instance:
    group, server = fuzzed_redis
    return group.uvicorn("tests.apps.session_fuzz:app", env={"REDIS_URL": server.url})


def get(instance: Instance, path: str, cookie: str | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=5)
    try:
        connection.request("GET", path, headers={"Cookie": f"session={cookie}"} if cookie else {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.servers
@FUZZ
@given(stored=stored_values())
def test_anything_a_session_key_holds_ends_in_a_documented_outcome(
    fuzzed_redis: tuple[ProcessGroup, Service], fuzzed_app: Instance, stored: tuple[str, Any]
) -> None:
    _, server = fuzzed_redis
    raw = redis_py.Redis.from_url(server.url)
    key = PREFIX + storage_key(ID)
    raw.delete(key)
    kind, content = stored
    {
        "hash": lambda: raw.hset(key, mapping=content),
        "string": lambda: raw.set(key, content),
        "list": lambda: raw.rpush(key, content),
        "set": lambda: raw.sadd(key, content),
    }[kind]()
    started = time.monotonic()
    status, body = get(fuzzed_app, "/get", COOKIE)
    assert time.monotonic() - started < 2.0
    assert status == 200, body
    assert isinstance(json.loads(body), dict)
    assert get(fuzzed_app, "/livez")[0] == 200
