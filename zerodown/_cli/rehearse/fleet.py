"""A rehearsal's app instances: how each is started, told to stop, reloaded and awaited."""

from __future__ import annotations

import shlex
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..procs import (
    LOOPBACK,
    ManagedProcess,
    child_environment,
    find_tool,
    free_port,
    start_process,
    stop_all,
    wait_for_http,
)

ServerKind = Literal["uvicorn", "gunicorn", "command"]
#: Short names for ``--worker-class``.
WORKER_CLASSES = {"uvicorn": "zerodown.gunicorn.UvicornWorker"}
GUNICORN_HINT = "gunicorn was not found; install it with `pip install 'zerodown[gunicorn]'`"
#: Above HAProxy's purge delay for idle server connections (5 s), so HAProxy drops an idle
#: connection before the server does; below ``graceful_timeout``, which ``-k asgi`` needs.
GUNICORN_KEEPALIVE = 10


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """How to run one instance of the app on a given port."""

    kind: ServerKind = "uvicorn"
    worker_class: str = "gthread"
    workers: int = 2
    #: Threads per gthread worker.
    threads: int = 8
    #: A gunicorn config of the user's (it imports zerodown's hooks); zerodown's own if None.
    gunicorn_config: str | None = None
    #: A command line with ``{port}`` (and optionally ``{app}``), for ``kind="command"``.
    command: str = ""

    def argv(self, app: str, port: int, drain_timeout: float) -> list[str]:
        if self.kind == "command":
            return [part.format(port=port, app=app) for part in shlex.split(self.command)]
        if self.kind == "uvicorn":
            argv = [sys.executable, "-m", "uvicorn", app, "--host", LOOPBACK, "--port", str(port)]
            # Keep-alive above the proxy's idle lifetime for its server connections.
            drain = str(max(1, int(drain_timeout)))
            return [*argv, "--timeout-keep-alive", "75", "--timeout-graceful-shutdown", drain]
        # The console script, not `python -m gunicorn`: a USR2 upgrade re-executes argv[0].
        argv = [find_tool("gunicorn", GUNICORN_HINT), app, "--bind", f"{LOOPBACK}:{port}"]
        argv += [
            "--no-control-socket",
            "-c",
            self.gunicorn_config or "python:zerodown.gunicorn_conf",
        ]
        if self.gunicorn_config is None:
            worker = WORKER_CLASSES.get(self.worker_class, self.worker_class)
            argv += ["-k", worker, "--workers", str(self.workers)]
            if worker == "gthread":
                argv += ["--threads", str(self.threads)]
            argv += ["--keep-alive", str(GUNICORN_KEEPALIVE)]
            argv += ["--graceful-timeout", str(max(1, int(drain_timeout)))]
        return argv

    @property
    def reloads_on_hup(self) -> bool:
        return self.kind != "uvicorn"

    def describe(self) -> str:
        if self.kind == "command":
            return f"`{self.command}`"
        if self.kind == "gunicorn" and self.gunicorn_config is None:
            threads = f" x {self.threads} threads" if self.worker_class == "gthread" else ""
            return f"gunicorn -k {self.worker_class} ({self.workers} workers{threads})"
        return self.kind


@dataclass(slots=True)
class Instance:
    """One running instance: ``name`` is its release and number, e.g. ``v2-0``."""

    name: str
    release: str
    port: int
    process: ManagedProcess
    signalled_at: float | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def terminate(self) -> None:
        """SIGTERM, as Kubernetes sends it; :meth:`Fleet.wait_for_exit` awaits the end."""
        if self.signalled_at is None:
            self.signalled_at = time.monotonic()
            self.process.send_signal(signal.SIGTERM)

    def workers(self) -> set[int]:
        """The PIDs of its child processes (gunicorn's workers); Linux only."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return {int(pid) for pid in children.read_text().split()}
        except (OSError, ValueError):
            return set()


class NotReady(RuntimeError):
    """An instance exited or never turned ready; the message says what it printed."""


class Fleet:
    """Starts instances on free ports and keeps each one's log in ``workdir``."""

    def __init__(
        self,
        spec: ServerSpec,
        workdir: Path,
        *,
        ready_path: str,
        ready_status: Callable[[int | None], bool],
        drain_timeout: float,
        start_timeout: float,
        env: Mapping[str, str],
    ) -> None:
        self.spec = spec
        self.workdir = workdir
        self.ready_path = ready_path
        self._ready_status = ready_status
        self._drain_timeout = drain_timeout
        self._start_timeout = start_timeout
        self._env = env
        self.instances: list[Instance] = []

    def launch(self, app: str, release: str, number: int, env: Mapping[str, str]) -> Instance:
        """Start ``app`` and return once its readiness path answers as ready."""
        port = free_port()
        name = f"{release}-{number}"
        process = start_process(
            name,
            self.spec.argv(app, port, self._drain_timeout),
            log_path=self.workdir / f"{name}.log",
            env=child_environment(Path.cwd(), {**self._env, **env, "ZERODOWN_RELEASE": release}),
            cwd=Path.cwd(),
        )
        instance = Instance(name, release, port, process)
        self.instances.append(instance)
        self.wait_until_ready(instance)
        return instance

    def wait_until_ready(self, instance: Instance) -> None:
        def ready(status: int | None) -> bool:
            if status == 404 and self.ready_path == "/readyz":
                raise NotReady(
                    f"{instance.name} answers 404 on /readyz, so zerodown does not wrap it: "
                    f"wrap the app in zerodown.ASGIMiddleware or zerodown.WSGIMiddleware "
                    f"(see docs/index.md)"
                )
            return self._ready_status(status)

        url = instance.url + self.ready_path
        try:
            wait_for_http(url, timeout=self._start_timeout, ready=ready, process=instance.process)
        except NotReady:
            raise
        except (RuntimeError, TimeoutError) as error:
            raise NotReady(f"{instance.name}: {error}") from None

    def wait_for_exit(self, instance: Instance, grace: float) -> bool:
        """Wait out the grace period from its SIGTERM; SIGKILL it after. True if it exited."""
        instance.terminate()
        assert instance.signalled_at is not None
        left = instance.signalled_at + grace - time.monotonic()
        if instance.process.wait(max(0.0, left)) is not None:
            return True
        instance.process.stop(signal.SIGKILL, timeout=5)
        return False

    def stop_all(self) -> None:
        stop_all((instance.process for instance in self.instances), timeout=5)
