"""``--traffic FILE.toml``: what the rehearsal sends, and what it refuses to."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bed import REPO
from zerodown._cli.rehearse.traffic import TrafficError, load_traffic


def test_the_notes_examples_traffic_is_read_with_every_default_filled_in() -> None:
    traffic = load_traffic(REPO / "examples/notes/traffic.toml")
    listing, writing = traffic["requests"]
    assert listing == {
        "method": "GET",
        "path": "/notes",
        "name": "GET /notes",
        "expect": [200],
        "headers": {},
        "query": {},
        "weight": 3.0,
        "anonymous": False,
    }
    assert writing["json"] == {"text": "note {iteration} of user {vu}"}
    assert traffic["users"]["logged_in"] == {"kind": "status", "value": [200, 201]}
    assert traffic["users"]["logout"]["every"] == 25


def test_without_users_every_request_is_anonymous(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[[request]]\npath = "/"\n')
    assert load_traffic(path)["requests"][0]["anonymous"] is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has no [[request]]"),
        ("[[request]]\npath = '/'\nweigth = 2\n", "unknown key weigth"),
        ("[[request]]\npath = 'notes'\n", "must start with '/'"),
        ("[[request]]\npath = '/a b'\n", "printable ASCII without spaces"),
        ("[[request]]\npath = '/'\nmethod = 'BREW'\n", "method 'BREW' is not one of"),
        ("[[request]]\npath = '/'\nweight = 0\n", "weight must be a number above 0"),
        ("[[request]]\npath = '/'\nexpect = ['200']\n", "expect is a list of statuses"),
        ("[[request]]\npath = '/'\njson = {}\nform = {}\n", "json or form, not both"),
        ("[[request]]\nmethod = 'GET'\n", "needs a path"),
        ("[[request]]\npath = '/'\n[users]\nlogin = { path = '/login' }\n", "needs login and"),
        (
            "[[request]]\npath = '/'\n[users]\nlogin = { path = '/l' }\n"
            "logged_in = { cookie = 'x' }\n",
            "logged_in is one of",
        ),
        ("[[request]\n", "is not TOML"),
    ],
)
def test_a_traffic_file_that_cannot_be_sent_says_where_and_why(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "traffic.toml"
    path.write_text(text)
    with pytest.raises(TrafficError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_traffic(path)
