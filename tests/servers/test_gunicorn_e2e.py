"""gunicorn rotations behind HAProxy under open-loop load, with and without zerodown's hooks."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.bed import Instance, LoadPlan, ProcessGroup, ProxyCheck, in_flight_at
from zerodown._cli.rehearse.k6 import LoadResult

RATE = 120  # requests/s, 20% of them 300 ms slow
DURATION = 10.0
SIGNAL_AT = 3.0
#: HAProxy needs inter 1s x fall 2, plus up to one interval, to mark a server down.
SHUTDOWN_DELAY = 4.0
HOOKS = "python:zerodown.gunicorn_conf"
FLASK = "examples.flask_app:app"
STARLETTE = "examples.starlette_app:app"
# Enough workers that 24 slow requests a second never queue (sync serves one at a time).
WORKERS = {
    "sync": (FLASK, ["-k", "sync", "--workers", "12"]),
    "gthread": (FLASK, ["-k", "gthread", "--workers", "2", "--threads", "8"]),
    "asgi": (STARLETTE, ["-k", "asgi", "--workers", "2"]),
    "uvicorn": (STARLETTE, ["-k", "zerodown.gunicorn.UvicornWorker", "--workers", "2"]),
}


def start(
    procs: ProcessGroup, worker: str, *args: str, hooks: bool, app: str | None = None, **env: str
) -> Instance:
    example, worker_args = WORKERS[worker]
    app = app or example
    env = {
        "ZERODOWN_SHUTDOWN_DELAY": str(SHUTDOWN_DELAY),
        "ZERODOWN_PROXY_IDLE_TIMEOUT": "0",
        **env,
    }
    # Above HAProxy's idle lifetime for server connections, below graceful_timeout.
    argv = [*worker_args, "--keep-alive", "30", "--graceful-timeout", "40", *args]
    if hooks:
        argv = ["-c", HOOKS, *argv]
    else:
        # Without zerodown the app has no probes; the usual health check answers 200
        # whatever the process is doing.
        env["ZERODOWN_DISABLED"] = "1"
    health = "/readyz" if hooks else "/"
    return procs.gunicorn(app, env=env, args=argv, ready_path=health)


def rotate(
    procs: ProcessGroup,
    instances: list[Instance],
    rotation: Callable[[], None],
    *,
    hooks: bool,
    client_timeout: float = 10.0,
) -> tuple[LoadResult, float]:
    """Run the load through HAProxy, call ``rotation()`` after SIGNAL_AT seconds."""
    health = "/readyz" if hooks else "/"
    proxy = procs.haproxy(instances, check=ProxyCheck(path=health))
    plan = LoadPlan(
        proxy.url, rate=RATE, duration=DURATION, slow_path="/slow?ms=300", timeout=client_timeout
    )
    load = procs.load(plan)
    time.sleep(SIGNAL_AT)
    signalled_at = time.time()
    rotation()
    return load.result(timeout=DURATION + 40), signalled_at


def assert_no_failures(result: LoadResult, signalled_at: float) -> None:
    assert len(result.records) >= RATE * DURATION * 0.9, result.describe()
    assert result.failed == [], result.describe()
    in_flight = [r for r in in_flight_at(result, signalled_at) if r.path.startswith("/slow")]
    assert in_flight, "no slow request was in flight at the signal; the scenario proves nothing"
    assert all(record.status == 200 for record in in_flight)


def term_one_of_two(procs: ProcessGroup, worker: str, *, hooks: bool) -> tuple[LoadResult, float]:
    instances = [start(procs, worker, hooks=hooks) for _ in range(2)]
    outcome = rotate(
        procs, instances, lambda: instances[0].process.send_signal(signal.SIGTERM), hooks=hooks
    )
    assert instances[0].process.wait(timeout=60) is not None, "the master did not exit"
    return outcome


@pytest.mark.e2e
@pytest.mark.parametrize("worker", list(WORKERS))
def test_term_fails_no_request(procs: ProcessGroup, worker: str) -> None:
    assert_no_failures(*term_one_of_two(procs, worker, hooks=True))


@pytest.mark.e2e
@pytest.mark.parametrize("worker", list(WORKERS))
def test_term_without_the_hooks_fails_requests(procs: ProcessGroup, worker: str) -> None:
    result, _ = term_one_of_two(procs, worker, hooks=False)
    assert result.failed, f"the baseline must fail requests to prove anything: {result.describe()}"


@pytest.mark.e2e
@pytest.mark.parametrize("worker", ["gthread", "uvicorn"])
def test_hup_reload_fails_no_request(procs: ProcessGroup, worker: str) -> None:
    instance = start(procs, worker, hooks=True)
    result = rotate(
        procs, [instance], lambda: instance.process.send_signal(signal.SIGHUP), hooks=True
    )
    assert_no_failures(*result)
    assert "Hang up: Master" in instance.process.log_text()


@pytest.mark.e2e
def test_fifteen_hup_reloads_in_one_run_fail_no_request(procs: ProcessGroup) -> None:
    """A lost request in one HUP of three (seen behind HAProxy with backend keep-alive)
    could pass a one-reload test by luck; fifteen in one run cannot. Each old uvicorn
    worker retires before it stops, and closes its listener once."""
    instance = start(procs, "uvicorn", hooks=True)
    proxy = procs.haproxy([instance], check=ProxyCheck(path="/readyz"))
    load = procs.load(LoadPlan(proxy.url, rate=150, duration=45, slow_path="/slow?ms=300"))
    time.sleep(3)
    for _ in range(15):
        instance.process.send_signal(signal.SIGHUP)
        time.sleep(2.5)
    result = load.result(timeout=90)
    assert len(result.records) >= 150 * 45 * 0.9, result.describe()
    assert result.failed == [], result.describe()
    log = instance.process.log_text()
    assert log.count("Hang up: Master") == 15
    assert log.count("replaces this worker") >= 15  # the old workers retired
    # uvloop closed gunicorn's wrapped listener a second time after libuv had (EBADF): a
    # descriptor another thread opened in between would have been closed under it.
    assert "Bad file descriptor" not in log


def hup_with_a_slow_import(
    procs: ProcessGroup, worker: str, *, hooks: bool
) -> tuple[LoadResult, float]:
    """HUP a server whose app takes 4 s to import, under clients that wait 2 s at most."""
    app = "tests.apps.slow_import:" + ("wsgi_app" if worker == "gthread" else "asgi_app")
    instance = start(procs, worker, hooks=hooks, app=app, IMPORT_SECONDS="4")
    return rotate(
        procs,
        [instance],
        lambda: instance.process.send_signal(signal.SIGHUP),
        hooks=hooks,
        client_timeout=2.0,
    )


@pytest.mark.e2e
@pytest.mark.parametrize("worker", ["gthread", "uvicorn"])
def test_hup_keeps_the_old_workers_until_the_new_ones_serve(
    procs: ProcessGroup, worker: str
) -> None:
    assert_no_failures(*hup_with_a_slow_import(procs, worker, hooks=True))


@pytest.mark.e2e
def test_hup_without_the_hooks_leaves_nobody_accepting(procs: ProcessGroup) -> None:
    result, _ = hup_with_a_slow_import(procs, "gthread", hooks=False)
    assert len(result.failed) > 10, result.describe()


@pytest.mark.e2e
@pytest.mark.parametrize("worker", ["gthread", "uvicorn"])
def test_max_requests_recycling_fails_no_request(procs: ProcessGroup, worker: str) -> None:
    # About 60 requests a second per worker: each recycles every few seconds.
    instance = start(
        procs, worker, "--max-requests", "150", "--max-requests-jitter", "50", hooks=True
    )
    result, _ = rotate(procs, [instance], lambda: None, hooks=True)
    assert result.failed == [], result.describe()
    assert instance.process.log_text().count("Booting worker") >= 6, "workers never recycled"


def upgrade(instance: Instance, pidfile: Path) -> None:
    """USR2 to the master; once the new master's workers booted, TERM to the old one."""
    instance.process.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 20
    while not Path(f"{pidfile}.2").exists():
        assert time.monotonic() < deadline, "the new master never started"
        time.sleep(0.1)
    time.sleep(2.0)  # its workers boot
    instance.process.send_signal(signal.SIGTERM)


