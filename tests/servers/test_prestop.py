"""The preStop endpoint, for servers whose SIGTERM zerodown cannot delay."""

from __future__ import annotations

import signal
import time

import pytest

from tests.bed import Instance, ProcessGroup, get

DELAY = 3.0


def serve(procs: ProcessGroup, server: str) -> Instance:
    env = {"ZERODOWN_SHUTDOWN_DELAY": str(DELAY), "ZERODOWN_PROXY_IDLE_TIMEOUT": "0"}
    if server == "uvicorn":
        # The example itself: the variable turns the endpoint on, as a manifest would.
        env["ZERODOWN_PRESTOP_PATH"] = "/prestop"
        return procs.uvicorn("examples.starlette_app:app", env=env)
    if server == "hypercorn-like":
        # gunicorn -k asgi without zerodown's hooks: signals zerodown cannot delay.
        args = ["-k", "asgi", "--workers", "1"]
        return procs.gunicorn("tests.apps.prestop:asgi_app", env=env, args=args)
    args = ["-k", "gthread", "--workers", "1", "--threads", "4"]
    return procs.gunicorn("tests.apps.prestop:wsgi_app", env=env, args=args)


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn-like", "gthread"])
def test_prestop_drains_waits_the_delay_and_the_sigterm_after_it_does_not_wait_again(
    procs: ProcessGroup, server: str
) -> None:
    instance = serve(procs, server)
    assert get(instance.port, "/prestop", method="POST")[0] == 405
    assert get(instance.port, "/readyz")[0] == 200, "a POST must not drain"

    called = time.monotonic()
    status, connection, _ = get(instance.port, "/prestop")
    waited = time.monotonic() - called
    assert status == 200
    assert waited >= DELAY - 0.1
    assert get(instance.port, "/readyz")[0] == 503
    if server != "gthread":  # gunicorn drops a WSGI app's Connection header
        assert connection == "close"
        assert get(instance.port, "/")[:2] == (200, "close")

    sent = time.monotonic()
    instance.process.send_signal(signal.SIGTERM)
    assert instance.process.wait(timeout=15) is not None
    assert time.monotonic() - sent < DELAY
