"""A rehearsal's app instances: how each is started, told to stop, reloaded and awaited."""

from __future__ import annotations

import json
import re
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..._rehearsal_env import INSTANCE_VARIABLE
from ..procs import (
    LOOPBACK,
    ManagedProcess,
    child_environment,
    find_tool,
    free_port,
    http_get,
    start_process,
    stop_all,
    wait_for_http,
)

ServerKind = Literal["uvicorn", "gunicorn", "hypercorn", "granian", "uwsgi", "command"]
SERVERS: tuple[ServerKind, ...] = ("uvicorn", "gunicorn", "hypercorn", "granian", "uwsgi")
Interface = Literal["asgi", "wsgi"]
#: Short names for ``--worker-class``.
WORKER_CLASSES = {"uvicorn": "zerodown.gunicorn.UvicornWorker"}
#: What to install when a server's command is missing.
INSTALL_HINTS = {
    "gunicorn": "pip install 'zerodown[gunicorn]'",
    "hypercorn": "pip install hypercorn",
    "granian": "pip install granian",
    "uwsgi": "pip install pyuwsgi",
}
#: Above HAProxy's purge delay for idle server connections (5 s), so HAProxy drops an idle
#: connection before the server does; below ``graceful_timeout``, which ``-k asgi`` needs.
SERVER_KEEPALIVE = 10
#: Where the rehearsal calls zerodown's preStop endpoint on servers that do not let it
#: hold SIGTERM back, as a Kubernetes ``preStop: httpGet`` would.
PRESTOP_PATH = "/_zerodown/prestop"


