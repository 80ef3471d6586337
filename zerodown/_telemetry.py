"""OpenTelemetry metrics and spans, through ``opentelemetry-api`` when it is installed.

Without ``opentelemetry-api`` every call here returns at once; with it and no SDK
configured, the API's no-op implementations take them. Nothing here runs per request:
in-flight counts, phases and record reads are observed when a metric reader collects, and
spans cover only the shutdown sequence and health-check runs. The API is imported when the
first lifecycle or registry is created, not when zerodown is imported.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ._phase import Phase
from ._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation

    from ._lifecycle import Lifecycle
    from ._records.codec import Registry

SCOPE = "zerodown"
DRAIN_DURATION = "zerodown.drain.duration"
CHECK_DURATION = "zerodown.health.check.duration"
STORE_ERRORS = "zerodown.session.store.errors"
UNREADABLE_SESSIONS = "zerodown.session.unreadable"


class ShutdownSpan:
    """The ``zerodown.shutdown`` span of one process: from SIGTERM to stopped."""

    def __init__(self, span: Any) -> None:
        self._span = span

    def event(self, name: str, attributes: Mapping[str, str | int | float]) -> None:
        if self._span is not None:
            self._span.add_event(name, attributes)

    def end(self, *, failed_callbacks: int) -> None:
        if self._span is None:
            return
        from opentelemetry.trace import StatusCode

        self._span.set_attribute("zerodown.shutdown.failed_callbacks", failed_callbacks)
        if failed_callbacks:
            self._span.set_status(StatusCode.ERROR, f"{failed_callbacks} callback(s) failed")
        self._span.end()


class Telemetry:
    """zerodown's instruments, created once per process on the global providers."""

    def __init__(self) -> None:
        self._lifecycles: weakref.WeakSet[Lifecycle] = weakref.WeakSet()
        self._registries: weakref.WeakSet[Registry] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._set_up = False
        self.enabled = False

    def _set_up_once(self) -> None:
        with self._lock:
            if self._set_up:
                return
            self._set_up = True
            try:
                from opentelemetry import metrics, trace
            except ImportError:  # the otel extra is not installed
                return
            self._create_instruments(metrics.get_meter(SCOPE, __version__))
            self._tracer = trace.get_tracer(SCOPE, __version__)
            self.enabled = True

    def _create_instruments(self, meter: Any) -> None:
        observed = (
            (
                meter.create_observable_up_down_counter,
                "zerodown.requests.in_flight",
                "{request}",
                "Requests (and websockets) this process is serving",
                self._observe_in_flight,
            ),
            (
                meter.create_observable_gauge,
                "zerodown.lifecycle.phase",
                "1",
                "1 for the phase the process is in (zerodown.phase), 0 for the others "
                "(counts, where one process runs several lifecycles)",
                self._observe_phase,
            ),
            (
                meter.create_observable_counter,
                "zerodown.record.reads",
                "{read}",
                "Records decoded, by type and by the version they were written in",
                self._observe_record_reads,
            ),
        )
        for create, name, unit, description, callback in observed:
            create(name, callbacks=[callback], unit=unit, description=description)
        recorded = (
            (
                meter.create_histogram,
                DRAIN_DURATION,
                "s",
                "From the start of draining (SIGTERM) to the process stopped",
            ),
            (
                meter.create_histogram,
                CHECK_DURATION,
                "s",
                "Health-check runs, by check and status",
            ),
            (
                meter.create_counter,
                STORE_ERRORS,
                "{error}",
                "Session store calls that failed, by error type",
            ),
            (
                meter.create_counter,
                UNREADABLE_SESSIONS,
                "{session}",
                "Sessions holding a value this release cannot read (version skew)",
            ),
        )
        self._recorders = {
            name: create(name, unit=unit, description=description)
            for create, name, unit, description in recorded
        }

    # -- what is observed at collection --------------------------------------------------

    def watch_lifecycle(self, lifecycle: Lifecycle) -> None:
        self._set_up_once()
        self._lifecycles.add(lifecycle)

    def watch_registry(self, registry: Registry) -> None:
        self._set_up_once()
        self._registries.add(registry)

    def _observe_in_flight(self, options: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        yield Observation(sum(lifecycle.in_flight for lifecycle in list(self._lifecycles)))

    def _observe_phase(self, options: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        phases = [str(lifecycle.phase) for lifecycle in list(self._lifecycles)]
        for phase in Phase:
            yield Observation(phases.count(phase), {"zerodown.phase": phase.value})

    def _observe_record_reads(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        counts: dict[tuple[str, int], int] = {}
        for registry in list(self._registries):
            for key, count in registry.reads.items():
                counts[key] = counts.get(key, 0) + count
        return [
            Observation(count, {"zerodown.record.type": name, "zerodown.record.version": version})
            for (name, version), count in counts.items()
        ]

    # -- what is recorded as it happens --------------------------------------------------

    def start_shutdown(self, reason: str, in_flight: int) -> ShutdownSpan:
        if not self.enabled:
            return ShutdownSpan(None)
        span = self._tracer.start_span(
            "zerodown.shutdown", attributes={"zerodown.shutdown.reason": reason}
        )
        span.add_event("draining", {"zerodown.in_flight": in_flight})
        return ShutdownSpan(span)

    def drained(self, seconds: float) -> None:
        if self.enabled:
            self._recorders[DRAIN_DURATION].record(seconds)

    def check_ran(self, name: str, status: str, duration: float, output: str) -> None:
        """A health-check run that just ended, after ``duration`` seconds, with ``status``."""
        if not self.enabled:
            return
        attributes = {"zerodown.check.name": name, "zerodown.check.status": status}
        self._recorders[CHECK_DURATION].record(duration, attributes)
        end = time.time_ns()
        span = self._tracer.start_span(
            "zerodown.health.check",
            start_time=end - int(duration * 1e9),
            attributes=attributes,
        )
        if status == "fail":
            from opentelemetry.trace import StatusCode

            span.set_status(StatusCode.ERROR, output)
        span.end(end_time=end)

    def store_failed(self, error: BaseException) -> None:
        if self.enabled:
            self._recorders[STORE_ERRORS].add(1, {"error.type": type(error).__name__})

    def unreadable_session(self, type_name: str) -> None:
        if self.enabled:
            self._recorders[UNREADABLE_SESSIONS].add(1, {"zerodown.record.type": type_name})


telemetry = Telemetry()
