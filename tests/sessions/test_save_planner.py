"""The sans-IO core of sessions: what a save asks of the store, and the cookie it sends.

No store and no server: the planner is pure, and every middleware (ASGI, WSGI, Flask)
carries out what it plans.
"""

from __future__ import annotations

import logging
import time

import pytest

from zerodown._sessions.policy import session_headers
from zerodown._sessions.session import COOKIE_SENT, CREATED, Session, storage_key
from zerodown.sessions import (
    Delete,
    MemoryStore,
    Move,
    NoWrite,
    Save,
    SaveOutcome,
    SessionConfig,
)

SECRET = "first-secret-of-32-characters-xx"
ID = "a" * 43
NOW = round(time.time(), 3)
DAY = 24 * 3600


def config(**options: object) -> SessionConfig:
    return SessionConfig(secrets=[SECRET], **options)  # type: ignore[arg-type]


def stamp(value: float) -> bytes:
    return b"j" + str(value).encode()


def stored_session(cfg: SessionConfig, sent: float = NOW, **values: bytes) -> Session:
    fields = {CREATED: stamp(NOW - DAY), COOKIE_SENT: stamp(sent), **values}
    return cfg.open(ID, fields, unavailable=False)


def app_fields(plan: Save | Move) -> dict[str, bytes]:
    fields = plan.changed if isinstance(plan, Save) else plan.fields
    return {k: v for k, v in fields.items() if not k.startswith("\x00")}


def test_a_new_session_is_written_only_once_it_holds_something() -> None:
    cfg = config()
    empty = Session(None, {}, records=None, max_size=cfg.max_size)
    assert cfg.plan_save(empty, NOW) == NoWrite()

    session = Session(None, {}, records=None, max_size=cfg.max_size)
    session["cart"] = ["book"]
    plan = cfg.plan_save(session, NOW)
    assert isinstance(plan, Save)
    assert session.id is not None
    assert (plan.key, plan.new, plan.removed) == (storage_key(session.id), True, frozenset())
    assert app_fields(plan) == {"cart": b'j["book"]'}
    assert session.stamp(CREATED) == session.stamp(COOKIE_SENT) == NOW
    assert plan.cookie is not None
    assert plan.cookie.startswith(f"session={cfg.signer.sign(session.id)}; Max-Age=")


def test_the_cookie_goes_out_only_when_new_rotated_or_half_spent() -> None:
    cfg = config()
    fresh = stored_session(cfg, sent=NOW - DAY, cart=b'j["book"]')
    assert cfg.plan_save(fresh, NOW) == NoWrite()  # nothing changed, cookie young

    fresh["cart"] = ["book", "pen"]
    changed = cfg.plan_save(fresh, NOW)
    assert isinstance(changed, Save)
    assert changed.cookie is None  # same id, same secret: the browser's cookie stands
    assert app_fields(changed) == {"cart": b'j["book","pen"]'}

    old = stored_session(cfg, sent=NOW - 8 * DAY)  # less than half of 14 days left
    # A websocket cannot set a cookie: it refreshes nothing, so the next response will.
    assert cfg.plan_save(old, NOW, sends_cookie=False) == NoWrite()
    refresh = cfg.plan_save(old, NOW)
    assert isinstance(refresh, Save)
    assert refresh.cookie is not None
    assert refresh.changed == {COOKIE_SENT: stamp(NOW)}

    rotated = SessionConfig(secrets=["a-brand-new-secret-of-32-chars!!", SECRET])
    verified = rotated.read_cookie(f"session={cfg.signer.sign(ID)}")
    assert verified == (ID, True)
    session = rotated.open(
        ID, {CREATED: stamp(NOW), COOKIE_SENT: stamp(NOW)}, unavailable=False,
        signed_with_old_secret=True,
    )  # fmt: skip
    resigned = rotated.plan_save(session, NOW)
    assert isinstance(resigned, Save)
    assert resigned.cookie is not None
    assert rotated.signer.sign(ID) in resigned.cookie


def test_the_cookie_never_outlives_the_absolute_lifetime() -> None:
    cfg = config(absolute_lifetime=20 * DAY)
    session = cfg.open(ID, {CREATED: stamp(NOW - 19 * DAY)}, unavailable=False)
    plan = cfg.plan_save(session, NOW)
    assert isinstance(plan, Save)
    assert plan.cookie is not None
    assert f"Max-Age={DAY}" in plan.cookie
    expired = cfg.open(ID, {CREATED: stamp(NOW - 21 * DAY)}, unavailable=False)
    # The stolen cookie of an old session leads nowhere, however often it was used.
    assert expired.id is None
    assert expired.claimed_id == ID


