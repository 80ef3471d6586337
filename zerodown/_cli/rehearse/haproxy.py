"""HAProxy in front of local instances, as strict as kube-proxy: no retries, no redispatch.

Servers are added and removed at run time through HAProxy's admin socket, as endpoints
come and go in Kubernetes: each instance gets a server of its own, named after it, and
every response carries that name in ``X-Zerodown-Server`` so that each request can be
traced to the instance (and release) that answered it.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..._errors import ConfigurationError
from ..._polling import poll
from ..procs import LOOPBACK, ManagedProcess, find_tool, free_port, start_process

INSTALL_HINT = (
    "haproxy was not found on PATH; install it with `sudo apt-get install haproxy` "
    "(Debian, Ubuntu) or `brew install haproxy` (macOS)"
)
#: The response header naming the server that answered.
SERVER_HEADER = "X-Zerodown-Server"
DEFAULT_BACKEND = "app"


@dataclass(frozen=True, slots=True)
class ProxyCheck:
    """Active health checks, as a load balancer or a readiness probe does them."""

    path: str = "/readyz"
    interval: float = 1.0
    fall: int = 2
    rise: int = 2
    #: An ``http-check expect`` rule: what counts as healthy.
    expect: str = "status 200"

    def __post_init__(self) -> None:
        # Both go into HAProxy's configuration as they are: one line break would add a rule.
        problem = path_problem(self.path)
        if problem is not None:
            raise ConfigurationError(f"the proxy's health-check path {problem}")
        if not self.expect.isprintable() or not self.expect.isascii():
            raise ConfigurationError(f"the proxy's check rule {self.expect!r} is not one line")


def path_problem(path: str) -> str | None:
    """What makes ``path`` unfit to be sent as a request target; None when it is fit.

    A request target is printable ASCII without spaces (RFC 9112), and it goes into
    HAProxy's configuration and k6's script as it is.
    """
    if not path.startswith("/"):
        return f"{path!r} must start with '/'"
    if not path.isascii() or not path.isprintable() or " " in path:
        return f"{path!r} must be printable ASCII without spaces (percent-encode the rest)"
    return None


def find_haproxy() -> str:
    return find_tool("haproxy", INSTALL_HINT)


def render_config(
    *,
    port: int,
    backends: Sequence[str],
    admin_socket: Path,
    route_map: Path,
    check: ProxyCheck,
    retries: int = 0,
    certificate: Path | None = None,
) -> str:
    # One retry on another server, on connection errors only: what an nginx ingress does
    # (proxy_next_upstream error).
    retry_lines = (
        "    retries 0\n    no option redispatch"
        if retries == 0
        else f"    retries {retries}\n    option redispatch 1\n"
        "    retry-on conn-failure empty-response"
    )
    sections = "\n".join(
        f"""\
backend {name}
    balance roundrobin
    option httpchk GET {check.path}
    http-check expect {check.expect}
    http-response set-header {SERVER_HEADER} %s
"""
        for name in backends
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
    bind {LOOPBACK}:{port}{f" ssl crt {certificate}" if certificate else ""}
    http-request set-header X-Forwarded-Proto {"https" if certificate else "http"}
    use_backend %[str(active),map({route_map},{backends[0]})]

{sections}"""


