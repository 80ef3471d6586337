"""The sans-IO core of sessions: what a save asks of the store, and the cookie it sends.

No store and no server: the planner is pure, and every middleware (ASGI, WSGI, Flask)
carries out what it plans.
"""

from __future__ import annotations

import logging

import pytest

from zerodown._sessions.session import Session, storage_key
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


def config(**options: object) -> SessionConfig:
    return SessionConfig(secrets=[SECRET], **options)  # type: ignore[arg-type]


def stored_session(cfg: SessionConfig, **values: bytes) -> Session:
    return Session(ID, values, records=None, max_size=cfg.max_size)


def test_a_new_session_is_written_only_once_it_holds_something() -> None:
    cfg = config()
    empty = Session(None, {}, records=None, max_size=cfg.max_size)
    assert cfg.plan_save(empty) == NoWrite()

    session = Session(None, {}, records=None, max_size=cfg.max_size)
    session["cart"] = ["book"]
    plan = cfg.plan_save(session)
    assert isinstance(plan, Save)
    assert session.id is not None
    assert (plan.key, plan.new, plan.removed) == (storage_key(session.id), True, frozenset())
    assert plan.changed == {"cart": b'j["book"]'}
    assert plan.cookie.startswith(f"session={cfg.signer.sign(session.id)}; Max-Age=")


def test_an_unchanged_session_writes_nothing_and_a_changed_one_only_its_changes() -> None:
    cfg = config()
    session = stored_session(cfg, cart=b'j["book"]', user=b'j"ada"')
    untouched = cfg.plan_save(session)
    assert isinstance(untouched, NoWrite)
    assert untouched.cookie is not None

    session["cart"] = ["book", "pen"]
    del session["user"]
    plan = cfg.plan_save(session)
    assert isinstance(plan, Save)
    assert (plan.key, plan.new) == (storage_key(ID), False)
    assert plan.changed == {"cart": b'j["book","pen"]'}
    assert plan.removed == frozenset({"user"})


def test_a_login_moves_the_data_to_a_new_id_and_a_logout_deletes_both() -> None:
    cfg = config()
    session = stored_session(cfg, cart=b'j["book"]')
    session.regenerate()
    plan = cfg.plan_save(session)
    assert isinstance(plan, Move)
    assert plan.old_key == storage_key(ID)
    assert session.id is not None
    assert plan.new_key == storage_key(session.id)
    assert plan.fields == {"cart": b'j["book"]'}

    session = stored_session(cfg, cart=b'j["book"]')
    session.regenerate()
    session.invalidate()
    delete = cfg.plan_save(session)
    assert isinstance(delete, Delete)
    assert delete.keys == (storage_key(ID),)
    assert "Max-Age=0" in delete.cookie


def test_a_session_read_during_an_outage_is_never_written() -> None:
    cfg = config(on_unavailable="anonymous")
    session = cfg.open(ID, None, unavailable=True)
    session["cart"] = ["book"]
    assert cfg.plan_save(session) == NoWrite()


def test_the_cookie_after_each_outcome(caplog: pytest.LogCaptureFixture) -> None:
    cfg = config()
    session = stored_session(cfg)
    session["cart"] = ["book"]
    plan = cfg.plan_save(session)
    assert cfg.cookie_after(plan, SaveOutcome.WRITTEN) == plan.cookie
    assert cfg.cookie_after(plan, SaveOutcome.GONE) is None
    with caplog.at_level(logging.WARNING, logger="zerodown"):
        # The stored session is as it was and still the user's: keep sending its cookie.
        assert cfg.cookie_after(plan, SaveOutcome.TOO_LARGE) == plan.cookie
    assert "larger than max_size" in caplog.text


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
