"""The health registry and the probes that show it, in-process (ASGI and WSGI).

Dependencies that hang are stood in for here: no real server can be made to hang on cue.
The real dependencies are in test_health_dependencies.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.asgi_harness import Exchange, call, http_scope
from zerodown import (
    ASGIMiddleware,
    ConfigurationError,
    Health,
    Lifecycle,
    ProbeAccess,
    WSGIMiddleware,
)
from zerodown._types import Receive, Scope, Send
from zerodown.health import Check, event_loop_lag, stuck_threads

TOKEN = "pr0be-token"


async def empty_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"app"})


def middleware(health: Health, *, ready: bool = True, **options: Any) -> ASGIMiddleware:
    lifecycle = Lifecycle()
    if ready:
        lifecycle.mark_ready()
    options.setdefault("probe_access", ProbeAccess(token=TOKEN))
    app = ASGIMiddleware(empty_app, lifecycle=lifecycle, health=health, **options)
    app._serving = True
    return app


async def probe(
    app: ASGIMiddleware, path: str, *, query: bytes = b"", token: str | None = None
) -> Exchange:
    scope = http_scope(path, query=query)
    if token is not None:
        scope["headers"].append((b"authorization", f"Bearer {token}".encode()))
    return await call(app, scope)


def counted(result: object = None) -> tuple[Callable[[], object], list[float]]:
    calls: list[float] = []

    def function() -> object:
        calls.append(time.monotonic())
        return result

    return function, calls


# -- statuses and bodies ---------------------------------------------------------------------


def test_statuses_add_up_critical_fails_and_non_critical_warns() -> None:
    async def main() -> None:
        health = Health(process_checks=False)
        health.add(Check("ok", lambda: True))
        health.add(Check("optional", lambda: False, critical=False))
        app = middleware(health)
        answer = await probe(app, "/readyz")
        assert (answer.status, answer.json()) == (200, {"status": "warn", "phase": "ready"})
        assert answer.headers["content-type"] == "application/health+json"

        health.add(Check("required", lambda: {"status": "fail", "output": "no quorum"}))
        answer = await probe(app, "/readyz", token=TOKEN)
        assert answer.status == 503
        body = answer.json()
        assert body["status"] == "fail"
        assert body["checks"]["required"][0]["output"] == "no quorum"
        assert body["checks"]["optional"][0]["status"] == "warn"
        assert body["checks"]["ok"][0]["status"] == "pass"
        assert (await probe(app, "/livez")).status == 200

    asyncio.run(main())


def test_details_need_the_token_or_an_allowed_loopback_client() -> None:
    async def main() -> None:
        health = Health(process_checks=False)
        health.add(Check("db", lambda: {"observedValue": 3, "observedUnit": "ms"}))
        access = ProbeAccess(token=TOKEN, version="2.4.1", release_id="r42")
        app = middleware(health, probe_access=access)
        plain_identity = {"version": "2.4.1", "releaseId": "r42"}
        plain = {"status": "pass", **plain_identity, "phase": "ready"}
        # Without authorization ?verbose is ignored: the body is the plain probe's.
        assert (await probe(app, "/readyz", query=b"verbose")).json() == plain
        assert (await probe(app, "/readyz", query=b"verbose", token="wrong")).json() == plain
        assert (await probe(app, "/readyz/db")).json() == {"status": "pass", **plain_identity}
        for scheme in ("bearer", "BEARER", "Bearer"):  # RFC 9110: schemes are case-insensitive
            scope = http_scope("/readyz", query=b"verbose")
            scope["headers"].append((b"authorization", f"{scheme}  {TOKEN}".encode()))
            assert "checks" in (await call(app, scope)).json(), scheme
        body = (await probe(app, "/readyz", query=b"verbose", token=TOKEN)).json()
        check = body["checks"]["db"][0]
        assert check["observedValue"] == 3
        assert check["observedUnit"] == "ms"
        assert check["componentType"] == "component"
        assert check["time"].endswith("Z")
        assert body["processes"][0]["inFlight"] == 0

        loopback = Health(process_checks=False)
        loopback.add(Check("db", lambda: None))
        access = ProbeAccess(details_for_loopback=True)
        body = (
            await probe(middleware(loopback, probe_access=access), "/readyz", query=b"verbose")
        ).json()
        assert "checks" in body  # the harness's client is 127.0.0.1

    asyncio.run(main())


def test_version_and_release_come_from_the_environment_into_every_probe() -> None:
    health = Health(process_checks=False)
    access = ProbeAccess.load(
        environ={
            "ZERODOWN_VERSION": "3.0.0",
            "ZERODOWN_RELEASE": "blue",
            "ZERODOWN_SERVICE_ID": "s",
        },
    )

    async def main() -> None:
        app = middleware(health, probe_access=access)
        for path in ("/livez", "/readyz", "/startupz"):
            body = (await probe(app, path)).json()
            assert (body["version"], body["releaseId"], body["serviceId"]) == ("3.0.0", "blue", "s")

    asyncio.run(main())


def test_secrets_are_redacted_from_bodies_and_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    dsn = "postgresql://app:s3cr3t-pw@db.internal:5432/app"

    def failing() -> None:
        raise ConnectionError(f"cannot reach {dsn}; also tried password=hunter2")

    health = Health(process_checks=False)
    health.add(Check("db", failing, secrets=(dsn,)))
    health.add(Check("api", lambda: {"status": "fail", "output": "GET https://u:tok3n@api/x"}))

    async def main() -> str:
        return (await probe(middleware(health), "/readyz", token=TOKEN)).body.decode()

    with caplog.at_level(logging.WARNING, logger="zerodown"):
        body = asyncio.run(main())
    for text in (body, caplog.text):
        assert "s3cr3t" not in text
        assert "hunter2" not in text
        assert "tok3n" not in text
        assert "db.internal" not in text
    assert "ConnectionError: cannot reach [redacted]" in body


def test_verbose_exclude_and_single_checks() -> None:
    async def main() -> None:
        health = Health(process_checks=False)
        health.add(Check("good", lambda: None))
        health.add(Check("bad", lambda: False))
        app = middleware(health)
        assert (await probe(app, "/readyz")).status == 503
        excluded = await probe(app, "/readyz", query=b"exclude=bad&verbose", token=TOKEN)
        assert excluded.status == 200
        assert list(excluded.json()["checks"]) == ["good"]
        assert (await probe(app, "/readyz/good")).status == 200
        single = await probe(app, "/readyz/bad", token=TOKEN)
        assert single.status == 503
        assert list(single.json()["checks"]) == ["bad"]
        # A path under a probe that names none of its checks is the app's.
        for unknown in ("/readyz/missing", "/livez/good", "/readyz/good/x", "/readyz/"):
            assert (await probe(app, unknown)).body == b"app", unknown
        health.add(Check("late", lambda: None))
        assert (await probe(app, "/readyz/late")).json()["status"] == "pass"
        assert (await probe(app, "/app-path")).body == b"app"
        head = await call(app, http_scope("/readyz/good", method="HEAD"))
        assert (head.status, head.body) == (200, b"")
        post = await call(app, http_scope("/readyz/good", method="POST"))
        assert post.status == 405

    asyncio.run(main())


def test_liveness_runs_only_its_own_checks() -> None:
    calls: list[str] = []
    health = Health(process_checks=False)
    health.add(Check("db", lambda: calls.append("db") or False))
    health.add(
        Check(
            "loop",
            lambda: calls.append("loop") and None,
            groups="liveness",
            component_type="system",
        )
    )

    async def main() -> None:
        app = middleware(health)
        assert (await probe(app, "/livez")).status == 200
        assert calls == ["loop"]

    asyncio.run(main())


def test_readiness_asks_no_dependency_while_starting_or_draining() -> None:
    function, calls = counted()
    health = Health(process_checks=False)
    health.add(Check("db", function, cache_ttl=0))

    async def main() -> None:
        app = middleware(health, ready=False)
        assert (await probe(app, "/readyz")).status == 503
        app.lifecycle.mark_ready()
        assert (await probe(app, "/readyz")).status == 200
        app.lifecycle.start_draining("test")
        assert (await probe(app, "/readyz")).status == 503

    asyncio.run(main())
    assert len(calls) == 1


def test_startup_checks_gate_readiness_until_they_pass_once() -> None:
    migrated = threading.Event()
    health = Health(process_checks=False)
    health.add(Check("migrations", migrated.is_set, groups="startup", cache_ttl=0, max_backoff=0))

    async def main() -> None:
        app = middleware(health)
        assert (await probe(app, "/startupz")).status == 503
        assert (await probe(app, "/readyz")).status == 503
        migrated.set()
        assert (await probe(app, "/readyz")).status == 200
        assert (await probe(app, "/startupz")).status == 200
        migrated.clear()  # passed once: later runs no longer matter
        assert (await probe(app, "/readyz")).status == 200
        assert (await probe(app, "/startupz")).status == 200

    asyncio.run(main())


def test_startup_fails_until_the_app_started() -> None:
    async def main() -> None:
        app = middleware(Health(process_checks=False), ready=False)
        assert (await probe(app, "/startupz")).json() == {"status": "fail", "phase": "starting"}
        app.lifecycle.mark_ready()
        assert (await probe(app, "/startupz")).status == 200

    asyncio.run(main())


# -- protecting the dependency ----------------------------------------------------------------


def test_a_hanging_check_costs_the_probe_its_timeout_and_nothing_more() -> None:
    forever = threading.Event()
    cancelled_but_stubborn_calls = 0

    async def stubborn() -> None:
        nonlocal cancelled_but_stubborn_calls
        cancelled_but_stubborn_calls += 1
        # A badly written client that swallows the timeout's cancellation.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        await asyncio.sleep(3600)  # asyncio.run's own cancellation at the end ends it

    health = Health(process_checks=False)
    health.add(Check("sync-hang", forever.wait))
    health.add(Check("async-hang", stubborn))

    async def main() -> None:
        app = middleware(health)
        started = time.monotonic()
        answer = await probe(app, "/readyz", token=TOKEN)
        elapsed = time.monotonic() - started
        assert answer.status == 503
        assert elapsed < 1.0 + 0.5, elapsed  # the timeout, with slack for a loaded machine
        checks = answer.json()["checks"]
        assert checks["sync-hang"][0]["output"] == "timed out after 1.0s"
        assert checks["async-hang"][0]["output"] == "timed out after 1.0s"
        await asyncio.sleep(1.1)  # past the backoff: the next probe asks again
        started = time.monotonic()
        again = await probe(app, "/readyz", token=TOKEN)
        assert time.monotonic() - started < 0.5  # not another 1 s timeout
        assert "previous run has not returned" in again.json()["checks"]["sync-hang"][0]["output"]

    try:
        asyncio.run(main())
    finally:
        forever.set()
    assert cancelled_but_stubborn_calls == 1


def test_concurrent_probes_share_one_run() -> None:
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.3)

    health = Health(process_checks=False)
    health.add(Check("db", slow, cache_ttl=0))

    async def main() -> list[int]:
        app = middleware(health)
        answers = await asyncio.gather(*(probe(app, "/readyz") for _ in range(200)))
        return [answer.status for answer in answers]

    assert asyncio.run(main()) == [200] * 200
    assert calls == 1


def test_results_are_cached_for_the_ttl() -> None:
    function, calls = counted()
    health = Health(process_checks=False)
    health.add(Check("db", function, cache_ttl=0.3))

    async def main() -> None:
        app = middleware(health)
        for _ in range(5):
            await probe(app, "/readyz")
        assert len(calls) == 1
        await asyncio.sleep(0.35)
        await probe(app, "/readyz")
        assert len(calls) == 2

    asyncio.run(main())


def test_a_failing_check_backs_off() -> None:
    function, calls = counted(False)
    health = Health(process_checks=False)
    health.add(Check("db", function, cache_ttl=0, max_backoff=2))

    async def main() -> None:
        app = middleware(health)
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            assert (await probe(app, "/readyz")).status == 503
            await asyncio.sleep(0.02)

    asyncio.run(main())
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    # 1 s after the first failure, then 2 s (the cap); about 150 probes asked meanwhile.
    assert len(calls) == 3, gaps
    assert gaps[0] >= 1.0
    assert gaps[1] >= 2.0


def test_background_refresh_keeps_probes_off_the_dependency() -> None:
    function, calls = counted()
    health = Health(process_checks=False)
    health.add(Check("db", function, interval=0.1))

    async def main() -> None:
        app = middleware(health)
        app.health.start(asyncio.get_running_loop())
        await asyncio.sleep(0.55)
        before = len(calls)
        for _ in range(20):
            assert (await probe(app, "/readyz")).status == 200
        assert len(calls) - before <= 1  # only the refresher's own tick, if one fell here

    asyncio.run(main())
    assert len(calls) >= 4


# -- what a check may return -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("returned", "status", "output"),
    [
        (None, "pass", ""),
        (True, "pass", ""),
        (False, "fail", "the check returned False"),
        ({"status": "warn", "output": "slow"}, "warn", "slow"),
        (
            {"status": "sideways"},
            "fail",
            "the check returned status 'sideways'; use pass, warn or fail",
        ),
        ("ok", "fail", "the check returned a str; return None, a bool or a dict, or raise"),
    ],
)
def test_what_a_check_returns(returned: object, status: str, output: str) -> None:
    health = Health(process_checks=False)
    health.add(Check("c", lambda: returned))
    report = asyncio.run(health.run(health.checks))
    result = report.results[0][1]
    assert (result.status, result.output) == (status, output)


def test_a_check_that_raises_fails_with_the_exception() -> None:
    def broken() -> None:
        raise KeyError("missing")

    health = Health(process_checks=False)
    health.add(Check("c", broken))
    result = health.run_sync(health.checks).results[0][1]
    assert (result.status, result.output) == ("fail", "KeyError: 'missing'")


def test_bad_registrations_say_what_to_do(caplog: pytest.LogCaptureFixture) -> None:
    health = Health(process_checks=False)
    health.add(Check("db", lambda: None))
    with pytest.raises(ConfigurationError, match="registered already"):
        health.add(Check("db", lambda: None))
    with pytest.raises(ConfigurationError, match="not usable in a URL"):
        Check("a/b", lambda: None)
    with pytest.raises(ConfigurationError, match="timeout must be a finite number of seconds > 0"):
        Check("t", lambda: None, timeout=0)
    with pytest.raises(ConfigurationError, match="failure_threshold"):
        Check("t", lambda: None, failure_threshold=0)
    with pytest.raises(ConfigurationError, match="no group"):
        Check("t", lambda: None, groups=())
    with caplog.at_level(logging.WARNING, logger="zerodown"):
        health.add(Check("remote", lambda: None, groups="liveness", component_type="datastore"))
    assert "restarts every instance" in caplog.text


def test_the_decorator_registers_a_function() -> None:
    health = Health(process_checks=False)

    @health.check(critical=False, groups=("readiness", "startup"))
    async def queue_depth() -> dict[str, object]:
        return {"observedValue": 7}

    (check,) = health.checks
    assert (check.name, check.critical, check.groups) == (
        "queue_depth",
        False,
        frozenset({"readiness", "startup"}),
    )
    assert asyncio.run(health.run(health.checks)).results[0][1].observed_value == 7


# -- the process checks -----------------------------------------------------------------------


def test_the_event_loop_lag_check_fails_after_the_loop_was_blocked() -> None:
    health = Health()
    health.add(event_loop_lag(max_lag=0.2, window=5))

    async def main() -> None:
        app = middleware(health)  # process_checks: would add the default; ours has its name
        assert [c.name for c in health.checks] == ["event_loop"]
        assert (await probe(app, "/livez")).status == 200
        await asyncio.sleep(0.3)
        time.sleep(0.5)  # noqa: ASYNC251 - the blocking code the check is there to catch
        await asyncio.sleep(0.3)
        answer = await probe(app, "/livez")
        assert answer.status == 503
        assert (await probe(app, "/readyz")).status == 200

    asyncio.run(main())


def test_the_asgi_middleware_adds_the_lag_check_unless_told_not_to() -> None:
    with_default = Health()
    middleware(with_default)
    assert [c.name for c in with_default.checks] == ["event_loop"]
    without = Health(process_checks=False)
    middleware(without)
    assert without.checks == []


def test_stuck_threads_fail_liveness_when_all_other_threads_are_stuck() -> None:
    lifecycle = Lifecycle()
    lifecycle.server.worker_threads = 3
    health = Health(process_checks=False)
    health.add(stuck_threads(limit=0.1, lifecycle=lifecycle))
    first = lifecycle.request_started()
    time.sleep(0.15)
    assert health.run_sync(health.checks).status == "pass"  # 1 of 3 stuck
    second = lifecycle.request_started()
    assert health.run_sync(health.checks).status == "pass"  # the second is young
    time.sleep(0.15)
    report = health.run_sync(health.checks)
    assert report.status == "fail"
    assert report.results[0][1].output == (
        "2 of 3 worker threads have been in one request for more than 0.1s"
    )
    lifecycle.request_finished(first)
    lifecycle.request_finished(second)
    assert health.run_sync(health.checks).status == "pass"


# -- WSGI -------------------------------------------------------------------------------------


def wsgi_get(app: WSGIMiddleware, path: str, **environ: str) -> tuple[str, dict[str, Any]]:
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append(status)

    path, _, query = path.partition("?")
    env = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REMOTE_ADDR": "10.0.0.9",
        "wsgi.input": io.BytesIO(),
        **environ,
    }
    body = b"".join(app(env, start_response))
    return seen[0], json.loads(body)


def test_wsgi_probes_run_checks_in_threads_bounded_by_the_timeout() -> None:
    forever = threading.Event()

    async def async_check() -> dict[str, object]:
        await asyncio.sleep(0)
        return {"observedValue": 1}

    health = Health()
    health.add(Check("hang", forever.wait, timeout=0.3))
    health.add(Check("async", async_check))

    def app(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        return iter([b"app"])

    wrapped = WSGIMiddleware(
        app, lifecycle=Lifecycle(), health=health, probe_access=ProbeAccess(token=TOKEN)
    )
    assert [c.name for c in health.checks] == ["hang", "async", "worker_threads"]
    try:
        started = time.monotonic()
        status, body = wsgi_get(wrapped, "/readyz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert time.monotonic() - started < 0.3 + 0.5
        assert status == "503 Service Unavailable"
        assert body["checks"]["hang"][0]["output"] == "timed out after 0.3s"
        assert body["checks"]["async"][0]["observedValue"] == 1
        assert wsgi_get(wrapped, "/readyz/async")[0] == "200 OK"
        assert wsgi_get(wrapped, "/livez")[0] == "200 OK"
        assert wsgi_get(wrapped, "/readyz")[1] == {"status": "fail", "phase": "ready"}
    finally:
        forever.set()


def test_the_deprecated_names_still_work_and_say_what_replaces_them() -> None:
    with pytest.warns(DeprecationWarning, match="probe_access="):
        health = Health(process_checks=False, token=TOKEN, version="1.2.3")
    with pytest.warns(DeprecationWarning, match="groups="):
        health.add(Check("db", lambda: None, probes=("startup",)))
    assert health.checks[0].groups == frozenset({"startup"})

    async def main() -> None:
        # The middleware takes the registry's access when it is given none.
        app = middleware(health, probe_access=None)
        body = (await probe(app, "/readyz", query=b"verbose", token=TOKEN)).json()
        assert body["version"] == "1.2.3"
        assert "checks" in body

    asyncio.run(main())
