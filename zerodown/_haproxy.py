"""HAProxy in front of local instances, as strict as kube-proxy: no retries, no redispatch."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._procs import LOOPBACK, ManagedProcess, free_port, start_process

INSTALL_HINT = (
    "haproxy was not found on PATH; install it with `sudo apt-get install haproxy` "
    "(Debian, Ubuntu) or `brew install haproxy` (macOS)"
)


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    port: int
    weight: int = 100


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """Active health checks, as a load balancer or a readiness probe does them."""

    path: str = "/readyz"
    interval: float = 1.0
    fall: int = 2
    rise: int = 2


def find_haproxy() -> str:
    found = shutil.which("haproxy") or next(
        (path for path in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(path).exists()),
        None,
    )
    if found is None:
        raise FileNotFoundError(INSTALL_HINT)
    return found


def render_config(
    *,
    port: int,
    backends: Sequence[Backend],
    admin_socket: Path,
    check: HealthCheck,
    retries: int = 0,
) -> str:
    servers = "\n".join(
        f"    server {backend.name} {LOOPBACK}:{backend.port} check weight {backend.weight}"
        for backend in backends
    )
    retry_lines = (
        "    retries 0\n    no option redispatch"
        if retries == 0
        else f"    retries {retries}\n    retry-on conn-failure empty-response"
    )
    return f"""\
global
    nbthread 1
    maxconn 4096
    stats socket {admin_socket} mode 600 level admin

defaults
    mode http
    option http-keep-alive
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
{retry_lines}

frontend zerodown_in
    bind {LOOPBACK}:{port}
    default_backend app

backend app
    balance roundrobin
    option httpchk GET {check.path}
    http-check expect status 200
    default-server inter {int(check.interval * 1000)}ms fall {check.fall} rise {check.rise}
{servers}
"""


class HAProxy:
    """A running HAProxy with its admin socket."""

    def __init__(self, process: ManagedProcess, port: int, admin_socket: Path) -> None:
        self.process = process
        self.port = port
        self.admin_socket = admin_socket

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self, line: str) -> str:
        """Send one command to the admin socket and return its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as admin:
            admin.settimeout(5.0)
            admin.connect(str(self.admin_socket))
            admin.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := admin.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def server_states(self) -> dict[str, str]:
        """Each server's status as HAProxy sees it (``UP``, ``DOWN``, ``MAINT``, ...)."""
        lines = self.command("show stat").splitlines()
        if not lines:
            return {}
        columns = lines[0].lstrip("# ").split(",")
        proxy, server, status = (columns.index(key) for key in ("pxname", "svname", "status"))
        states = {}
        for line in lines[1:]:
            fields = line.split(",")
            is_server = len(fields) > status and fields[server] not in ("FRONTEND", "BACKEND")
            if is_server and fields[proxy] == "app":
                states[fields[server]] = fields[status].split(" ")[0]
        return states

    def wait_for_states(self, expected: dict[str, str], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = self.server_states()
            if all(states.get(name) == state for name, state in expected.items()):
                return
            time.sleep(0.1)
        raise TimeoutError(f"HAProxy servers did not reach {expected} in {timeout}s: {states}")


def start_haproxy(
    backends: Sequence[Backend],
    *,
    workdir: Path,
    check: HealthCheck | None = None,
    retries: int = 0,
    port: int | None = None,
) -> HAProxy:
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    admin_socket = workdir / "haproxy-admin.sock"
    config = workdir / "haproxy.cfg"
    config.write_text(
        render_config(
            port=port,
            backends=backends,
            admin_socket=admin_socket,
            check=check or HealthCheck(),
            retries=retries,
        )
    )
    process = start_process(
        "haproxy", [find_haproxy(), "-db", "-f", str(config)], log_path=workdir / "haproxy.log"
    )
    deadline = time.monotonic() + 10.0
    while not admin_socket.exists():
        if process.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"haproxy did not start:\n{process.log_text()[-4000:]}")
        time.sleep(0.05)
    return HAProxy(process, port, admin_socket)
