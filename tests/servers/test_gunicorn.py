"""zerodown's gunicorn hooks on a real gunicorn: what each worker class sees during a drain."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.bed import Instance, ProcessGroup, get, slow_request_across_sigterm
from zerodown import ConfigurationError, Lifecycle, Settings
from zerodown._servers.gunicorn import (
    WATCH_INTERVAL,
    SharedState,
    WorkerWatch,
    require_verified_gunicorn,
)
from zerodown._servers.uvicorn_worker import drain_bound

HOOKS = "python:zerodown.gunicorn_conf"
FLASK = "examples.flask_app:app"
STARLETTE = "examples.starlette_app:app"
WORKERS = {
    "sync": (FLASK, ["-k", "sync"]),
    "gthread": (FLASK, ["-k", "gthread", "--threads", "4"]),
    "asgi": (STARLETTE, ["-k", "asgi"]),
    "uvicorn": (STARLETTE, ["-k", "zerodown.gunicorn.UvicornWorker"]),
}


def start(
    procs: ProcessGroup, worker: str, *args: str, config: str | None = HOOKS, **env: str
) -> Instance:
    app, worker_args = WORKERS[worker]
    settings = {"ZERODOWN_SHUTDOWN_DELAY": "3", "ZERODOWN_PROXY_IDLE_TIMEOUT": "0", **env}
    config_args = [] if config is None else ["-c", config]
    argv = [*config_args, *worker_args, "--workers", "2", "--keep-alive", "5", *args]
    return procs.gunicorn(app, env=settings, args=argv, ready_path="/readyz")


@pytest.mark.parametrize("worker", list(WORKERS))
def test_term_to_the_master_drains_every_worker_and_keeps_serving(
    procs: ProcessGroup, worker: str
) -> None:
    instance = start(procs, worker, "--graceful-timeout", "5")
    sent = time.monotonic()
    instance.process.send_signal(signal.SIGTERM)
    # Several answers in a row, so that both workers were asked.
    answers: list[int] = []
    while answers[-6:] != [503] * 6:
        assert time.monotonic() - sent < 2, f"readiness did not fail everywhere: {answers}"
        answers.append(get(instance.port, "/readyz")[0])
    flipped_after = time.monotonic() - sent
    assert flipped_after < 1.0, f"every worker failed readiness only after {flipped_after:.2f}s"
    # Each worker follows the master at its own watch step, and the six answers may all
    # have come from one worker: give the other its step before asking for a close.
    time.sleep(2 * WATCH_INTERVAL)
    assert get(instance.port, "/livez")[:2] == (200, "close")
    # The listener stays open and new connections are served, each one closed after.
    for _ in range(4):
        assert get(instance.port, "/")[:2] == (200, "close")
    assert instance.process.returncode is None
    assert instance.process.wait(timeout=15) is not None
    log = instance.process.log_text()
    assert "zerodown: TERM received; draining" in log
    assert "lame-duck window over" in log
    assert "SIGKILL" not in log
    assert "Perhaps out of memory" not in log


@pytest.mark.parametrize(
    ("worker", "args"),
    [("sync", ()), ("gthread", ()), ("uvicorn", ()), ("asgi", ("--keep-alive", "15"))],
)
def test_the_example_config_serves_each_worker_class(
    procs: ProcessGroup, worker: str, args: tuple[str, ...]
) -> None:
    instance = start(procs, worker, *args, config="examples/gunicorn.conf.py")
    assert get(instance.port, "/")[0] == 200
    instance.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert get(instance.port, "/readyz")[0] == 503
    assert "zerodown: TERM received; draining" in instance.process.log_text()


def test_a_request_in_flight_when_the_worker_learns_of_term_retires_its_connection(
    procs: ProcessGroup,
) -> None:
    # The worker learns of TERM in its watch thread, not on the loop serving the request:
    # the request's connection still closes after its answer.
    instance = start(procs, "uvicorn", "--graceful-timeout", "5")
    answers = slow_request_across_sigterm(instance)
    assert answers == ((200, None, b'{"hello":"world"}'), (200, "close", b'{"slept_ms":1500}'))
    assert instance.process.wait(timeout=15) is not None


def test_a_second_term_skips_the_rest_of_the_delay(procs: ProcessGroup) -> None:
    instance = start(procs, "gthread", ZERODOWN_SHUTDOWN_DELAY="60")
    instance.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert get(instance.port, "/readyz")[0] == 503
    sent = time.monotonic()
    instance.process.send_signal(signal.SIGTERM)
    assert instance.process.wait(timeout=15) is not None
    assert time.monotonic() - sent < 10
    assert "TERM received again; skipping the rest of the delay" in instance.process.log_text()


def test_readiness_counts_in_flight_requests_of_every_worker(procs: ProcessGroup) -> None:
    instance = start(procs, "gthread", ZERODOWN_HEALTH_TOKEN="s3cret")
    slow = threading.Thread(target=get, args=(instance.port, "/slow?ms=3000"))
    slow.start()
    token = {"Authorization": "Bearer s3cret"}
    try:
        deadline = time.monotonic() + 5
        while True:
            body = json.loads(get(instance.port, "/readyz?verbose", headers=token)[2])
            # The second worker is listed once it has booted, which may be after the first
            # answered the readiness the fixture waited for.
            if body["inFlight"] == 1 and len(body["processes"]) == 2:
                break
            assert time.monotonic() < deadline, f"not both workers, one busy: {body}"
            time.sleep(0.1)
        busy = [process for process in body["processes"] if process["inFlight"] == 1]
        assert len(busy) == 1, body
        assert busy[0]["oldestRequestSeconds"] > 0, body
    finally:
        slow.join(timeout=10)
    plain = json.loads(get(instance.port, "/readyz")[2])
    assert plain == {"status": "pass", "phase": "ready"}


def test_the_uvicorn_worker_treats_quit_as_a_quick_stop(procs: ProcessGroup) -> None:
    instance = start(procs, "uvicorn", "--graceful-timeout", "30")
    slow = threading.Thread(target=_ignore_errors, args=(instance.port, "/slow?ms=20000"))
    slow.start()
    time.sleep(0.5)
    sent = time.monotonic()
    instance.process.send_signal(signal.SIGQUIT)
    assert instance.process.wait(timeout=15) is not None
    # uvicorn-worker's own class serves on until the master's SIGKILL at graceful_timeout.
    assert time.monotonic() - sent < 10
    assert "Perhaps out of memory" not in instance.process.log_text()
    slow.join(timeout=10)


def _ignore_errors(port: int, path: str) -> None:
    with contextlib.suppress(OSError, http.client.HTTPException):
        get(port, path)


def test_the_uvicorn_worker_runs_the_shutdown_callbacks_before_the_master_kills_it(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    events = tmp_path / "events"
    events.touch()
    _app, worker_args = WORKERS["uvicorn"]
    instance = procs.gunicorn(
        "tests.apps.recorder:app",
        env={
            "ZD_EVENTS": str(events),
            "ZERODOWN_SHUTDOWN_DELAY": "0",
            "ZERODOWN_CALLBACK_TIMEOUT": "1",
            "ZERODOWN_PROXY_IDLE_TIMEOUT": "0",
        },
        args=["-c", HOOKS, *worker_args, "--workers", "1", "--graceful-timeout", "8"],
        ready_path="/readyz",
    )
    # A request that outlives graceful_timeout: the drain must give up in time for the rest.
    stuck = threading.Thread(target=_ignore_errors, args=(instance.port, "/slow?ms=30000"))
    stuck.start()
    time.sleep(0.5)
    instance.process.send_signal(signal.SIGTERM)
    assert instance.process.wait(timeout=20) is not None
    stuck.join(timeout=10)
    recorded = events.read_text().splitlines()
    assert "callback registered first" in recorded, recorded
    assert "Perhaps out of memory" not in instance.process.log_text()


def test_an_unverified_gunicorn_is_refused_at_start_up(procs: ProcessGroup, tmp_path: Path) -> None:
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(
        "import gunicorn\ngunicorn.version_info = (28, 0, 0)\n"
        "from zerodown.gunicorn import *  # noqa: F403\n"
    )
    with pytest.raises(RuntimeError, match="exited with status 1") as failure:
        start(procs, "gthread", config=str(config))
    assert "verified with gunicorn 27.0.x; this is gunicorn 28.0.0" in str(failure.value)
    assert "pip install 'gunicorn>=27.0,<27.1'" in str(failure.value)


def test_an_arbiter_without_the_internals_is_refused() -> None:
    class Arbiter:
        cfg = WORKERS = reexec_pid = None

        def wait_for_signals(self) -> None: ...

    with pytest.raises(ConfigurationError, match="lacks handle_term"):
        require_verified_gunicorn((27, 0, 1), Arbiter())


def test_misconfigured_budgets_are_reported_at_start_up(procs: ProcessGroup) -> None:
    instance = start(
        procs,
        "asgi",
        "--graceful-timeout",
        "30",
        "--keep-alive",
        "40",
        ZERODOWN_GRACE_PERIOD="20",
        ZERODOWN_PROXY_IDLE_TIMEOUT="60",
    )
    log = instance.process.log_text()
    assert "ZERODOWN_GRACE_PERIOD is 20s" in log
    assert "raise terminationGracePeriodSeconds to at least 35" in log
    assert "set keepalive (now 40s) below graceful_timeout" in log
    assert "keepalive 40s is not above the proxy's idle timeout (60s)" in log


def test_a_well_configured_server_starts_without_warnings(procs: ProcessGroup) -> None:
    instance = start(procs, "gthread", "--graceful-timeout", "20", ZERODOWN_GRACE_PERIOD="30")
    assert "zerodown: " not in instance.process.log_text().replace("zerodown: ready", "")


def test_without_the_hooks_the_uvicorn_worker_falls_back_to_the_app_delay(
    procs: ProcessGroup,
) -> None:
    instance = start(procs, "uvicorn", config=None)
    instance.process.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    # The master closed its listener, but the workers hold theirs for the app's delay.
    assert get(instance.port, "/")[:2] == (200, "close")


def test_the_worker_watch_follows_the_master_and_publishes_its_load(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = SharedState()
    lifecycle = Lifecycle(settings=Settings.load(environ={}))
    watch = WorkerWatch(state, lifecycle, slot=3)
    token = lifecycle.request_started()
    watch.step()
    assert [load.in_flight for load in state.loads()] == [1]
    assert state.serving_pids() == set()
    lifecycle.mark_ready()
    watch.step()
    assert state.serving_pids() == {os.getpid()}
    state.start_retiring()
    watch.step()
    assert lifecycle.is_leaving
    assert not lifecycle.is_draining
    state.start_draining()
    watch.step()
    assert lifecycle.is_draining
    lifecycle.request_finished(token)
    watch.step()
    assert [load.in_flight for load in state.loads()] == [0]
    state.start_stopping()  # the master's lame-duck window is over
    watch.step()
    watch.step()
    closed = [r for r in caplog.records if "the server stops accepting" in r.getMessage()]
    assert len(closed) == 1


def test_the_uvicorn_drain_leaves_room_for_the_callbacks() -> None:
    lifecycle = Lifecycle(settings=Settings.load(environ={}))
    lifecycle.on_shutdown(lambda: None, timeout=5)
    lifecycle.on_shutdown(lambda: None, timeout=3)
    assert drain_bound(30, lifecycle, None) == 21
    assert drain_bound(30, lifecycle, 10) == 10
    assert drain_bound(5, lifecycle, None) == 1


def test_liveness_fails_when_every_other_gthread_thread_is_stuck(procs: ProcessGroup) -> None:
    instance = procs.gunicorn(
        "tests.apps.stuck_wsgi:app",
        env={"ZERODOWN_PROXY_IDLE_TIMEOUT": "0"},
        args=["-c", HOOKS, "-k", "gthread", "--threads", "3", "--workers", "1"],
        ready_path="/livez",
    )
    stuck = [threading.Thread(target=get, args=(instance.port, "/slow?ms=2500")) for _ in range(2)]
    for thread in stuck:
        thread.start()
    try:
        time.sleep(1.0)
        status, _, body = get(instance.port, "/livez")
        assert status == 503, body
        assert get(instance.port, "/readyz")[0] == 200
    finally:
        for thread in stuck:
            thread.join(timeout=10)
    assert get(instance.port, "/livez")[0] == 200
