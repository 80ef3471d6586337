"""Starting, watching and stopping local processes by PID (rehearsals and the test bed)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from .._polling import poll

LOOPBACK = "127.0.0.1"


def child_environment(app_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for an app process: ours (``ZERODOWN_*`` included, as the user set
    it), then ``extra``, with ``app_dir`` first on ``PYTHONPATH`` so that ``module:attr``
    imports from it, and the tools installed beside zerodown (a venv's ``uvicorn``,
    ``alembic``, ``python``) first on ``PATH``, as in an activated venv."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(app_dir), env.get("PYTHONPATH")]))
    beside = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(filter(None, [beside, env.get("PATH")]))
    env.update(extra or {})
    return env


#: Where system packages put daemons, outside a non-root user's PATH.
SYSTEM_DIRS = ("/usr/sbin", "/usr/local/sbin")


def find_tool(name: str, install_hint: str) -> str:
    """A command installed beside this Python (a pip-installed binary), on PATH, or in
    one of ``SYSTEM_DIRS``."""
    beside_python = Path(sys.executable).with_name(name)
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name) or next(
        (str(path) for path in (Path(d) / name for d in SYSTEM_DIRS) if path.exists()), None
    )
    if found is None:
        raise FileNotFoundError(install_hint)
    return found


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


class ManagedProcess:
    """A child process with its output in a log file, stopped by its PID."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def send_signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if it still runs after ``timeout`` seconds."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal it, wait up to ``timeout``, then SIGKILL it; returns the exit status.

        Whatever it left behind in its process group (a gunicorn worker stuck in its own
        quick stop, a master started by USR2) is killed too.
        """
        self.send_signal(signum)
        status = self.wait(timeout)
        if status is None:
            self.send_signal(signal.SIGKILL)
            status = self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        return status

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __repr__(self) -> str:
        return f"<{self.name} pid={self.pid} returncode={self.returncode}>"


def start_process(
    name: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> ManagedProcess:
    """Start ``argv`` with stdout and stderr going to ``log_path`` (as ``user``, if given)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            user=user,
            # Its own process group, so that stop() can find what it leaves behind.
            start_new_session=True,
        )
    return ManagedProcess(name, popen, log_path)


def wait_for_port(process: ManagedProcess, port: int, timeout: float = 15.0) -> None:
    """Wait until ``process`` listens on ``port`` (loopback); fail early when it exits."""

    def listening() -> bool:
        if process.returncode is not None:
            raise RuntimeError(f"{process.name} exited early:\n{process.log_text()[-4000:]}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            return False

    if not poll(listening, timeout=timeout, interval=0.05):
        raise TimeoutError(f"{process.name} did not listen on {port} in {timeout}s")


def http_get(
    url: str, timeout: float = 1.0, headers: Mapping[str, str] | None = None, limit: int = 500
) -> tuple[int | None, str]:
    """The status and the start (``limit`` bytes) of the body of a GET to ``url``;
    (None, why) when nothing answered."""
    request = urllib.request.Request(url, headers={"Connection": "close", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status: int = response.status
            return status, response.read(limit).decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read(limit).decode(errors="replace")
    except (OSError, ValueError) as error:
        return None, str(getattr(error, "reason", error))


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The status of a GET to ``url``, or None when nothing answered."""
    return http_get(url, timeout)[0]


def _is_ok(status: int | None) -> bool:
    return status == 200


def wait_for_http(
    url: str,
    *,
    timeout: float,
    ready: Callable[[int | None], bool] = _is_ok,
    process: ManagedProcess | None = None,
) -> None:
    """Poll ``url`` until ``ready(status)`` (a 200 by default); fail early when ``process``
    exits. ``ready`` may raise to give up at once on an answer that will not change."""
    last: int | None = None

    def answered() -> bool:
        nonlocal last
        last = http_status(url)
        if ready(last):
            return True
        if process is not None and process.returncode is not None:
            raise RuntimeError(
                f"{process.name} exited with status {process.returncode} before {url} answered; "
                f"its log:\n{process.log_text()[-4000:]}"
            )
        return False

    if poll(answered, timeout=timeout, interval=0.05):
        return
    detail = f"; its log:\n{process.log_text()[-4000:]}" if process is not None else ""
    raise TimeoutError(f"{url} did not turn ready within {timeout}s (last: {last}){detail}")


def stop_all(
    processes: Iterable[ManagedProcess | None],
    signum: int = signal.SIGINT,
    timeout: float = 10.0,
) -> None:
    """Stop every process, each by its PID, and what it left in its process group.

    SIGINT by default: the quick stop of every server here, skipping zerodown's lame-duck
    delay.
    """
    for process in processes:
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.stop(signum, timeout=timeout)
