"""The shutdown sequence under a real uvicorn process."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.bed import Instance, ProcessGroup, slow_request_across_sigterm

EXAMPLES = ["examples.starlette_app:app", "examples.fastapi_app:app"]


def get(
    port: int, path: str, connection: http.client.HTTPConnection | None = None
) -> tuple[int, str | None, bytes]:
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    if own:
        connection.close()
    return response.status, response.getheader("connection"), body


def start(procs: ProcessGroup, app: str, delay: float, **env: str) -> Instance:
    settings = {"ZERODOWN_SHUTDOWN_DELAY": str(delay), "ZERODOWN_DRAIN_TIMEOUT": "10", **env}
    return procs.uvicorn(app, env=settings, args=["--timeout-graceful-shutdown", "10"])


@pytest.mark.parametrize("app", EXAMPLES)
def test_sigterm_flips_readiness_at_once_and_keeps_serving(procs: ProcessGroup, app: str) -> None:
    instance = start(procs, app, delay=3)
    kept_alive = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=10)
    assert get(instance.port, "/", kept_alive)[:2] == (200, None)
    assert get(instance.port, "/readyz")[0] == 200

    sent = time.monotonic()
    instance.process.send_signal(signal.SIGTERM)
    while get(instance.port, "/readyz")[0] != 503:
        assert time.monotonic() - sent < 2, "readiness never flipped"
    flipped_after = time.monotonic() - sent
    assert flipped_after <= 0.1, f"readiness flipped {flipped_after:.3f}s after SIGTERM"

    _status, connection, body = get(instance.port, "/readyz")
    assert json.loads(body) == {"status": "fail", "phase": "draining", "inFlight": 0}
    assert connection == "close"
    assert get(instance.port, "/livez")[:2] == (200, "close")
    # The connection kept alive before SIGTERM is served, then retired.
    assert get(instance.port, "/", kept_alive)[:2] == (200, "close")
    # New connections are still accepted and served during the delay.
    time.sleep(1.5)
    assert get(instance.port, "/slow?ms=50")[:2] == (200, "close")
    assert instance.process.returncode is None
    assert instance.process.wait(timeout=10) is not None


@pytest.mark.parametrize("server", ["uvicorn", "uvicorn-h11"])
def test_a_request_in_flight_at_sigterm_is_answered_and_retires_its_connection(
    procs: ProcessGroup, server: str
) -> None:
    # The hot path hands the server's own send to the app; under httptools zerodown tells
    # the request's cycle to close, and uvicorn says so in the response. h11's cycle would
    # close without saying so, so there only the requests that start later say it.
    args = ["--http", "httptools" if server == "uvicorn" else "h11"]
    settings = {"ZERODOWN_SHUTDOWN_DELAY": "3", "ZERODOWN_DRAIN_TIMEOUT": "10"}
    instance = procs.uvicorn("examples.starlette_app:app", env=settings, args=args)
    first, (status, connection, body) = slow_request_across_sigterm(instance)
    assert first[:2] == (200, None)
    assert (status, body) == (200, b'{"slept_ms":1500}')
    assert connection == ("close" if server == "uvicorn" else None)
    assert get(instance.port, "/")[:2] == (200, "close")
    assert instance.process.wait(timeout=15) is not None


def test_exit_waits_for_in_flight_then_runs_callbacks_in_reverse(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    events = tmp_path / "events.txt"
    delay, slow = 2.0, 1.5
    instance = start(
        procs,
        "tests.apps.recorder:app",
        delay,
        ZD_EVENTS=str(events),
        ZERODOWN_CALLBACK_TIMEOUT="0.5",
    )
    answers: list[tuple[int, str | None, bytes]] = []

    sent = time.monotonic()
    instance.process.send_signal(signal.SIGTERM)
    time.sleep(delay - 0.5)
    # Starts during the lame-duck window and runs past its end.
    slow_request = threading.Thread(
        target=lambda: answers.append(get(instance.port, f"/slow?ms={int(slow * 1000)}"))
    )
    slow_request.start()
    status = instance.process.wait(timeout=20)
    exited_after = time.monotonic() - sent
    slow_request.join()

    assert answers == [(200, "close", b'{"slept_ms":1500}')]
    assert status == -signal.SIGTERM  # uvicorn re-raises the signal it stopped for
    callbacks_budget = 4 * 0.5
    assert exited_after <= delay + slow + callbacks_budget + 1
    assert events.read_text().splitlines() == [
        "draining",
        "callback that hangs",
        "callback that fails",
        "callback registered second",
        "callback registered first",
    ]
    log = instance.process.log_text()
    assert "hangs timed out after 0.5s" in log
    assert "fails failed" in log


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_second_signal_skips_the_delay_without_losing_in_flight(
    procs: ProcessGroup, second: signal.Signals
) -> None:
    instance = start(procs, "examples.starlette_app:app", delay=30)
    answers: list[tuple[int, str | None, bytes]] = []
    in_flight = threading.Thread(target=lambda: answers.append(get(instance.port, "/slow?ms=2000")))
    in_flight.start()
    time.sleep(0.3)
    instance.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    sent = time.monotonic()
    instance.process.send_signal(second)
    assert instance.process.wait(timeout=10) is not None
    assert time.monotonic() - sent < 5, "the second signal did not cut the 30 s delay"
    in_flight.join()
    assert answers
    assert answers[0][0] == 200
    assert "skipping the rest of the delay" in instance.process.log_text()


def test_sigint_first_skips_the_delay(procs: ProcessGroup) -> None:
    instance = start(procs, "examples.starlette_app:app", delay=30)
    instance.process.send_signal(signal.SIGINT)
    assert instance.process.wait(timeout=10) is not None


def test_startup_warns_about_an_unbounded_drain_and_a_budget_that_does_not_fit(
    procs: ProcessGroup,
) -> None:
    env = {"ZERODOWN_SHUTDOWN_DELAY": "20", "ZERODOWN_GRACE_PERIOD": "30"}
    instance = procs.uvicorn("examples.starlette_app:app", env=env)
    log = instance.process.log_text()
    assert "timeout_graceful_shutdown is unbounded" in log
    assert "zerodown bounds it to drain_timeout=15s" in log
    assert "ZERODOWN_GRACE_PERIOD is 30s" in log
    assert "raise terminationGracePeriodSeconds to at least 37" in log

    fits = procs.uvicorn(
        "examples.starlette_app:app",
        env={"ZERODOWN_SHUTDOWN_DELAY": "5", "ZERODOWN_GRACE_PERIOD": "30"},
        args=["--timeout-graceful-shutdown", "20"],
    )
    assert "zerodown:" not in fits.process.log_text().replace("zerodown: ready", "")


def raw_exchange(port: int, request: bytes) -> bytes:
    """What the server answered before it closed (or reset) the connection."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        try:
            client.sendall(request)
            while chunk := client.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


@pytest.mark.parametrize("http_impl", ["httptools", "h11"])
def test_bad_probe_requests_get_4xx_never_500(procs: ProcessGroup, http_impl: str) -> None:
    instance = procs.uvicorn("examples.starlette_app:app", args=["--http", http_impl])
    port = instance.port
    cases = {
        b"POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Connection: close\r\n\r\nabc": 405,
        b"DELETE /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n": 405,
        b"GET /readyz?verbose&exclude=%ff&x=" + b"y" * 4000 + b" HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\n\r\n": 200,
    }
    for request, expected in cases.items():
        status_line = raw_exchange(port, request).split(b"\r\n", 1)[0]
        assert status_line.split(b" ")[1] == str(expected).encode(), request[:40]
    huge = (
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"z" * 200_000
        + b"\r\nConnection: close\r\n\r\n"
    )
    answer = raw_exchange(port, huge)
    assert not answer.startswith(b"HTTP/1.1 5"), answer[:80]
    assert get(port, "/readyz")[0] == 200, "the server survived the bad requests"