def test_a_login_moves_the_data_to_a_new_id_and_a_logout_deletes_both() -> None:
    cfg = config()
    session = stored_session(cfg, cart=b'j["book"]')
    session.regenerate()
    plan = cfg.plan_save(session, NOW)
    assert isinstance(plan, Move)
    assert plan.old_key == storage_key(ID)
    assert session.id is not None
    assert plan.new_key == storage_key(session.id)
    assert app_fields(plan) == {"cart": b'j["book"]'}
    assert session.stamp(CREATED) == NOW  # a login begins the absolute lifetime anew

    session = stored_session(cfg, cart=b'j["book"]')
    session.regenerate()
    session.invalidate()
    delete = cfg.plan_save(session, NOW)
    assert isinstance(delete, Delete)
    assert delete.keys == (storage_key(ID),)
    assert "Max-Age=0" in delete.cookie


def test_values_set_after_a_logout_go_into_a_new_session() -> None:
    cfg = config()
    session = stored_session(cfg, user=b'j"ada"')
    session.invalidate()
    session["flash"] = "you are logged out"
    plan = cfg.plan_save(session, NOW)
    assert isinstance(plan, Move)
    assert plan.old_key == storage_key(ID)
    assert session.id not in (None, ID)
    assert app_fields(plan) == {"flash": b'j"you are logged out"'}


def test_a_logout_during_an_outage_still_deletes_and_fails_if_it_cannot() -> None:
    cfg = config(on_unavailable="anonymous")
    session = cfg.open(ID, None, unavailable=True)
    session["cart"] = ["book"]
    assert cfg.plan_save(session, NOW) == NoWrite()  # an ordinary change is dropped
    session.invalidate()
    plan = cfg.plan_save(session, NOW)
    assert isinstance(plan, Delete)
    assert plan.keys == (storage_key(ID),)
    # If the store cannot do it either, the request fails, with the cookie deleted anyway.
    assert cfg.refusal(session) == (True, plan.cookie)
    assert cfg.refusal(cfg.open(ID, None, unavailable=True)) == (False, None)
    assert config().refusal(stored_session(config())) == (True, None)  # policy "fail"


def test_the_cookie_after_each_outcome(caplog: pytest.LogCaptureFixture) -> None:
    cfg = config()
    session = Session(None, {}, records=None, max_size=cfg.max_size)
    session["cart"] = ["book"]
    plan = cfg.plan_save(session, NOW)
    assert cfg.cookie_after(plan, SaveOutcome.WRITTEN) == plan.cookie
    assert cfg.cookie_after(plan, SaveOutcome.GONE) is None
    with caplog.at_level(logging.WARNING, logger="zerodown"):
        # The stored session is as it was and still the user's: keep sending its cookie.
        assert cfg.cookie_after(plan, SaveOutcome.TOO_LARGE) == plan.cookie
    assert "larger than max_size" in caplog.text


def test_cookie_headers_are_parsed_as_browsers_and_servers_send_them() -> None:
    cfg = config()
    good = cfg.signer.sign(ID)
    forged = "b" * 43 + ".forged"
    for header in (
        f"session={forged}; session={good}",  # a forged one first
        f"theme=dark, session={good}",  # two header lines joined by gunicorn
        f"session=caf\u00e9.\u00e9\u00e9; session={good}",  # not ASCII
        f"session={good[:-1]}\u00ff; session={good}",
    ):
        assert cfg.cookie_id(header) == ID
    assert cfg.cookie_id(f"session={good[:-2]}\u00e9\u00e9") is None


def test_a_cached_response_never_carries_a_session_cookie_to_others() -> None:
    public = [(b"cache-control", b"public, max-age=60"), (b"vary", b"Accept-Encoding")]
    headers = dict(session_headers(public, "session=x", read=True))
    assert headers[b"cache-control"] == b"private, max-age=60"
    assert headers[b"set-cookie"] == b"session=x"
    assert (b"vary", b"Cookie") in session_headers(public, None, read=True)
    assert session_headers(public, None, read=False) == public
    assert session_headers([(b"vary", b"*")], None, read=True) == [(b"vary", b"*")]
    shared = dict(session_headers([(b"cache-control", b"s-maxage=300")], "s=x", read=True))
    assert shared[b"cache-control"] == b"private"


def test_the_memory_store_holds_max_size_across_two_writers() -> None:
    store = MemoryStore()
    key = storage_key(ID)
    first = Save(key, {"a": b"x" * 40}, "c", max_size=64, new=True)
    second = Save(key, {"b": b"y" * 40}, "c", max_size=64)
    assert store.apply_sync(first, 60) is SaveOutcome.WRITTEN
    # Each write alone fits; together they would not, so the second is refused whole.
    assert store.apply_sync(second, 60) is SaveOutcome.TOO_LARGE
    assert store.load_sync(key, 60) == {"a": b"x" * 40}
    assert store.apply_sync(Save("gone", {"a": b"1"}, "c", max_size=64), 60) is SaveOutcome.GONE


def test_an_oversized_stored_session_never_locks_its_user_out() -> None:
    cfg = config(max_size=100)
    session = cfg.open(ID, {"big": b"j" + b"1" * 200}, unavailable=False)
    assert (session.id, session.claimed_id, dict(session)) == (None, ID, {})
    session["user"] = "ada"  # a login works: a new session, under a new id
    assert isinstance(cfg.plan_save(session, NOW), Save)
