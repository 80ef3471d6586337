"""The probe endpoints' answers, shared by the ASGI and WSGI middleware."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl

from ._lifecycle import Lifecycle, Phase


class Probe(enum.Enum):
    LIVENESS = "livez"
    READINESS = "readyz"
    STARTUP = "startupz"
    PRESTOP = "prestop"


@dataclass(frozen=True, slots=True)
class ProbePaths:
    """Where the probes answer. A path set to None is not served (it reaches the app).

    ``prestop`` is off by default: it is for a Kubernetes ``preStop.httpGet`` on servers
    zerodown cannot hook, and anyone who can reach it can take the instance out of service,
    so serve it only on a port the outside cannot reach (never route it through an ingress).
    """

    liveness: str | None = "/livez"
    readiness: str | None = "/readyz"
    startup: str | None = "/startupz"
    prestop: str | None = None

    def __post_init__(self) -> None:
        paths = (self.liveness, self.readiness, self.startup, self.prestop)
        served = [path for path in paths if path]
        if len(set(served)) != len(served):
            raise ValueError(f"probe paths must differ from each other, got {self!r}")
        if any(not path.startswith("/") for path in served):
            raise ValueError(f"probe paths must start with '/', got {self!r}")

    def table(self) -> dict[str, Probe]:
        pairs = (
            (self.liveness, Probe.LIVENESS),
            (self.readiness, Probe.READINESS),
            (self.startup, Probe.STARTUP),
            (self.prestop, Probe.PRESTOP),
        )
        return {path: probe for path, probe in pairs if path is not None}


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTPStatus(self.status).phrase}"


_ALLOWED_METHODS = frozenset({"GET", "HEAD"})


def prestop_wait(method: str, lifecycle: Lifecycle) -> float:
    """Start draining for a ``preStop`` call; the seconds it should wait before answering.

    The wait is what is left of ``shutdown_delay`` since draining began, so repeated calls
    end together and the SIGTERM that follows finds the delay already served. A method
    other than GET or HEAD changes nothing (it is answered 405).
    """
    if method not in _ALLOWED_METHODS:
        return 0.0
    lifecycle.start_draining("the preStop endpoint was called")
    return lifecycle.delay_left


def answer_probe(
    probe: Probe, method: str, lifecycle: Lifecycle, query_string: str = ""
) -> ProbeAnswer:
    """The response to one probe request; the body is empty for HEAD.

    ``?verbose`` adds the in-flight requests of every process of the server. Other query
    parameters are ignored.
    """
    if method not in _ALLOWED_METHODS:
        body: dict[str, object] = {
            "status": "fail",
            "output": f"{method} is not allowed here; probes answer GET and HEAD",
        }
        return _answer(HTTPStatus.METHOD_NOT_ALLOWED, body, lifecycle, method, allow=True)
    phase = lifecycle.phase
    passing = _passes(probe, phase)
    body = {"status": "pass" if passing else "fail", "phase": phase.value}
    verbose = _asks_verbose(query_string)
    if verbose or phase is Phase.DRAINING:
        loads = lifecycle.process_loads()
        body["inFlight"] = sum(load.in_flight for load in loads)
        if verbose:
            body["processes"] = [
                {
                    "pid": load.pid,
                    "inFlight": load.in_flight,
                    "oldestRequestSeconds": None
                    if load.oldest_request_age is None
                    else round(load.oldest_request_age, 3),
                }
                for load in loads
            ]
    status = HTTPStatus.OK if passing else HTTPStatus.SERVICE_UNAVAILABLE
    return _answer(status, body, lifecycle, method)


def _asks_verbose(query_string: str) -> bool:
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        if name == "verbose":
            return value.lower() not in ("0", "false", "no")
    return False


def _passes(probe: Probe, phase: Phase) -> bool:
    if probe is Probe.LIVENESS or probe is Probe.PRESTOP:
        # A draining process is healthy: failing liveness would get it killed mid-drain.
        return True
    if probe is Probe.READINESS:
        return phase is Phase.READY
    return phase is not Phase.STARTING


def _answer(
    status: HTTPStatus,
    body: dict[str, object],
    lifecycle: Lifecycle,
    method: str,
    *,
    allow: bool = False,
) -> ProbeAnswer:
    encoded = json.dumps(body, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/health+json"),
        (b"content-length", str(len(encoded)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if allow:
        headers.append((b"allow", b"GET, HEAD"))
    if lifecycle.is_leaving:
        headers.append((b"connection", b"close"))
    return ProbeAnswer(int(status), headers, b"" if method == "HEAD" else encoded)
