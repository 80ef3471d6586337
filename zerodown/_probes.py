"""The probe endpoints' answers, shared by the ASGI and WSGI middleware."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from http import HTTPStatus

from ._lifecycle import Lifecycle, Phase


class Probe(enum.Enum):
    LIVENESS = "livez"
    READINESS = "readyz"
    STARTUP = "startupz"


@dataclass(frozen=True, slots=True)
class ProbePaths:
    """Where the probes answer. A path set to None is not served (it reaches the app)."""

    liveness: str | None = "/livez"
    readiness: str | None = "/readyz"
    startup: str | None = "/startupz"

    def __post_init__(self) -> None:
        served = [path for path in (self.liveness, self.readiness, self.startup) if path]
        if len(set(served)) != len(served):
            raise ValueError(f"probe paths must differ from each other, got {self!r}")
        if any(not path.startswith("/") for path in served):
            raise ValueError(f"probe paths must start with '/', got {self!r}")

    def table(self) -> dict[str, Probe]:
        pairs = (
            (self.liveness, Probe.LIVENESS),
            (self.readiness, Probe.READINESS),
            (self.startup, Probe.STARTUP),
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


def answer_probe(probe: Probe, method: str, lifecycle: Lifecycle) -> ProbeAnswer:
    """The response to one probe request; the body is empty for HEAD."""
    if method not in _ALLOWED_METHODS:
        body: dict[str, object] = {
            "status": "fail",
            "output": f"{method} is not allowed here; probes answer GET and HEAD",
        }
        return _answer(HTTPStatus.METHOD_NOT_ALLOWED, body, lifecycle, method, allow=True)
    phase = lifecycle.phase
    passing = _passes(probe, phase)
    body = {"status": "pass" if passing else "fail", "phase": phase.value}
    if phase is Phase.DRAINING:
        body["inFlight"] = lifecycle.in_flight
    status = HTTPStatus.OK if passing else HTTPStatus.SERVICE_UNAVAILABLE
    return _answer(status, body, lifecycle, method)


def _passes(probe: Probe, phase: Phase) -> bool:
    if probe is Probe.LIVENESS:
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
    if lifecycle.is_draining:
        headers.append((b"connection", b"close"))
    return ProbeAnswer(int(status), headers, b"" if method == "HEAD" else encoded)
