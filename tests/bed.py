"""The test bed: real servers on loopback, each started on a free port and stopped by PID.

Later suites reuse it through the fixtures in conftest.py.
"""

from __future__ import annotations

import http.client
import shutil
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from signal import SIGTERM

from zerodown._cli.postgres import ThrowawayPostgres
from zerodown._cli.procs import (
    LOOPBACK,
    ManagedProcess,
    child_environment,
    find_tool,
    free_port,
    start_process,
    stop_all,
    wait_for_http,
    wait_for_port,
)
from zerodown._cli.rehearse.haproxy import DEFAULT_BACKEND, HAProxy, ProxyCheck, start_haproxy
from zerodown._cli.rehearse.k6 import LoadPlan, LoadResult, LoadRun, RequestRecord, start_load

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Instance:
    """One app server process listening on ``port``."""

    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


Answer = tuple[int, str | None, bytes]
"""An HTTP answer: status, ``Connection`` header, body."""


def slow_request_across_sigterm(instance: Instance) -> tuple[Answer, Answer]:
    """On one kept-alive connection, ``/`` and then ``/slow?ms=1500``, with SIGTERM sent to
    ``instance`` 0.3 s into the slow one: both answers. The slow answer starts long after
    the signal, so a loaded machine's late signal delivery cannot reorder the two."""
    connection = http.client.HTTPConnection(LOOPBACK, instance.port, timeout=10)
    answers: list[Answer] = []

    def ask(path: str) -> None:
        connection.request("GET", path)
        response = connection.getresponse()
        answers.append((response.status, response.getheader("connection"), response.read()))

    try:
        ask("/")
        in_flight = threading.Thread(target=ask, args=("/slow?ms=1500",))
        in_flight.start()
        time.sleep(0.3)
        instance.process.send_signal(SIGTERM)
        in_flight.join()
    finally:
        connection.close()
    first, slow = answers
    return first, slow


@dataclass
class Service:
    """A backing service (redis-server, PostgreSQL)."""

    process: ManagedProcess
    port: int
    url: str


class ProcessGroup:
    """Everything one test starts; :meth:`stop_all` stops each process by its PID."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[ManagedProcess] = []
        self.proxies: list[HAProxy] = []
        self._count = 0

    def _log(self, name: str) -> Path:
        self._count += 1
        return self.workdir / f"{self._count:02d}-{name}.log"

    def _track(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        return process

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
    ) -> ManagedProcess:
        return self._track(start_process(name, argv, log_path=self._log(name), env=env, cwd=REPO))

    def uvicorn(
        self,
        app: str,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        ready_path: str = "/livez",
    ) -> Instance:
        port = free_port()
        # Keep-alive above HAProxy's idle pool lifetime, as the docs advise for any proxy.
        argv = [sys.executable, "-m", "uvicorn", app, "--host", LOOPBACK, "--port", str(port)]
        argv += ["--timeout-keep-alive", "30", *args]
        return self._serve("uvicorn", port, argv, env, ready_path)

    def gunicorn(
        self,
        app: str,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        ready_path: str = "/livez",
    ) -> Instance:
        port = free_port()
        # The console script, not `python -m gunicorn`: a USR2 upgrade re-executes argv[0].
        # One control socket path is shared by every master on a host (reference/baseline.md).
        argv = [str(Path(sys.executable).with_name("gunicorn")), app]
        argv += ["--bind", f"{LOOPBACK}:{port}", "--no-control-socket", *args]
        return self._serve("gunicorn", port, argv, env, ready_path)

    def _serve(
        self,
        name: str,
        port: int,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        ready_path: str,
    ) -> Instance:
        """Run ``argv`` and wait until ``ready_path`` answers 200."""
        process = self.start(name, argv, child_environment(REPO, env))
        wait_for_http(f"http://{LOOPBACK}:{port}{ready_path}", timeout=30, process=process)
        return Instance(process, port)

    def haproxy(
        self,
        instances: Sequence[Instance],
        *,
        check: ProxyCheck | None = None,
        retries: int = 0,
    ) -> HAProxy:
        """HAProxy with ``instances`` as servers ``s0``, ``s1``, ..."""
        self._count += 1
        proxy = start_haproxy(
            workdir=self.workdir / f"{self._count:02d}-haproxy", check=check, retries=retries
        )
        self.proxies.append(proxy)
        names = [f"s{index}" for index in range(len(instances))]
        for name, instance in zip(names, instances, strict=True):
            proxy.add_server(DEFAULT_BACKEND, name, instance.port)
        proxy.wait_for_states(dict.fromkeys(names, "UP"))
        return proxy

    def load(self, plan: LoadPlan) -> LoadRun:
        self._count += 1
        run = start_load(plan, workdir=self.workdir / f"{self._count:02d}-k6")
        self._track(run.process)
        return run

    def redis(self, port: int | None = None) -> Service:
        """A redis-server on a free port, or on ``port`` to start one again where it was."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is missing: run `bash scripts/zd setup`")
        port = port or free_port()
        data = self.workdir / f"redis-{port}"
        data.mkdir(exist_ok=True)
        argv = [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly"]
        # DEBUG SLEEP pauses the server: a stalled Redis, for the outage tests.
        argv += ["no", "--dir", str(data), "--enable-debug-command", "local"]
        process = self.start("redis", argv)
        wait_for_port(process, port)
        return Service(process, port, f"redis://{LOOPBACK}:{port}/0")

    def stop_all(self) -> None:
        for proxy in self.proxies:
            proxy.stop()
        stop_all(reversed(self.processes))


def find_nginx() -> str:
    return find_tool("nginx", "nginx is missing: run `bash scripts/zd setup`")


# -- PostgreSQL ------------------------------------------------------------------------


def start_postgres(processes: list[ManagedProcess]) -> Service:
    """A throwaway PostgreSQL, as a rehearsal starts it, logging in plain text to its output
    (the tests read statements there); stopped with the other processes."""
    server = ThrowawayPostgres.start({"logging_collector": "off", "log_destination": "stderr"})
    processes.append(server.process)
    return Service(server.process, server.port, server.database.url)


__all__ = [
    "REPO",
    "Instance",
    "LoadPlan",
    "ProcessGroup",
    "ProxyCheck",
    "Service",
    "find_nginx",
    "start_postgres",
]


def in_flight_at(result: LoadResult, moment: float) -> list[RequestRecord]:
    """Requests that had started and not ended at ``moment`` (a ``time.time()``)."""
    return [record for record in result.records if record.started <= moment < record.ended]


def get(
    port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, str | None, bytes]:
    """One request on a connection of its own: the status, the Connection header, the body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("connection"), response.read()
    finally:
        connection.close()
