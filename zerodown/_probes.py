"""The probe endpoints' answers, shared by the ASGI and WSGI middleware."""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from urllib.parse import parse_qsl

from ._health.model import LIVENESS, READINESS, STARTUP, Check, CheckResult, Report
from ._health.registry import Health
from ._lifecycle import Lifecycle, Phase
from ._redact import redact


class Probe(enum.Enum):
    LIVENESS = "livez"
    READINESS = "readyz"
    STARTUP = "startupz"
    PRESTOP = "prestop"


#: The check group each probe runs.
_GROUPS = {Probe.LIVENESS: LIVENESS, Probe.READINESS: READINESS, Probe.STARTUP: STARTUP}


@dataclass(frozen=True, slots=True)
class ProbePaths:
    """Where the probes answer. A path set to None is not served (it reaches the app).

    ``prestop`` is off unless given or set in ``ZERODOWN_PRESTOP_PATH``: it is for a
    Kubernetes ``preStop.httpGet`` on servers zerodown cannot hook, and anyone who can reach
    it can take the instance out of service, so serve it only on a port the outside cannot
    reach (never route it through an ingress).
    """

    liveness: str | None = "/livez"
    readiness: str | None = "/readyz"
    startup: str | None = "/startupz"
    prestop: str | None = field(
        default_factory=lambda: os.environ.get("ZERODOWN_PRESTOP_PATH") or None
    )

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


class ProbeRoutes:
    """Every path a probe answers, each exactly: the probes' own paths and ``/readyz/NAME``
    for each check the probe runs, kept up to date as checks are registered.

    Exact paths make the middleware's test for "not a probe" one dictionary lookup. A path
    under a probe that names no check of it (``/readyz/typo``) reaches the app.
    """

    def __init__(self, paths: ProbePaths, health: Health) -> None:
        self._paths = paths
        self._health = health
        #: path -> (the probe, the check it names or None); only ever added to, in place,
        #: so a reader holding it (the middleware's hot path) never sees a probe vanish.
        self.table: dict[str, tuple[Probe, str | None]] = {}
        self._add_new()
        health._when_added(self._add_new)

    def _add_new(self) -> None:
        for base, probe in self._paths.table().items():
            self.table.setdefault(base, (probe, None))
            group = _GROUPS.get(probe)
            if group is None:
                continue
            for check in self._health.select(group) or ():
                self.table.setdefault(f"{base}/{check.name}", (probe, check.name))


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTPStatus(self.status).phrase}"


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """One probe request, as the ASGI and WSGI middleware both see it."""

    probe: Probe
    method: str
    check_name: str | None = None
    query_string: str = ""
    authorization: bytes | None = None
    client_host: str | None = None


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


def checks_for(request: ProbeRequest, lifecycle: Lifecycle, health: Health) -> list[Check] | None:
    """The checks this probe request runs; None when it names a check the probe lacks.

    Readiness asks no dependency while the process starts or drains: the phase decides.
    Until the startup checks passed once, readiness and startup run them.
    """
    group = _GROUPS.get(request.probe)
    if request.method not in _ALLOWED_METHODS or group is None:
        return []
    if request.check_name is not None:
        return health.select((group,), only=request.check_name)
    exclude = _query_values(request.query_string, "exclude")
    if request.probe is Probe.LIVENESS:
        return health.select((LIVENESS,), exclude=exclude)
    phase = lifecycle.phase
    if phase is Phase.STARTING or (request.probe is Probe.READINESS and phase is not Phase.READY):
        return []
    groups = set() if health.startup_passed else {STARTUP}
    if request.probe is Probe.READINESS:
        groups.add(READINESS)
    return health.select(groups, exclude=exclude)


def answer_probe(
    request: ProbeRequest, lifecycle: Lifecycle, health: Health, report: Report | None
) -> ProbeAnswer:
    """The response to a probe request, given the report of :func:`checks_for`'s checks.

    Without authorization the body holds only the status, the phase and the version.
    With it, the checks (when one does not pass, or on ``?verbose``) and, on ``?verbose``,
    the in-flight requests of every process of the server.
    """
    method = request.method
    if method not in _ALLOWED_METHODS:
        body: dict[str, object] = {
            "status": "fail",
            "output": f"{method} is not allowed here; probes answer GET and HEAD",
        }
        return _answer(HTTPStatus.METHOD_NOT_ALLOWED, body, lifecycle, method, allow=True)
    if report is None:
        body = {"status": "fail", "output": "this probe has no check of that name"}
        return _answer(HTTPStatus.NOT_FOUND, body, lifecycle, method)
    phase = lifecycle.phase
    if request.check_name is None:
        if request.probe in (Probe.READINESS, Probe.STARTUP) and phase is not Phase.STARTING:
            health.note_startup(report)
        passing = _passes(request.probe, phase, health) and report.status != "fail"
    else:
        passing = report.status != "fail"
    body = {"status": report.status if passing else "fail"}
    body.update(_identity(health))
    if request.check_name is None:
        body["phase"] = phase.value
    verbose = bool(_query_values(request.query_string, "verbose") - {"0", "false", "no"})
    loads = lifecycle.process_loads() if verbose or phase is Phase.DRAINING else []
    if request.check_name is None and loads:
        body["inFlight"] = sum(load.in_flight for load in loads)
    if health.authorizes(request.authorization, request.client_host):
        if report.results and (verbose or report.status != "pass"):
            body["checks"] = {check.name: [_check_body(check, r)] for check, r in report.results}
        if verbose and request.check_name is None:
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


def _query_values(query_string: str, name: str) -> set[str]:
    """Every value of ``name`` in the query (a bare ``?verbose`` gives the empty string)."""
    if not query_string:
        return set()
    return {
        value.lower() if name == "verbose" else value
        for key, value in parse_qsl(query_string, keep_blank_values=True)
        if key == name
    }


def _passes(probe: Probe, phase: Phase, health: Health) -> bool:
    if probe is Probe.LIVENESS or probe is Probe.PRESTOP:
        # A draining process is healthy: failing liveness would get it killed mid-drain.
        return True
    if probe is Probe.READINESS:
        return phase is Phase.READY and health.startup_passed
    return phase is not Phase.STARTING and health.startup_passed


def _identity(health: Health) -> dict[str, object]:
    pairs = (
        ("version", health.version),
        ("releaseId", health.release_id),
        ("serviceId", health.service_id),
    )
    return {key: value for key, value in pairs if value is not None}


def _check_body(check: Check, result: CheckResult) -> dict[str, object]:
    """One check in the IETF health-check format, secrets redacted."""
    item: dict[str, object] = {
        "componentType": check.component_type,
        "status": check.shown_status(result),
        "time": datetime.fromtimestamp(result.finished_at, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
    }
    if result.observed_value is not None:
        item["observedValue"] = result.observed_value
    if result.observed_unit is not None:
        item["observedUnit"] = result.observed_unit
    if result.output:
        item["output"] = result.output
    item.update(result.details)
    redacted = _redacted(item, check.secrets)
    assert isinstance(redacted, dict)
    return redacted


def _redacted(value: object, secrets: Collection[str]) -> object:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {str(key): _redacted(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item, secrets) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value), secrets)


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