#: gunicorn's settings when neither the command line nor a config of the user's gives them.
DEFAULT_WORKER_CLASS, DEFAULT_WORKERS, DEFAULT_THREADS = "gthread", 2, 8
#: The line gunicorn logs at start naming the worker class it runs.
_WORKER_LINE = re.compile(r"Using worker: (\S+)")


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """How to run one instance of the app on a given port.

    ``worker_class``, ``workers`` and ``threads`` are None when not given: with a gunicorn
    config of the user's, its values stand; without one, the defaults here. hypercorn's
    ``workers`` default to 0 (it serves in its own process, where zerodown holds SIGTERM
    back); granian's to 1; uWSGI's to 2 processes of 8 threads.
    """

    kind: ServerKind = "uvicorn"
    worker_class: str | None = None
    workers: int | None = None
    #: Threads per gthread worker, or per uWSGI process.
    threads: int | None = None
    #: A gunicorn config of the user's (it imports zerodown's hooks); zerodown's own if None.
    gunicorn_config: str | None = None
    #: A command line with ``{port}`` (and optionally ``{app}``), for ``kind="command"``.
    command: str = ""
    #: The app is a factory to call (``module:create_app``).
    factory: bool = False
    #: granian's application interface.
    interface: Interface = "asgi"
    #: More options for the server's command line (``--max-requests 100``), after zerodown's.
    server_args: tuple[str, ...] = ()

    def argv(self, app: str, port: int, drain_timeout: float, control: Path) -> list[str]:
        """The command of one instance; ``control`` is a path of its own it may use (uWSGI's
        master FIFO)."""
        if self.kind == "command":
            return [part.format(port=port, app=app) for part in shlex.split(self.command)]
        return [*self._server_argv(app, port, drain_timeout, control), *self.server_args]

    def _server_argv(self, app: str, port: int, drain_timeout: float, control: Path) -> list[str]:
        drain = str(max(1, int(drain_timeout)))
        if self.kind == "uvicorn":
            argv = [sys.executable, "-m", "uvicorn", app, "--host", LOOPBACK, "--port", str(port)]
            # Keep-alive above the proxy's idle lifetime for its server connections.
            argv += ["--timeout-keep-alive", "75", "--timeout-graceful-shutdown", drain]
            return [*argv, "--factory"] if self.factory else argv
        if self.kind == "hypercorn":
            called = app + "()" if self.factory and not app.endswith(")") else app
            argv = [self._tool(), called, "--bind", f"{LOOPBACK}:{port}"]
            argv += ["--workers", str(self.workers or 0), "--keep-alive", str(SERVER_KEEPALIVE)]
            argv += ["--graceful-timeout", drain]
            return [*argv, "-k", self.worker_class] if self.worker_class else argv
        if self.kind == "granian":
            argv = [self._tool(), "--interface", self.interface, "--host", LOOPBACK]
            argv += ["--port", str(port), "--workers", str(self.workers or 1)]
            return [*argv, *(["--factory"] if self.factory else []), app]
        if self.kind == "uwsgi":
            # --die-on-term: uWSGI 2.0 reloads on SIGTERM otherwise. --lazy-apps: each worker
            # loads the app, which a chain reload needs.
            argv = [self._tool(), "--http-socket", f"{LOOPBACK}:{port}", "--module", app]
            argv += ["--master", "--die-on-term", "--need-app", "--lazy-apps"]
            argv += ["--processes", str(self.workers or DEFAULT_WORKERS)]
            argv += ["--threads", str(self.threads or DEFAULT_THREADS)]
            argv += ["--master-fifo", str(control), "--worker-reload-mercy", drain]
            return argv
        return self._gunicorn_argv(app, port, drain)

    def _gunicorn_argv(self, app: str, port: int, drain: str) -> list[str]:
        if self.factory and not app.endswith(")"):
            app += "()"  # gunicorn calls an app given as `module:create_app()`
        # The console script, not `python -m gunicorn`: a USR2 upgrade re-executes argv[0].
        argv = [self._tool(), app, "--bind", f"{LOOPBACK}:{port}"]
        argv += [
            "--no-control-socket",
            "-c",
            self.gunicorn_config or "python:zerodown.gunicorn_conf",
        ]
        # The command line overrides the config, as gunicorn has it.
        worker_class, workers, threads = (self.worker_class, self.workers, self.threads)
        if self.gunicorn_config is None:
            worker_class = worker_class or DEFAULT_WORKER_CLASS
            workers = workers or DEFAULT_WORKERS
            threads = threads or DEFAULT_THREADS
            argv += ["--keep-alive", str(SERVER_KEEPALIVE)]
            argv += ["--graceful-timeout", drain]
        if worker_class is not None:
            argv += ["-k", WORKER_CLASSES.get(worker_class, worker_class)]
        if workers is not None:
            argv += ["--workers", str(workers)]
        if threads is not None and worker_class in (None, "gthread"):
            argv += ["--threads", str(threads)]
        return argv

    def _tool(self) -> str:
        hint = INSTALL_HINTS[self.kind]
        return find_tool(self.kind, f"{self.kind} was not found; install it with `{hint}`")

    @property
    def reloads(self) -> bool:
        """Whether the server reloads its workers in place (``--strategy hup``)."""
        if self.kind == "hypercorn":
            return bool(self.workers)  # its master reloads; without one there is nothing to
        return self.kind in ("gunicorn", "granian", "uwsgi")

    @property
    def holds_sigterm(self) -> bool:
        """Whether zerodown, inside the app, can hold this server's SIGTERM back for the
        lame-duck window; where not, the rehearsal calls the preStop endpoint first. An
        unknown command is taken at its word."""
        if self.kind == "hypercorn":
            return not self.workers  # with workers, its master stops them at once
        if self.kind == "granian":
            return self.interface == "asgi"  # the ASGI workers' loop owns the signals
        return self.kind != "uwsgi"

    def reload(self, process: ManagedProcess, control: Path) -> str:
        """Start the server's own reload; what was done, for the timeline."""
        if self.kind == "uwsgi":
            # The chain reload: one worker at a time, the next once the new one is up.
            control.write_text("c")
            return f"chain reload (c to {control.name})"
        process.send_signal(signal.SIGHUP)
        return "SIGHUP"

    def describe(self, worker_class: str | None = None) -> str:
        """What runs an instance; ``worker_class`` is the one gunicorn said it runs."""
        if self.kind == "command":
            return f"`{self.command}`"
        if self.kind == "uvicorn":
            return "uvicorn --factory" if self.factory else "uvicorn"
        if self.kind == "hypercorn":
            return f"hypercorn --workers {self.workers or 0}"
        if self.kind == "granian":
            return f"granian --interface {self.interface} --workers {self.workers or 1}"
        if self.kind == "uwsgi":
            processes = self.workers or DEFAULT_WORKERS
            return f"uWSGI ({processes} processes x {self.threads or DEFAULT_THREADS} threads)"
        ran = worker_class or self.worker_class or DEFAULT_WORKER_CLASS
        config = f", {self.gunicorn_config}" if self.gunicorn_config else ""
        workers = self.workers or (None if self.gunicorn_config else DEFAULT_WORKERS)
        threads = self.threads or (None if self.gunicorn_config else DEFAULT_THREADS)
        counts = f"{workers} workers" if workers else "workers as configured"
        if ran.endswith("gthread") and threads:
            counts += f" x {threads} threads"
        return f"gunicorn -k {ran} ({counts}{config})"


