"""What zerodown's engine guarantees beyond Django's own tests, against the real
redis-server at ``TEST_REDIS_URL``: concurrent requests merge, a logout is never undone,
an outage follows the policy, values are never pickled, the switch from Django's
database engine logs nobody out, and pickled sessions are copied only offline."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from typing import Any
from unittest import mock

import pytest
import redis
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.backends.cache import SessionStore as CacheSession
from django.contrib.sessions.backends.db import SessionStore as DatabaseSession
from django.contrib.sessions.exceptions import SessionInterrupted
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, SimpleTestCase, TestCase, override_settings

from zerodown.codec import Record, Registry
from zerodown.django.sessions import MIRRORED, SessionMiddleware, SessionStore

URL = os.environ["TEST_REDIS_URL"]
PREFIX = "zerodown:session:"
COOKIE = "sessionid"
PATH = "/_zerodown/rehearsal/session"
registry = Registry()


@registry.record("cart", version=1)
class Cart(Record):
    items: list[str]


class Preferences:
    """A class of the app's that Django's cache engine pickled."""


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(URL)


def stored(session_key: str) -> dict[bytes, bytes]:
    name = PREFIX + hashlib.sha256(session_key.encode()).hexdigest()
    return redis_client().hgetall(name)  # type: ignore[return-value]


def ttl(session_key: str) -> int:
    name = PREFIX + hashlib.sha256(session_key.encode()).hexdigest()
    return int(redis_client().ttl(name))  # type: ignore[arg-type]


def saved(**data: Any) -> SessionStore:
    session = SessionStore()
    session.update(data)
    session.save()
    return session


@contextmanager
def redis_stalled(seconds: float = 1.5) -> Iterator[None]:
    """Redis does not answer (DEBUG SLEEP) for ``seconds``; waits until it does again."""
    sleeper = threading.Thread(
        target=lambda: redis.Redis.from_url(URL).execute_command("DEBUG", "SLEEP", seconds)
    )
    sleeper.start()
    time.sleep(0.2)
    try:
        yield
    finally:
        sleeper.join()


class MergesAndLogouts(SimpleTestCase):  # type: ignore[misc]
    def test_two_requests_of_one_user_keep_each_others_changes(self) -> None:
        key = saved(theme="dark").session_key
        first, second = SessionStore(key), SessionStore(key)
        assert first["theme"] == second["theme"] == "dark"
        first["cart"] = ["book"]
        second["lang"] = "fr"
        first.save()
        second.save()
        assert dict(SessionStore(key).items()) == {
            "theme": "dark",
            "cart": ["book"],
            "lang": "fr",
        }

    def test_a_deleted_key_is_deleted_and_nothing_else(self) -> None:
        key = saved(a=1, b=2).session_key
        first, second = SessionStore(key), SessionStore(key)
        first.pop("a")
        second["c"] = 3
        second["a"] = 1  # assigned as it was read: not written over the other's deletion
        first.save()
        second.save()
        assert dict(SessionStore(key).items()) == {"b": 2, "c": 3}

    def test_a_write_slower_than_a_logout_is_refused_and_the_logout_stands(self) -> None:
        key = saved(user="ada").session_key
        slow = SessionStore(key)
        assert slow["user"] == "ada"
        self.client.cookies[COOKIE] = key
        assert self.client.get("/logout").status_code == 200  # the faster request
        slow["cart"] = ["book"]
        with pytest.raises(UpdateError):  # which Django's middleware answers with 400
            slow.save()
        assert stored(key) == {}

    def test_djangos_middleware_answers_the_refused_write_with_400(self) -> None:
        key = saved(user="ada").session_key

        def slow_view(request: HttpRequest) -> HttpResponse:
            assert request.session["user"] == "ada"
            SessionStore(key).flush()  # the logout, in a concurrent request
            request.session["cart"] = ["book"]
            return HttpResponse()

        request = RequestFactory().get("/")
        request.COOKIES[COOKIE] = key
        with pytest.raises(SessionInterrupted):  # a SuspiciousOperation: 400
            SessionMiddleware(slow_view)(request)

    def test_login_moves_the_data_to_a_new_key_and_logout_deletes_it(self) -> None:
        session = saved(cart=["book"])
        before = session.session_key
        session.cycle_key()
        assert session.session_key != before
        assert stored(before) == {}
        assert SessionStore(session.session_key)["cart"] == ["book"]
        after = session.session_key
        session.flush()
        assert stored(after) == {}


class StoredForm(SimpleTestCase):  # type: ignore[misc]
    def test_values_are_json_or_records_never_pickle_and_keys_are_hashed(self) -> None:
        session = saved(n=1, user="ada")
        fields = stored(session.session_key)
        assert fields[b"n"] == b"j1"
        assert fields[b"user"] == b'j"ada"'
        names = [name.decode() for name in redis_client().scan_iter(match=PREFIX + "*")]
        assert all(session.session_key not in name for name in names)

    def test_a_value_that_is_not_json_is_refused_when_saved(self) -> None:
        session = SessionStore()
        session["when"] = object()
        with self.assertRaisesMessage(TypeError, "a session value must be JSON data"):
            session.save()

    @override_settings(ZERODOWN={"sessions": {"store": URL, "records": registry}})
    def test_records_round_trip(self) -> None:
        key = saved(cart=Cart(items=["book"])).session_key
        assert SessionStore(key)["cart"] == Cart(items=["book"])

    def test_the_expiry_is_djangos_and_reading_does_not_extend_it(self) -> None:
        session = SessionStore()
        session["a"] = 1
        session.set_expiry(60)
        session.save()
        assert 55 <= ttl(session.session_key) <= 60
        SessionStore(session.session_key).load()
        assert ttl(session.session_key) <= 60
        default = saved(a=1).session_key
        assert ttl(default) > 14 * 24 * 3600 - 10  # SESSION_COOKIE_AGE

    def test_a_forged_or_tampered_key_reaches_no_session(self) -> None:
        key = saved(user="ada").session_key
        assert key is not None
        tampered = key[:-1] + ("a" if key[-1] != "a" else "b")
        assert SessionStore(tampered).session_key is None
        assert SessionStore("x" * 40).session_key is None


class Outages(SimpleTestCase):  # type: ignore[misc]
    def test_a_store_that_does_not_answer_gets_503_with_retry_after(self) -> None:
        self.client.cookies[COOKIE] = saved(user="ada").session_key
        with redis_stalled():
            response = self.client.get("/user")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert self.client.get("/user").content == b"ada"

    def test_a_logout_during_an_outage_is_refused_and_the_cookie_deleted(self) -> None:
        key = saved(user="ada").session_key
        self.client.cookies[COOKIE] = key
        SessionStore(key).load()
        with redis_stalled():
            response = self.client.get("/logout")
        assert response.status_code == 503
        assert response.cookies[COOKIE].value == ""
        assert response.cookies[COOKIE]["max-age"] == 0

    @override_settings(ZERODOWN={"sessions": {"store": URL, "on_unavailable": "anonymous"}})
    def test_anonymous_serves_without_the_session_and_leaves_it_as_stored(self) -> None:
        key = saved(user="ada").session_key
        self.client.cookies[COOKIE] = key
        with redis_stalled():
            response = self.client.get("/visit")
        assert (response.status_code, response.content) == (200, b"nobody")
        assert dict(SessionStore(key).items()) == {"user": "ada"}


class RehearsalEndpoint(SimpleTestCase):  # type: ignore[misc]
    def test_the_middleware_counts_in_the_session_while_the_token_is_set(self) -> None:
        headers = {"X-Zerodown-Rehearsal": "t0ken"}
        with mock.patch.dict(os.environ, {"ZERODOWN_REHEARSAL_TOKEN": "t0ken"}):
            counts = [
                json.loads(self.client.get(PATH, headers=headers).content)["count"]
                for _ in range(3)
            ]
        assert counts == [1, 2, 3]
        assert self.client.get(PATH, headers={"X-Zerodown-Rehearsal": "wrong"}).status_code == 404


PREVIOUS = {"store": URL, "previous_engine": "django.contrib.sessions.backends.db"}


@override_settings(ZERODOWN={"sessions": PREVIOUS})
class SwitchingFromTheDatabaseEngine(TestCase):  # type: ignore[misc]
    """Release N on Django's db engine, N+1 with previous_engine, N+2 on zerodown's alone."""

    def test_a_session_of_the_previous_release_is_read_and_both_see_its_changes(self) -> None:
        old = DatabaseSession()
        old["user"] = "ada"
        old.save()
        switching = SessionStore(old.session_key)
        assert switching["user"] == "ada"
        switching["cart"] = ["book"]
        switching.save()
        assert DatabaseSession(old.session_key)["cart"] == ["book"]
        with override_settings(ZERODOWN={"sessions": {"store": URL}}):
            assert SessionStore(old.session_key)["cart"] == ["book"]

    def test_a_logout_in_the_previous_release_is_not_undone(self) -> None:
        old = DatabaseSession()
        old["user"] = "ada"
        old.save()
        key = old.session_key
        SessionStore(key).save()  # mirrored into zerodown's store
        assert stored(key)
        DatabaseSession(key).flush()
        assert SessionStore(key).load() == {}
        assert stored(key) == {}

    def test_a_write_after_a_logout_in_the_previous_release_is_refused(self) -> None:
        old = DatabaseSession()
        old["user"] = "ada"
        old.save()
        switching = SessionStore(old.session_key)
        assert switching["user"] == "ada"
        DatabaseSession(old.session_key).flush()
        switching["cart"] = ["book"]
        with pytest.raises(UpdateError):
            switching.save()
        assert stored(old.session_key) == {}

    def test_a_login_in_the_switching_release_is_seen_by_the_previous_one(self) -> None:
        session = SessionStore()
        session["user"] = "ada"
        session.cycle_key()
        assert len(session.session_key) == 40  # Django's db column holds it
        assert DatabaseSession(session.session_key)["user"] == "ada"

    def test_the_next_release_reads_it_and_drops_the_mark(self) -> None:
        session = saved(user="ada")
        assert MIRRORED.encode() in stored(session.session_key)
        with override_settings(ZERODOWN={"sessions": {"store": URL}}):
            later = SessionStore(session.session_key)
            later["cart"] = ["book"]
            later.save()
        assert MIRRORED.encode() not in stored(session.session_key)

    def test_a_pickling_previous_engine_is_refused(self) -> None:
        cache_engine = {"store": URL, "previous_engine": "django.contrib.sessions.backends.cache"}
        with override_settings(ZERODOWN={"sessions": cache_engine}):
            errors = [m for m in checks.run_checks(tags=["zerodown"]) if m.id == "zerodown.E002"]
        assert len(errors) == 1
        assert "zerodown_import_sessions" in errors[0].msg


CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "sessions": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": URL},
}


@override_settings(CACHES=CACHES, SESSION_CACHE_ALIAS="sessions")
class ImportingPickledSessions(SimpleTestCase):  # type: ignore[misc]
    def setUp(self) -> None:
        redis_client().flushdb()  # the command copies every session of the cache

    def test_the_cache_engines_sessions_are_copied_with_their_keys(self) -> None:
        old = CacheSession()
        old["user"] = "ada"
        old.save()
        unreadable = CacheSession()
        unreadable["preferences"] = Preferences()  # pickles, but is not JSON data
        unreadable.save()
        out = io.StringIO()
        with redirect_stdout(out):
            call_command("zerodown_import_sessions", "--trusted", "--json", "-")
        counts = json.loads(out.getvalue())
        assert counts["copied"] == 1
        assert counts["a value that is not JSON data"] == 1
        assert SessionStore(old.session_key)["user"] == "ada"
        assert ttl(old.session_key) > 0
        assert SessionStore(unreadable.session_key).load() == {}

    def test_it_refuses_without_trusted(self) -> None:
        with self.assertRaisesMessage(CommandError, "--trusted"):
            call_command("zerodown_import_sessions")


@override_settings(MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"])
class SystemChecks(SimpleTestCase):  # type: ignore[misc]
    def test_djangos_middleware_with_zerodowns_engine_is_a_warning(self) -> None:
        ids = [message.id for message in checks.run_checks(tags=["zerodown"])]
        assert "zerodown.W004" in ids

    @override_settings(ZERODOWN={"sessions": {}})
    def test_an_engine_without_a_store_is_an_error(self) -> None:
        errors = [m for m in checks.run_checks(tags=["zerodown"]) if m.id == "zerodown.E002"]
        assert "needs a store" in errors[0].msg
