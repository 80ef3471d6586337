"""OpenTelemetry signals, read with the SDK's in-memory reader and exporter, and the logs."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import zerodown
from zerodown._cli.procs import free_port
from zerodown._sessions.policy import SessionConfig
from zerodown.codec import Record, Registry
from zerodown.sessions import RedisStore

READER = InMemoryMetricReader()
EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def sdk() -> None:
    """The SDK, set once per process as an app sets it, after zerodown was imported."""
    metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(tracer_provider)


@pytest.fixture(autouse=True)
def fresh_spans() -> None:
    EXPORTER.clear()


def points(name: str) -> list[Any]:
    """The data points of the metric ``name`` in a collection made now."""
    data = READER.get_metrics_data()
    found = [
        metric.data.data_points
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
    ]
    return list(found[0]) if found else []


def value(name: str, **attributes: object) -> float:
    """The sum (counters, histograms) or value (gauges) of the point with ``attributes``."""
    for point in points(name):
        if dict(point.attributes) == attributes:
            return float(getattr(point, "sum", None) or getattr(point, "value", 0))
    return 0.0


def spans(name: str) -> list[ReadableSpan]:
    return [span for span in EXPORTER.get_finished_spans() if span.name == name]


def test_in_flight_requests_and_the_phase_are_observed_at_collection() -> None:
    before = value("zerodown.requests.in_flight")
    ready_before = value("zerodown.lifecycle.phase", **{"zerodown.phase": "ready"})
    lifecycle = zerodown.Lifecycle()
    lifecycle.mark_ready()
    tokens = [lifecycle.request_started(), lifecycle.request_started()]
    assert value("zerodown.requests.in_flight") == before + 2
    assert value("zerodown.lifecycle.phase", **{"zerodown.phase": "ready"}) == ready_before + 1
    for token in tokens:
        lifecycle.request_finished(token)
    assert value("zerodown.requests.in_flight") == before


def test_the_shutdown_sequence_is_one_span_with_an_event_per_step() -> None:
    lifecycle = zerodown.Lifecycle(shutdown_delay=0, grace_period=30)
    lifecycle.mark_ready()
    drains_before = value("zerodown.drain.duration")

    @lifecycle.on_shutdown
    def close_pool() -> None:
        pass

    @lifecycle.on_shutdown
    def broken() -> None:
        raise RuntimeError("flush failed")

    token = lifecycle.request_started()
    lifecycle.start_draining("SIGTERM received")
    lifecycle.server.listener_closed()
    lifecycle.request_finished(token)
    asyncio.run(lifecycle.shutdown())

    (span,) = spans("zerodown.shutdown")
    assert span.attributes is not None
    assert span.attributes["zerodown.shutdown.reason"] == "SIGTERM received"
    assert span.attributes["zerodown.shutdown.failed_callbacks"] == 1
    assert span.status.status_code is StatusCode.ERROR
    events = [(event.name, dict(event.attributes or {})) for event in span.events]
    assert [name for name, _ in events] == [
        "draining",
        "listener closed",
        "drained",
        "callback",
        "callback",
    ]
    assert events[0][1] == {"zerodown.in_flight": 1}
    assert events[2][1] == {"zerodown.in_flight": 0}
    # The last registered runs first.
    assert [
        (a["zerodown.callback.name"], a["zerodown.callback.outcome"]) for _, a in events[3:]
    ] == [
        (broken.__qualname__, "failed"),
        (close_pool.__qualname__, "done"),
    ]
    assert value("zerodown.drain.duration") > drains_before


def test_each_health_check_run_is_a_span_and_a_duration_by_status() -> None:
    health = zerodown.Health()
    health.add(zerodown.Check("queue", lambda: True))
    health.add(zerodown.Check("search", lambda: {"status": "fail", "output": "token=abc down"}))
    health.run_sync(health.select({"readiness"}) or [])
    by_name = {
        dict(span.attributes or {})["zerodown.check.name"]: span
        for span in spans("zerodown.health.check")
    }
    assert by_name["queue"].status.status_code is StatusCode.UNSET
    assert by_name["search"].status.status_code is StatusCode.ERROR
    assert "abc" not in (by_name["search"].status.description or "")
    attributes = {"zerodown.check.name": "search", "zerodown.check.status": "fail"}
    assert value("zerodown.health.check.duration", **attributes) >= 0
    assert any(dict(p.attributes) == attributes for p in points("zerodown.health.check.duration"))


def test_session_store_errors_and_unreadable_sessions_are_counted() -> None:
    refused = {"error.type": "ConnectionError"}
    errors_before = value("zerodown.session.store.errors", **refused)
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(zerodown.ZerodownError):
        store.load_sync("some-session", 60)
    assert value("zerodown.session.store.errors", **refused) == errors_before + 1

    skew = {"zerodown.record.type": "session value"}
    unreadable_before = value("zerodown.session.unreadable", **skew)
    config = SessionConfig(secrets=["s" * 32], on_unavailable="anonymous")
    session = config.open("an-id", {"cart": b"?not ours"}, unavailable=False)
    # Bytes no release can read: a new session for the user, the stored one left alone.
    assert (session.id, session.claimed_id) == (None, "an-id")
    assert value("zerodown.session.unreadable", **skew) == unreadable_before + 1


def test_records_read_are_counted_per_written_version() -> None:
    old, new = Registry(), Registry()

    @old.record("profile", version=1)
    class ProfileV1(Record):
        name: str = ""

    @new.record("profile", version=2)
    class ProfileV2(Record):
        name: str = ""
        email: str = ""

    payload = old.encode(ProfileV1(name="ada"))
    for _ in range(3):
        new.decode(payload, ProfileV2)
    new.decode(new.encode(ProfileV2(name="ada")), ProfileV2)
    v1 = {"zerodown.record.type": "profile", "zerodown.record.version": 1}
    v2 = {"zerodown.record.type": "profile", "zerodown.record.version": 2}
    assert value("zerodown.record.reads", **v1) >= 3
    assert value("zerodown.record.reads", **v2) >= 1


@pytest.mark.servers
def test_without_opentelemetry_installed_everything_still_works() -> None:
    script = """
import asyncio, sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
import zerodown
from zerodown._telemetry import telemetry
lifecycle = zerodown.Lifecycle(shutdown_delay=0)
lifecycle.mark_ready()
lifecycle.start_draining("SIGTERM received")
asyncio.run(lifecycle.shutdown())
health = zerodown.Health()
health.add(zerodown.Check("ok", lambda: True))
health.run_sync(health.select({"readiness"}) or [])
print(telemetry.enabled, lifecycle.phase)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "stopped"]


def test_each_lifecycle_event_is_one_log_line_with_the_numbers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="zerodown")
    lifecycle = zerodown.Lifecycle(shutdown_delay=0, grace_period=30)
    lifecycle.mark_ready()
    token = lifecycle.request_started()
    lifecycle.start_draining("SIGTERM received")
    lifecycle.server.listener_closed()
    lifecycle.request_finished(token)
    asyncio.run(lifecycle.shutdown())
    lines = [record.getMessage() for record in caplog.records if record.name == "zerodown"]
    assert lines[0].startswith("zerodown: ready (pid ")
    assert lines[1].startswith("zerodown: SIGTERM received; draining: readiness now fails")
    assert "in flight: 1, oldest: " in lines[1]
    assert "s left before SIGKILL" in lines[1]
    assert lines[2].startswith("zerodown: lame-duck window over")
    assert lines[3].startswith("zerodown: drained after ")
    assert "in flight: 0" in lines[3]
    assert lines[4].startswith("zerodown: stopped ")
    assert len(lines) == 5