@dataclass(slots=True)
class Instance:
    """One running instance: ``name`` is its release and number, e.g. ``v2-0``."""

    name: str
    release: str
    port: int
    process: ManagedProcess
    signalled_at: float | None = None
    #: When it was deleted (its preStop hook began); the grace period counts from here.
    deleted_at: float | None = None

    def worker_class(self) -> str | None:
        """The worker class gunicorn said it runs, from the instance's log; None if none."""
        found = _WORKER_LINE.search(self.process.log_text())
        if found is None:
            return None
        return found.group(1)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def terminate(self) -> None:
        """SIGTERM, as Kubernetes sends it; :meth:`Fleet.wait_for_exit` awaits the end."""
        if self.signalled_at is None:
            self.signalled_at = time.monotonic()
            self.process.send_signal(signal.SIGTERM)

    def delete(self, pre_stop: Callable[[], None] | None = None) -> None:
        """Delete it as the kubelet does: the preStop hook, then SIGTERM (at once without
        one); the grace period counts from now."""
        if self.deleted_at is not None:
            return
        self.deleted_at = time.monotonic()
        if pre_stop is None:
            self.terminate()
            return

        def hook_then_signal() -> None:
            pre_stop()
            self.terminate()

        threading.Thread(target=hook_then_signal, name=f"prestop-{self.name}", daemon=True).start()

    def workers(self) -> set[int]:
        """The PIDs of its worker processes (its children but multiprocessing's resource
        tracker, which hypercorn's master keeps across reloads); Linux only."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            pids = {int(pid) for pid in children.read_text().split()}
        except (OSError, ValueError):
            return set()
        return {pid for pid in pids if _RESOURCE_TRACKER not in _command_line(pid)}


_RESOURCE_TRACKER = b"multiprocessing.resource_tracker"


def _command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # it exited meanwhile
        return b""


class NotReady(RuntimeError):
    """An instance exited or never turned ready; the message says what it printed."""


class Fleet:
    """Starts instances on free ports and keeps each one's log in ``workdir``.

    ``health_token`` is the bearer token the instances accept (``ZERODOWN_HEALTH_TOKEN``):
    with it, an instance that does not turn ready is asked which checks fail and why.
    """

    def __init__(
        self,
        spec: ServerSpec,
        workdir: Path,
        *,
        ready_path: str,
        ready_status: Callable[[int | None], bool],
        drain_timeout: float,
        ready_timeout: float,
        env: Mapping[str, str],
        health_token: str | None = None,
        name_responses: bool = False,
    ) -> None:
        self.spec = spec
        #: Each instance names itself in its responses (no proxy in front does it).
        self._name_responses = name_responses
        self.workdir = workdir
        self.ready_path = ready_path
        self._ready_status = ready_status
        self._drain_timeout = drain_timeout
        self._ready_timeout = ready_timeout
        self._env = env
        self._health_token = health_token
        self.instances: list[Instance] = []

    def start(
        self, app: str, release: str, number: int, env: Mapping[str, str], app_dir: Path
    ) -> Instance:
        """Start ``app`` from ``app_dir``; :meth:`wait_until_ready` awaits its readiness."""
        port = free_port()
        name = f"{release}-{number}"
        process = start_process(
            name,
            self.spec.argv(app, port, self._drain_timeout, self.control(name)),
            log_path=self.workdir / f"{name}.log",
            # PGAPPNAME: libpq-based drivers name the instance's sessions in PostgreSQL.
            env=child_environment(
                app_dir,
                {
                    **self._env,
                    **env,
                    "ZERODOWN_RELEASE": release,
                    "PGAPPNAME": name,
                    **({INSTANCE_VARIABLE: name} if self._name_responses else {}),
                },
            ),
            cwd=app_dir,
        )
        instance = Instance(name, release, port, process)
        self.instances.append(instance)
        return instance

    def control(self, name: str) -> Path:
        """The path an instance's server may use to be controlled (uWSGI's master FIFO)."""
        return self.workdir / f"{name}.control"

    def reload(self, instance: Instance) -> str:
        """Start ``instance``'s own reload of its workers; what was done."""
        return self.spec.reload(instance.process, self.control(instance.name))

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
            wait_for_http(url, timeout=self._ready_timeout, ready=ready, process=instance.process)
        except NotReady:
            raise
        except RuntimeError as error:  # it exited: what it printed says why
            raise NotReady(f"{instance.name}: {error}") from None
        except TimeoutError:
            raise NotReady(self._not_ready(instance)) from None

    def _not_ready(self, instance: Instance) -> str:
        """Why ``instance`` is not ready: its failing checks, else the end of its log."""
        text = f"{instance.name} did not turn ready within {self._ready_timeout:g}s"
        headers = {"Authorization": f"Bearer {self._health_token}"} if self._health_token else {}
        status, body = http_get(
            f"{instance.url}/readyz?verbose", timeout=5.0, headers=headers, limit=65536
        )
        reasons = failing_checks(body)
        if reasons:
            return f"{text}, its failing checks:\n" + "\n".join(f"  {r}" for r in reasons)
        log = [line for line in instance.process.log_text().splitlines() if "/readyz" not in line]
        tail = "\n".join(log[-30:])
        return f"{text} (/readyz answered {status or 'nothing'}); its log ends with:\n{tail}"

    def wait_for_exit(self, instance: Instance, grace: float) -> bool:
        """Wait out the grace period from its deletion; SIGKILL it after. True if it exited."""
        instance.delete()
        assert instance.deleted_at is not None
        left = instance.deleted_at + grace - time.monotonic()
        if instance.process.wait(max(0.0, left)) is not None:
            return True
        instance.process.stop(signal.SIGKILL, timeout=5)
        return False

    def stop_all(self) -> None:
        stop_all((instance.process for instance in self.instances), timeout=5)


def failing_checks(body: str) -> list[str]:
    """``name: status: output`` of each check that does not pass, from a probe's JSON body."""
    try:
        checks = json.loads(body).get("checks", {})
        return [
            f"{name}: {result.get('status')}: {result.get('output', '')}".rstrip(": ")
            for name, results in checks.items()
            for result in results
            if result.get("status") != "pass"
        ]
    except (ValueError, AttributeError, TypeError):
        return []
