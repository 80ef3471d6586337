"""The WSGI middleware: probes and in-flight counting.

It adds no ``Connection`` header (PEP 3333 forbids hop-by-hop headers from apps and
gunicorn drops them) and installs no signal handlers (the WSGI server owns its workers'
signals); under gunicorn both come from its master and its ``pre_request`` hook.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._health.checks import stuck_threads
from ._health.registry import Health, get_health
from ._lifecycle import Lifecycle, get_lifecycle
from ._probes import Endpoint, ProbeAccess, ProbePaths, ProbeRequest, Probes
from ._rehearsal_env import instance_header
from ._warmup import Warmup

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class WSGIMiddleware:
    """Wrap a WSGI app: ``app.wsgi_app = zerodown.WSGIMiddleware(app.wsgi_app)`` for Flask.

    The app counts as started once it is wrapped: WSGI servers load the app before they
    serve it. Checks come from ``health`` (the process's registry by default), to which
    this adds a stuck-worker-threads liveness check; ``probe_access`` says what the probes
    show and to whom; ``warmup`` (by default from ``ZERODOWN_WARMUP_PATHS``) what to call
    in-process before readiness first passes. Thread-safe.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        lifecycle: Lifecycle | None = None,
        health: Health | None = None,
        probe_paths: ProbePaths | None = None,
        probe_access: ProbeAccess | None = None,
        warmup: Warmup | None = None,
    ) -> None:
        self.app = app
        self.lifecycle = lifecycle or get_lifecycle()
        self.health = health or get_health()
        self.health.add_process_check(stuck_threads(lifecycle=self.lifecycle))
        warmup = warmup or Warmup()
        if warmup.wanted:
            self.health.add(warmup.wsgi_check(app, [c.name for c in self.health.checks]))
        self.health.start()
        self._probes = Probes(self.lifecycle, self.health, probe_paths, probe_access)
        # In a rehearsal that asks for it, every response names the instance.
        self._instance_header = instance_header()
        self.lifecycle.mark_ready()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        lifecycle = self.lifecycle
        if lifecycle.settings.disabled:
            return self.app(environ, start_response)
        route = self._probes.routes.get(environ.get("PATH_INFO", ""))
        if route is not None:
            probe, check_name = route
            method = environ.get("REQUEST_METHOD", "GET")
            if probe is Endpoint.PRESTOP:
                # Blocks this worker thread: a preStop call is one request per shutdown.
                time.sleep(self._probes.prestop_wait(method))
            authorization = environ.get("HTTP_AUTHORIZATION")
            request = ProbeRequest(
                probe,
                method,
                check_name,
                environ.get("QUERY_STRING", ""),
                None if authorization is None else authorization.encode("latin-1"),
                environ.get("REMOTE_ADDR"),
            )
            checks = self._probes.checks_for(request)
            report = None if checks is None else self.health.run_sync(checks)
            answer = self._probes.answer(request, report)
            start_response(
                answer.status_line,
                [
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in answer.headers
                    if name != b"connection"
                ],
            )
            return [answer.body]
        token = lifecycle.request_started()
        if self._instance_header is not None:
            start_response = _naming(start_response, self._instance_header)
        try:
            response = self.app(environ, start_response)
        except BaseException:
            lifecycle.request_finished(token)
            raise
        return _CountedResponse(response, lifecycle, token)


def _naming(start_response: StartResponse, header: tuple[bytes, bytes]) -> StartResponse:
    """``start_response`` with the rehearsal's instance header added."""
    name, value = header[0].decode("latin-1"), header[1].decode("latin-1")

    def start(status: str, headers: Any, exc_info: Any = None) -> Any:
        return start_response(status, [*headers, (name, value)], exc_info)

    return start


class _CountedResponse:
    """The app's response; the request ends when the server closes it (PEP 3333).

    Servers call ``close()`` whether the body was sent in full, the client went away, or
    writing failed, so this is where the count goes down.
    """

    __slots__ = ("_closed", "_lifecycle", "_response", "_token")

    def __init__(self, response: Iterable[bytes], lifecycle: Lifecycle, token: int) -> None:
        self._response = response
        self._lifecycle = lifecycle
        self._token = token
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._response)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._response, "close", None)
            if close is not None:
                close()
        finally:
            self._lifecycle.request_finished(self._token)
