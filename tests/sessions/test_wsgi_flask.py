"""Sessions against a real redis-server: the WSGI middleware and Flask's session interface."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis as redis_py

from tests.bed import ProcessGroup, Service
from tests.sessions.harness import (
    flask_client,
    stored,
    with_cookie,
)
from zerodown import ConfigurationError
from zerodown.sessions import (
    RedisStore,
)


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