@pytest.mark.e2e
@pytest.mark.parametrize("worker", ["gthread", "uvicorn"])
def test_usr2_then_term_to_the_old_master_fails_no_request(
    procs: ProcessGroup, worker: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "gunicorn.pid"
    instance = start(procs, worker, "--pid", str(pidfile), hooks=True)
    # The new master is in the old one's process group: the process group stops it after.
    result = rotate(procs, [instance], lambda: upgrade(instance, pidfile), hooks=True)
    assert instance.process.wait(timeout=60) is not None, "the old master did not exit"
    assert_no_failures(*result)
    assert "TERM received while a new master" in instance.process.log_text()


def pooled_clients(
    instance: Instance,
    *,
    clients: int = 16,
    pause: float = 0.05,
    rotation: Callable[[], None] | None = None,
) -> tuple[Counter[str], int]:
    """Pooled keep-alive clients straight at ``instance`` for DURATION seconds, each
    pausing ``pause`` s between requests; ``rotation()`` is called after 2 s. They are
    service-to-service clients through a ClusterIP, which kube-proxy forwards at L4,
    connection for connection. httpx retries nothing.

    Returns the failures by kind and the number of answered requests.
    """
    failures: Counter[str] = Counter()
    answered = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + DURATION

    def client() -> None:
        with httpx.Client(base_url=instance.url, timeout=10) as http:
            while time.monotonic() < deadline:
                path = "/slow?ms=100" if random.random() < 0.2 else "/"
                try:
                    status = http.get(path).status_code
                    kind = f"http_{status}" if status >= 500 else None
                except httpx.HTTPError as error:
                    kind = type(error).__name__
                with lock:
                    if kind is None:
                        answered[0] += 1
                    else:
                        failures[kind] += 1
                time.sleep(pause)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    if rotation is not None:
        time.sleep(2.0)
        rotation()
    for thread in threads:
        thread.join(timeout=DURATION + 20)
    return failures, answered[0]


def uvicorn_worker(hooks: bool) -> list[str]:
    """Without the hooks, uvicorn-worker's own worker, as a user would run it (a later -k
    wins); with them, zerodown's."""
    return [] if hooks else ["-k", "uvicorn_worker.UvicornWorker"]


def recycle_under_pooled_clients(procs: ProcessGroup, *, hooks: bool) -> tuple[Counter[str], int]:
    """Workers recycling every 60-70 requests under 48 pooled clients sending back to back:
    each recycle meets connections that a client is about to reuse, dozens of recycles a
    run, so that the baseline's race shows in every run, not one in a few."""
    recycling = ["--max-requests", "60", "--max-requests-jitter", "10"]
    instance = start(procs, "uvicorn", *uvicorn_worker(hooks), *recycling, hooks=hooks)
    outcome = pooled_clients(instance, clients=48, pause=0.0)
    assert instance.process.log_text().count("Booting worker") >= 20, "workers never recycled"
    return outcome


@pytest.mark.e2e
def test_max_requests_recycling_fails_no_pooled_client(procs: ProcessGroup) -> None:
    failures, answered = recycle_under_pooled_clients(procs, hooks=True)
    assert answered >= 1000
    assert failures == Counter(), failures


@pytest.mark.e2e
def test_max_requests_recycling_without_the_hooks_fails_pooled_clients(
    procs: ProcessGroup,
) -> None:
    # uvicorn closes every idle kept-alive connection the moment the limit is reached,
    # while clients are sending on them.
    failures, _ = recycle_under_pooled_clients(procs, hooks=False)
    assert failures, "the baseline must fail requests to prove anything"


def upgrade_under_pooled_clients(
    procs: ProcessGroup, tmp_path: Path, *, hooks: bool
) -> tuple[Counter[str], int]:
    """USR2 then TERM to the old master while 48 pooled clients send back to back."""
    pidfile = tmp_path / "gunicorn.pid"
    instance = start(procs, "uvicorn", "--pid", str(pidfile), *uvicorn_worker(hooks), hooks=hooks)
    outcome = pooled_clients(
        instance, clients=48, pause=0.0, rotation=lambda: upgrade(instance, pidfile)
    )
    assert instance.process.wait(timeout=60) is not None, "the old master did not exit"
    return outcome


@pytest.mark.e2e
def test_usr2_then_term_fails_no_pooled_client(procs: ProcessGroup, tmp_path: Path) -> None:
    failures, answered = upgrade_under_pooled_clients(procs, tmp_path, hooks=True)
    assert answered >= 1000
    assert failures == Counter(), failures


@pytest.mark.e2e
def test_usr2_then_term_without_the_hooks_fails_pooled_clients(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    # The old workers close their kept-alive connections when the old master stops them,
    # some right after a response that did not say so, while clients send on them.
    failures, _ = upgrade_under_pooled_clients(procs, tmp_path, hooks=False)
    assert failures, "the baseline must fail requests to prove anything"