class HAProxy:
    """A running HAProxy with its admin socket."""

    def __init__(
        self,
        process: ManagedProcess,
        port: int,
        admin_socket: Path,
        route_map: Path,
        check: ProxyCheck,
        certificate: Path | None = None,
    ) -> None:
        self.process = process
        self.certificate = certificate
        self.port = port
        self.admin_socket = admin_socket
        self._route_map = route_map
        self.check = check

    @property
    def trusted_certificate(self) -> Path | None:
        """The certificate a client must trust to reach the proxy over TLS; None without."""
        return None if self.certificate is None else self.certificate.with_name("cert.pem")

    @property
    def url(self) -> str:
        scheme = "https" if self.certificate else "http"
        return f"{scheme}://{LOOPBACK}:{self.port}"

    def command(self, line: str) -> str:
        """Send one command to the admin socket and return its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as admin:
            admin.settimeout(5.0)
            admin.connect(str(self.admin_socket))
            admin.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := admin.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace").strip()

    def _expect(self, line: str, success: str = "") -> None:
        """Send ``line``; raise unless the answer starts with ``success`` (or is empty)."""
        answer = self.command(line)
        accepted = answer.startswith(success) if success else not answer
        if not accepted:
            raise RuntimeError(f"HAProxy refused `{line}`: {answer}")

    def add_server(self, backend: str, name: str, port: int, weight: int = 100) -> None:
        """Put an instance into ``backend``, with active checks; it takes traffic at once.

        Add an instance once it is ready, as Kubernetes adds a pod's endpoint only once its
        readiness probe passed.
        """
        check = self.check
        self._expect(
            f"add server {backend}/{name} {LOOPBACK}:{port} check "
            f"inter {int(check.interval * 1000)} fall {check.fall} rise {check.rise} "
            f"weight {weight}",
            "New server registered",
        )
        self._expect(f"enable health {backend}/{name}")
        self._expect(f"enable server {backend}/{name}")

    def remove_server(self, backend: str, name: str, timeout: float = 5.0) -> None:
        """Take a server out; it is deleted once HAProxy holds no connection to it."""
        self._expect(f"disable server {backend}/{name}")
        # Disabled, it takes no traffic: a server HAProxy will not delete yet is harmless.
        poll(
            lambda: self.command(f"del server {backend}/{name}") == "Server deleted.",
            timeout=timeout,
        )

    def deleting(self, name: str) -> None:
        """HAProxy learns that an instance leaves from its own checks, as a load balancer
        that probes pods does."""

    def forget(self, backend: str, name: str) -> None:
        """Take an exited instance out once HAProxy's own checks saw it go.

        Until then HAProxy routes to it as a real one would, which is what exposes a server
        that closes its socket before the proxy noticed it leaving.
        """
        noticed_within = self.check.interval * (self.check.fall + 1) + 1.0
        with contextlib.suppress(TimeoutError):
            self.wait_for_states({name: "DOWN"}, timeout=noticed_within)
        self.remove_server(backend, name)

    def set_weight(self, backend: str, name: str, weight: int) -> None:
        self._expect(f"set weight {backend}/{name} {weight}")

    def route_to(self, backend: str) -> None:
        """Send every new request to ``backend`` (a blue-green switch)."""
        self._expect(f"set map {self._route_map} active {backend}")

    def server_stats(self) -> dict[str, dict[str, str]]:
        """Each server's row of ``show stat`` (``status``, ``scur``, ...), by server name."""
        lines = self.command("show stat").splitlines()
        if not lines:
            return {}
        columns = lines[0].lstrip("# ").split(",")
        rows = {}
        for line in lines[1:]:
            row = dict(zip(columns, line.split(","), strict=False))
            if row.get("svname") not in (None, "FRONTEND", "BACKEND"):
                rows[row["svname"]] = row
        return rows

    def server_states(self) -> dict[str, str]:
        """Each server's status as HAProxy sees it (``UP``, ``DOWN``, ``MAINT``, ...)."""
        return {
            name: row.get("status", "").split(" ")[0] for name, row in self.server_stats().items()
        }

    def stop(self) -> None:
        """Stop HAProxy and remove its admin socket's directory."""
        self.process.stop(signal.SIGINT)
        shutil.rmtree(self.admin_socket.parent, ignore_errors=True)

    def wait_for_states(self, expected: dict[str, str], timeout: float = 15.0) -> None:
        states: dict[str, str] = {}

        def reached() -> bool:
            nonlocal states
            states = self.server_states()
            return all(states.get(name) == state for name, state in expected.items())

        if poll(reached, timeout=timeout):
            return
        raise TimeoutError(f"HAProxy servers did not reach {expected} in {timeout}s: {states}")


def start_haproxy(
    *,
    workdir: Path,
    backends: Sequence[str] = (DEFAULT_BACKEND,),
    check: ProxyCheck | None = None,
    retries: int = 0,
    port: int | None = None,
    tls: bool = False,
) -> HAProxy:
    """Start HAProxy with empty ``backends``, routing to the first; add servers after.

    With ``tls``, it serves HTTPS with a self-signed certificate for 127.0.0.1 made in
    ``workdir`` (``HAProxy.certificate``, the one file a client must trust): session
    cookies are ``Secure``, and clients send them over HTTPS only.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    # A directory of its own under the system's temp dir: a socket path in a deep workdir
    # would exceed the 97 bytes HAProxy allows.
    admin_socket = Path(tempfile.mkdtemp(prefix="zerodown-haproxy-")) / "admin.sock"
    route_map = workdir / "route.map"
    route_map.write_text(f"active {backends[0]}\n")
    check = check or ProxyCheck()
    certificate = self_signed_certificate(workdir / "tls") if tls else None
    config = workdir / "haproxy.cfg"
    config.write_text(
        render_config(
            port=port,
            backends=backends,
            admin_socket=admin_socket,
            route_map=route_map,
            check=check,
            retries=retries,
            certificate=certificate,
        )
    )
    process = start_process(
        "haproxy", [find_haproxy(), "-db", "-f", str(config)], log_path=workdir / "haproxy.log"
    )

    def started() -> bool:
        if process.returncode is not None:
            raise RuntimeError(f"haproxy exited:\n{process.log_text()[-4000:]}")
        return admin_socket.exists()

    if not poll(started, timeout=10.0, interval=0.05):
        raise RuntimeError(f"haproxy did not start:\n{process.log_text()[-4000:]}")
    return HAProxy(process, port, admin_socket, route_map, check, certificate)


def self_signed_certificate(directory: Path) -> Path:
    """A certificate for 127.0.0.1 valid for a day, its key in the same PEM file."""
    directory.mkdir(parents=True, exist_ok=True)
    pem, key = directory / "proxy.pem", directory / "proxy.key"
    openssl = find_tool(
        "openssl", "openssl was not found; install it with `apt-get install openssl`"
    )
    argv = [
        openssl,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=zerodown rehearsal",
        "-addext",
        f"subjectAltName=IP:{LOOPBACK}",
        "-keyout",
        str(key),
        "-out",
        str(directory / "cert.pem"),
    ]
    made = subprocess.run(argv, capture_output=True, text=True, check=False)
    if made.returncode != 0:
        raise RuntimeError(f"openssl could not make the proxy's certificate: {made.stderr}")
    pem.write_text((directory / "cert.pem").read_text() + key.read_text())
    return pem
