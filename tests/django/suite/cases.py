"""Django's ``SessionTestsMixin`` and ``SessionMiddlewareTests`` with zerodown's engine.

What zerodown does differently on purpose is overridden below, each with the test of
what it does instead; everything else is Django's test as Django wrote it.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

from django.http import HttpResponse
from django.test import RequestFactory, SimpleTestCase, override_settings
from sessions_tests import tests as django_tests

from zerodown.django.sessions import SessionMiddleware, SessionStore

ENGINE = "zerodown.django.sessions"


class ZerodownSessionTests(django_tests.SessionTestsMixin, SimpleTestCase):  # type: ignore[misc]
    backend = SessionStore

    def test_session_key_valid_string_saved(self) -> None:
        """Deliberately different: a key must be one zerodown signed (or one of Django's
        own 32-character keys, looked up as Django's engines do), not any 8 characters."""
        self.session._session_key = "12345678"
        assert self.session.session_key is None
        signed = self.session._get_new_session_key()
        self.session._session_key = signed
        assert self.session.session_key == signed
        self.session._session_key = signed[:-1] + ("a" if signed[-1] != "a" else "b")
        assert self.session.session_key is None


@override_settings(SESSION_ENGINE=ENGINE)
class ZerodownMiddlewareTests(django_tests.SessionMiddlewareTests):  # type: ignore[misc]
    """Django's middleware tests, with zerodown's engine and zerodown's middleware."""

    def setUp(self) -> None:
        patcher = mock.patch.object(django_tests, "SessionMiddleware", SessionMiddleware)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_session_update_error_redirect(self) -> None:
        """As Django's, on zerodown's engine rather than the database one."""

        def response_delete_session(request: Any) -> HttpResponse:
            request.session = SessionStore()
            request.session.save(must_create=True)
            request.session.delete()
            return HttpResponse()

        request = RequestFactory().get("/foo/")
        middleware = SessionMiddleware(response_delete_session)
        with self.assertRaisesMessage(
            django_tests.SessionInterrupted, "The request's session was deleted before"
        ):
            middleware(request)

    def test_empty_session_saved(self) -> None:
        """As Django's, reading the stored session through the engine, not the database
        model."""

        def response_set_session(request: Any) -> HttpResponse:
            request.session["foo"] = "bar"
            return HttpResponse("Session test")

        request = RequestFactory().get("/")
        middleware = SessionMiddleware(response_set_session)
        response = middleware(request)
        assert tuple(request.session.items()) == (("foo", "bar"),)
        del request.session["foo"]
        response = middleware.process_response(request, HttpResponse("Session test"))
        assert SessionStore(request.session.session_key).load() == {}
        assert f"Set-Cookie: sessionid={request.session.session_key}" in str(response.cookies)
        assert response.headers["Vary"] == "Cookie"
