"""Sessions against a real redis-server: signed ids, cookies, rotation of secrets and ids."""

from __future__ import annotations

import httpx
import pytest

from tests.bed import Service
from tests.sessions.harness import (
    OLD_SECRET,
    PREFIX,
    SECRET,
    client,
    run,
    stored,
    with_cookie,
)
from zerodown._sessions.session import storage_key
from zerodown.sessions import (
    RedisStore,
    Signer,
)


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
