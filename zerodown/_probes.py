"""The probe endpoints' answers, shared by the ASGI and WSGI middleware."""

from __future__ import annotations

import enum
import hmac
import ipaddress
import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from urllib.parse import parse_qsl

from ._errors import ConfigurationError
from ._health.model import LIVENESS, READINESS, STARTUP, Check, CheckResult, Report
from ._health.registry import Health
from ._lifecycle import Lifecycle
from ._phase import Phase
from ._redact import redact
from ._servers.siblings import siblings


class Endpoint(enum.Enum):
    """The endpoints the middleware answers itself (their paths are :class:`ProbePaths`')."""

    LIVEZ = "livez"
    READYZ = "readyz"
    STARTUPZ = "startupz"
    PRESTOP = "prestop"


#: The check group each probe endpoint runs.
_GROUPS = {Endpoint.LIVEZ: LIVENESS, Endpoint.READYZ: READINESS, Endpoint.STARTUPZ: STARTUP}
#: Where ProbeAccess's fields come from when not given.
_ACCESS_VARIABLES = {
    "version": "ZERODOWN_VERSION",
    "release_id": "ZERODOWN_RELEASE",
    "service_id": "ZERODOWN_SERVICE_ID",
    "token": "ZERODOWN_HEALTH_TOKEN",
}


def _from_environment(field_name: str) -> str | None:
    return os.environ.get(_ACCESS_VARIABLES[field_name]) or None


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
            raise ConfigurationError(f"probe paths must differ from each other, got {self!r}")
        if any(not path.startswith("/") for path in served):
            raise ConfigurationError(f"probe paths must start with '/', got {self!r}")

    def table(self) -> dict[str, Endpoint]:
        pairs = (
            (self.liveness, Endpoint.LIVEZ),
            (self.readiness, Endpoint.READYZ),
            (self.startup, Endpoint.STARTUPZ),
            (self.prestop, Endpoint.PRESTOP),
        )
        return {path: probe for path, probe in pairs if path is not None}


@dataclass(frozen=True, slots=True)
class ProbeAccess:
    """What the probes say this instance is, and who may see the checks' details.

    ``version``, ``release_id`` and ``service_id`` appear in every probe body. Details of
    the checks (outputs, observed values) go only to a request with
    ``Authorization: Bearer <token>`` (the scheme in any case, as RFC 9110 has it), or to
    loopback clients when ``details_for_loopback`` is set. A field not given comes from
    ``ZERODOWN_VERSION``, ``ZERODOWN_RELEASE``, ``ZERODOWN_SERVICE_ID`` and
    ``ZERODOWN_HEALTH_TOKEN``.
    """

    version: str | None = field(default_factory=lambda: _from_environment("version"))
    release_id: str | None = field(default_factory=lambda: _from_environment("release_id"))
    service_id: str | None = field(default_factory=lambda: _from_environment("service_id"))
    token: str | None = field(default_factory=lambda: _from_environment("token"), repr=False)
    details_for_loopback: bool = False

    @classmethod
    def load(
        cls,
        *,
        environ: Mapping[str, str] | None = None,
        details_for_loopback: bool = False,
        **given: str,
    ) -> ProbeAccess:
        """The given fields, the others from ``environ`` (default: the process's)."""
        env = os.environ if environ is None else environ
        values = {
            name: given.get(name) or env.get(variable) or None
            for name, variable in _ACCESS_VARIABLES.items()
        }
        return cls(**values, details_for_loopback=details_for_loopback)

    def authorizes(self, authorization: bytes | None, client_host: str | None) -> bool:
        """Whether a request may see the checks' details."""
        if self.token and authorization is not None:
            scheme, _, credentials = authorization.strip().partition(b" ")
            if scheme.lower() == b"bearer" and hmac.compare_digest(
                credentials.strip(), self.token.encode()
            ):
                return True
        return self.details_for_loopback and _is_loopback(client_host)

    def identity(self) -> dict[str, object]:
        """The fields every probe body carries."""
        pairs = (
            ("version", self.version),
            ("releaseId", self.release_id),
            ("serviceId", self.service_id),
        )
        return {key: value for key, value in pairs if value is not None}


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        self.table: dict[str, tuple[Endpoint, str | None]] = {}
        self._add_new()
        health.added.subscribe(self._add_new)

    def _add_new(self) -> None:
        for base, probe in self._paths.table().items():
            self.table.setdefault(base, (probe, None))
            group = _GROUPS.get(probe)
            if group is None:
                continue
            for check in self._health.select(group) or ():
                self.table.setdefault(f"{base}/{check.name}", (probe, check.name))


