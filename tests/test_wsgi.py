from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.bed import ProcessGroup
from zerodown import Lifecycle, Settings, WSGIMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def make_lifecycle(**env: str) -> Lifecycle:
    return Lifecycle(settings=Settings.load(environ=env))


def hello(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


class Recorder:
    status = ""
    headers: dict[str, str]

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> None:
        self.status = status
        self.headers = dict(headers)


def call(app: WSGIMiddleware, path: str, method: str = "GET") -> tuple[Recorder, bytes]:
    recorder = Recorder()
    environ = {"PATH_INFO": path, "REQUEST_METHOD": method, "QUERY_STRING": ""}
    response = app(environ, recorder)  # type: ignore[arg-type]
    try:
        body = b"".join(response)
    finally:
        getattr(response, "close", lambda: None)()
    return recorder, body


def test_wrapping_marks_the_app_started_and_probes_answer() -> None:
    lifecycle = make_lifecycle()
    app = WSGIMiddleware(hello, lifecycle=lifecycle)
    for path in ("/livez", "/readyz", "/startupz"):
        recorder, body = call(app, path)
        assert recorder.status == "200 OK"
        assert recorder.headers["content-type"] == "application/health+json"
        assert json.loads(body)["status"] == "pass"


def test_readiness_flips_while_liveness_stays_and_no_hop_by_hop_header() -> None:
    lifecycle = make_lifecycle()
    app = WSGIMiddleware(hello, lifecycle=lifecycle)
    token = lifecycle.request_started()
    lifecycle.start_draining()
    recorder, body = call(app, "/readyz")
    assert recorder.status == "503 Service Unavailable"
    assert json.loads(body) == {"status": "fail", "phase": "draining", "inFlight": 1}
    assert "connection" not in {name.lower() for name in recorder.headers}
    assert call(app, "/livez")[0].status == "200 OK"
    lifecycle.request_finished(token)


def test_bad_methods_get_405() -> None:
    recorder, _body = call(WSGIMiddleware(hello, lifecycle=make_lifecycle()), "/livez", "POST")
    assert recorder.status == "405 Method Not Allowed"
    assert recorder.headers["allow"] == "GET, HEAD"


def test_a_request_ends_when_its_response_is_closed() -> None:
    lifecycle = make_lifecycle()
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"a"
            yield b"b"

        def close(self) -> None:
            closed.append(True)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return Body()

    middleware = WSGIMiddleware(app, lifecycle=lifecycle)
    response = middleware({"PATH_INFO": "/", "REQUEST_METHOD": "GET"}, Recorder())  # type: ignore[arg-type]
    assert lifecycle.in_flight == 1
    assert next(iter(response)) == b"a"
    assert lifecycle.in_flight == 1, "still streaming"
    response.close()  # type: ignore[attr-defined]
    response.close()  # type: ignore[attr-defined]
    assert lifecycle.in_flight == 0
    assert closed == [True]


def test_a_request_ends_when_the_app_raises() -> None:
    lifecycle = make_lifecycle()

    def broken(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        WSGIMiddleware(broken, lifecycle=lifecycle)({"PATH_INFO": "/"}, Recorder())  # type: ignore[arg-type]
    assert lifecycle.in_flight == 0


def test_disabled_passes_probes_to_the_app() -> None:
    app = WSGIMiddleware(hello, lifecycle=make_lifecycle(ZERODOWN_DISABLED="1"))
    assert call(app, "/readyz")[1] == b"hello"


# -- under a real gunicorn -------------------------------------------------------------


def in_flight(url_port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", url_port, timeout=5)
    connection.request("GET", "/in-flight")
    value: int = json.loads(connection.getresponse().read())["in_flight"]
    connection.close()
    return value


def wait_for_in_flight(port: int, expected: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        seen = in_flight(port)
        if seen == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"in-flight count stayed {seen}, expected {expected}")


@pytest.fixture
def gthread_app(procs: ProcessGroup) -> int:
    instance = procs.gunicorn(
        "tests.apps.wsgi_counting:app",
        args=["-k", "gthread", "--workers", "1", "--threads", "4"],
    )
    return instance.port


def test_gunicorn_counts_a_stream_the_client_abandons(gthread_app: int) -> None:
    client = socket.create_connection(("127.0.0.1", gthread_app))
    client.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    received = 0
    while received < 50_000:
        received += len(client.recv(65536))
    # The stream counts; this probe's own request counts too.
    assert in_flight(gthread_app) == 2
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()
    wait_for_in_flight(gthread_app, 1)


def test_gunicorn_counts_a_request_whose_app_raised(gthread_app: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", gthread_app, timeout=5)
    connection.request("GET", "/boom")
    assert connection.getresponse().status == 500
    connection.close()
    # gunicorn closes the response (where the count goes down) after the client has it.
    wait_for_in_flight(gthread_app, 1)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/readyz", 200), ("HEAD", "/livez", 200), ("POST", "/readyz", 405)],
)
def test_gunicorn_serves_the_probes(gthread_app: int, method: str, path: str, status: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", gthread_app, timeout=5)
    connection.request(method, path, body=b"{}" if method == "POST" else None)
    response = connection.getresponse()
    assert response.status == status
    assert response.getheader("cache-control") == "no-store"
    connection.close()
