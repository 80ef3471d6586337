"""The session endpoint ``zerodown rehearse`` calls: there only with the run's token."""

from __future__ import annotations

import pytest

from tests.sessions.harness import client, flask_client, run
from zerodown._rehearsal_env import TOKEN_VARIABLE
from zerodown._sessions.rehearsal import HEADER, PATH
from zerodown.sessions import MemoryStore

TOKEN = "the-token-of-this-rehearsal"


def test_each_call_adds_one_to_the_callers_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)

    async def main() -> list[object]:
        async with client(MemoryStore()) as http:
            answers = [(await http.post(PATH, headers={HEADER: TOKEN})).json() for _ in range(3)]
            # The counter is a key of the session like any other, and the app sees it.
            answers.append((await http.get("/get")).json())
            http.cookies.clear()
            answers.append((await http.post(PATH, headers={HEADER: TOKEN})).json())
            return answers

    assert run(main) == [
        {"count": 1},
        {"count": 2},
        {"count": 3},
        {"zerodown.rehearsal.count": 3},
        {"count": 1},  # without the cookie: a new session
    ]


@pytest.mark.parametrize(
    ("token", "header"), [(None, TOKEN), (TOKEN, None), (TOKEN, "a-guess"), ("", "")]
)
def test_without_the_variable_or_the_token_the_path_is_the_apps(
    monkeypatch: pytest.MonkeyPatch, token: str | None, header: str | None
) -> None:
    if token is None:
        monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(TOKEN_VARIABLE, token)

    async def main() -> int:
        async with client(MemoryStore()) as http:
            headers = {} if header is None else {HEADER: header}
            return (await http.post(PATH, headers=headers)).status_code

    assert run(main) == 404  # the app's own answer: it has no such route


def test_flask_apps_on_zerodowns_sessions_have_it_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)
    with flask_client(MemoryStore()) as http:
        assert http.post(PATH, headers={HEADER: TOKEN}).json() == {"count": 1}
        assert http.post(PATH, headers={HEADER: TOKEN}).json() == {"count": 2}
        assert http.post(PATH, headers={HEADER: "wrong"}).status_code == 404