class Probes:
    """The probe endpoints of one middleware: their routes, who sees their details, and
    their answers. The ASGI and WSGI middleware only do the I/O."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        health: Health,
        paths: ProbePaths | None,
        access: ProbeAccess | None,
    ) -> None:
        self.lifecycle = lifecycle
        self.health = health
        self.access = access or health.probe_access or ProbeAccess()
        paths = paths or ProbePaths()
        #: path -> (the endpoint, the check it names or None), for the hot path's lookup.
        self.routes = ProbeRoutes(paths, health).table
        #: The other workers of this server, when a preStop call may reach another one.
        self.siblings = siblings() if paths.prestop is not None else None

    def checks_for(self, request: ProbeRequest) -> list[Check] | None:
        if (
            self.siblings is not None
            and not self.lifecycle.is_draining
            and self.siblings.announced()
        ):
            self.lifecycle.start_draining("the preStop endpoint was called in another worker")
        return checks_for(request, self.lifecycle, self.health)

    def prestop_wait(self, method: str) -> float:
        """Start draining for a ``preStop`` call, here and in the other workers; the seconds
        it should wait before answering.

        The wait is what is left of ``shutdown_delay`` since draining began, so repeated
        calls end together and the SIGTERM that follows finds the delay already served. A
        method other than GET or HEAD changes nothing (it is answered 405).
        """
        if method not in _ALLOWED_METHODS:
            return 0.0
        self.lifecycle.start_draining("the preStop endpoint was called")
        if self.siblings is not None:
            self.siblings.announce()
        return self.lifecycle.delay_left

    def answer(self, request: ProbeRequest, report: Report | None) -> ProbeAnswer:
        return answer_probe(request, self.lifecycle, self.health, self.access, report)


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

    probe: Endpoint
    method: str
    check_name: str | None = None
    query_string: str = ""
    authorization: bytes | None = None
    client_host: str | None = None


_ALLOWED_METHODS = frozenset({"GET", "HEAD"})


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
    if request.probe is Endpoint.LIVEZ:
        return health.select((LIVENESS,), exclude=exclude)
    phase = lifecycle.phase
    if phase is Phase.STARTING or (request.probe is Endpoint.READYZ and phase is not Phase.READY):
        return []
    groups = set() if health.startup_passed else {STARTUP}
    if request.probe is Endpoint.READYZ:
        groups.add(READINESS)
    return health.select(groups, exclude=exclude)


def answer_probe(
    request: ProbeRequest,
    lifecycle: Lifecycle,
    health: Health,
    access: ProbeAccess,
    report: Report | None,
) -> ProbeAnswer:
    """The response to a probe request, given the report of :func:`checks_for`'s checks.

    Without authorization the body holds only the status, the phase and the version.
    With it, every check's result too and, on ``?verbose``, the in-flight requests of every
    process of the server.
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
        if request.probe in (Endpoint.READYZ, Endpoint.STARTUPZ) and phase is not Phase.STARTING:
            health.note_startup(report)
        passing = _passes(request.probe, phase, health) and report.status != "fail"
    else:
        passing = report.status != "fail"
    body = {"status": report.status if passing else "fail"}
    body.update(access.identity())
    if request.check_name is None:
        body["phase"] = phase.value
    authorized = access.authorizes(request.authorization, request.client_host)
    # Without authorization ?verbose is ignored: the body is the plain probe's.
    asked = bool(_query_values(request.query_string, "verbose") - {"0", "false", "no"})
    verbose = asked and authorized
    loads = lifecycle.process_loads() if verbose or phase is Phase.DRAINING else []
    if request.check_name is None and loads:
        body["inFlight"] = sum(load.in_flight for load in loads)
    if authorized:
        if report.results:
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


def _passes(probe: Endpoint, phase: Phase, health: Health) -> bool:
    if probe is Endpoint.LIVEZ or probe is Endpoint.PRESTOP:
        # A draining process is healthy: failing liveness would get it killed mid-drain.
        return True
    if probe is Endpoint.READYZ:
        return phase is Phase.READY and health.startup_passed
    return phase is not Phase.STARTING and health.startup_passed


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
