"""``zerodown rehearse`` and ``zerodown wait-ready``, run as a user runs them."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.apps.releases import NOT_READY_REASON
from tests.bed import REPO, ProcessGroup, Service
from zerodown._cli import procs
from zerodown._cli.main import build_parser
from zerodown._cli.procs import wait_for_http
from zerodown._cli.rehearse import haproxy
from zerodown._cli.rehearse.haproxy import ProxyCheck, render_config
from zerodown._cli.rehearse.k6 import LoadResult, RequestRecord
from zerodown._cli.rehearse.plan import RehearsalPlan
from zerodown._cli.rehearse.report import (
    REPORT_SCHEMA_PATH,
    DeployOutcome,
    RehearsalReport,
    Thresholds,
)

ZERODOWN = str(Path(sys.executable).with_name("zerodown"))
#: Short rehearsals: a few steady seconds, the deploy, a few more.
SHORT = ["--rate", "120", "--duration", "12"]


def zerodown(
    *args: str, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, in the user's environment plus ``env``."""
    return subprocess.run(
        [ZERODOWN, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def rehearse(
    tmp_path: Path, options: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], Any]:
    """A short ``zerodown rehearse`` with ``options``: its output and its JSON report, valid."""
    report = tmp_path / "report.json"
    args = [*SHORT, *shlex.split(options), "--json", str(report), "--workdir", str(tmp_path)]
    done = zerodown("rehearse", *args, env=env)
    assert report.exists(), done.stdout + done.stderr
    document = json.loads(report.read_text())
    jsonschema.validate(document, json.loads(REPORT_SCHEMA_PATH.read_text()))
    return done, document


@pytest.mark.e2e
def test_rolling_rehearsal_of_the_starlette_example_passes_and_the_comparison_fails(
    tmp_path: Path,
) -> None:
    done, document = rehearse(tmp_path, "examples.starlette_app:app --compare")
    assert done.returncode == 0, done.stdout + done.stderr
    with_zerodown, without = document["runs"]
    assert document["passed"] is True
    assert with_zerodown["failed"] == 0
    assert with_zerodown["requests"] >= 1200
    assert set(with_zerodown["per_release"]) == {"v1", "v2"}
    assert without["zerodown"] is False
    assert without["failed"] > 0, "the comparison must show what zerodown prevents"
    assert without["failures_by_kind"]
    assert "with zerodown  without zerodown" in done.stdout
    assert "verdict: PASS" in done.stdout
    assert "SIGTERM to v1-1" in done.stdout  # the live progress
    # maxSurge 1, maxUnavailable 0: each old instance is signalled once a new one is in.
    events = [event["event"] for event in with_zerodown["deploy"]["events"]]
    for number in (0, 1):
        ready = next(i for i, e in enumerate(events) if e.startswith(f"v2-{number} ready"))
        assert ready < next(
            i for i, e in enumerate(events) if e.startswith(f"SIGTERM to v1-{number}")
        )


@pytest.mark.e2e
def test_bluegreen_rehearsal_of_flask_under_gunicorn_passes(tmp_path: Path) -> None:
    # The user's gunicorn config, its worker class overridden on the command line.
    done, document = rehearse(
        tmp_path,
        "examples.flask_app:app --strategy bluegreen --server gunicorn "
        "--gunicorn-config examples/gunicorn.conf.py -k gthread --threads 8",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = document["runs"]
    assert run["failed"] == 0
    assert run["worker_class"] == "gthread"
    assert run["server"] == (
        "gunicorn -k gthread (workers as configured x 8 threads, examples/gunicorn.conf.py)"
    )
    assert run["per_release"]["v2"] > 0
    assert "proxy switched to green" in done.stdout


@pytest.mark.e2e
def test_hup_rehearsal_under_gunicorn_passes(tmp_path: Path) -> None:
    done, document = rehearse(
        tmp_path,
        "examples.starlette_app:app --strategy hup --instances 1 --server gunicorn -k uvicorn",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert document["runs"][0]["failed"] == 0
    assert "v1-0 reloaded: every worker is new" in done.stdout


@pytest.mark.e2e
def test_an_app_that_exits_on_sigterm_fails_with_its_failures_by_kind(tmp_path: Path) -> None:
    # Through --command, as a server zerodown has no option for would be run.
    uvicorn = f"{sys.executable} -m uvicorn {{app}} --host 127.0.0.1 --port {{port}}"
    done, document = rehearse(
        tmp_path, f"tests.apps.broken:exits_on_term --command {shlex.quote(uvicorn)}"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (run,) = document["runs"]
    assert run["failed"] > 0
    assert sum(run["failures_by_kind"].values()) == run["failed"]
    assert len(run["failed_requests"]) == run["failed"]
    assert "verdict: FAIL" in done.stdout
    assert "failed:" in done.stdout
    assert f"under `{uvicorn}`" in done.stdout


@pytest.mark.e2e
def test_a_canary_that_answers_500_is_rolled_back(tmp_path: Path) -> None:
    done, document = rehearse(
        tmp_path,
        "examples.starlette_app:app --new-app tests.apps.broken:answers_500 "
        "--strategy canary --canary-pause 3",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (run,) = document["runs"]
    assert run["deploy"]["rolled_back"].startswith("at 10%: ")
    assert set(run["failures_by_kind"]) == {"http_500"}
    # Only the canary failed, and only a little of the load before the rollback.
    assert {request["server"] for request in run["failed_requests"]} <= {"v2-0", "v2-1"}
    assert run["failed"] < run["requests"] * 0.05
    assert "the canary was rolled back at 10%" in done.stdout


@pytest.mark.servers
def test_an_app_without_zerodown_is_refused_with_what_to_do(tmp_path: Path) -> None:
    done = zerodown("rehearse", "examples.starlette_app:inner", *SHORT, "--workdir", str(tmp_path))
    assert done.returncode == 2
    assert "answers 404 on /readyz" in done.stderr
    assert "zerodown.ASGIMiddleware" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["examples.starlette_app:app", "--strategy", "hup"],
            "the server's own reload of its workers",
        ),
        (["--rate", "10"], "give the app as MODULE:ATTR, or --command"),
        (["a:b", "--canary-steps", "10,50"], "ending in 100"),
        (["a:b", "--canary-steps", "ten"], "expected percentages"),
        (["a:b", "--env", "NOEQUALS"], "expected KEY=VALUE"),
        (["--command", "uvicorn a:b"], "must contain {port}"),
        # A line break would add a rule to HAProxy's configuration (and one `haproxy -c`
        # accepts): every value that reaches a generated config is refused unless it fits.
        (["a:b", "--fast-path", "/\n    http-request return status 200"], "--fast-path"),
        (["a:b", "--slow-path", "/slow ms=300"], "printable ASCII without spaces"),
        (["a:b", "--fast-path", "health"], "must start with '/'"),
    ],
)
@pytest.mark.servers
def test_impossible_plans_are_refused(args: list[str], message: str) -> None:
    done = zerodown("rehearse", *args)
    assert done.returncode == 2
    assert message in done.stderr


def test_wait_ready_waits_for_readiness(procs: ProcessGroup) -> None:
    instance = procs.uvicorn("examples.starlette_app:app")
    done = zerodown("wait-ready", instance.url, "--timeout", "10")
    assert done.returncode == 0, done.stderr
    assert f"ready: {instance.url}/readyz answered 200" in done.stdout


def test_wait_ready_says_why_it_gave_up(procs: ProcessGroup) -> None:
    instance = procs.uvicorn("examples.starlette_app:app")
    done = zerodown("wait-ready", f"{instance.url}/readyz/nothing", "--timeout", "1")
    assert done.returncode == 1
    assert "last gave 404" in done.stderr
    instance.process.stop()
    done = zerodown("wait-ready", instance.url, "--timeout", "1")
    assert done.returncode == 1
    assert "no answer" in done.stderr
    assert zerodown("wait-ready", "localhost:8000").returncode == 2


def _record(
    started: float, latency: float, status: int = 200, server: str = "v1-0", path: str = "/"
) -> RequestRecord:
    return RequestRecord(started, started + latency, path, status, "", server)


def _report(records: list[RequestRecord], **outcome: Any) -> RehearsalReport:
    return RehearsalReport(
        plan=RehearsalPlan("a:b"),
        result=LoadResult(records),
        load_started=0.0,
        deploy_started=10.0,
        deploy_ended=20.0,
        outcome=DeployOutcome(**outcome),
        events=[],
        releases={"v1-0": "v1", "v2-0": "v2"},
    )


def test_the_verdict_names_each_threshold_crossed_and_the_release_that_failed() -> None:
    before = [_record(t / 50, 0.010) for t in range(500)]
    during = [_record(10 + t / 50, 0.510, server="v2-0") for t in range(300)]
    failed = [_record(12, 0.0, status=502), _record(13, 0.0, status=500, server="v2-0")]
    report = _report(
        before + during + failed, aborted="v2-0 did not turn ready\n  migrations: fail: at fe56"
    )
    reasons = report.verdict()
    assert reasons[0] == (
        "2 failed (http_500 1, http_502 1); at most 0 allowed; "
        "by release: v1 1 from 12.0s; v2 1 from 13.0s"
    )
    assert reasons[1] == (
        "GET /: p99 during the deploy 510ms > 1.5 x and > 50ms above 10ms before it"
    )
    assert (
        reasons[2]
        == "the deploy did not complete: v2-0 did not turn ready migrations: fail: at fe56"
    )
    assert reasons[3].startswith("the deploy outlasted the load by")
    assert report.failures_by_release()["v2"]["first_at_s"] == 13.0


def test_the_latency_gate_passes_noise_and_judges_only_paths_with_enough_requests() -> None:
    # 15 ms that became 54 ms: above 1.5x, but within the 50 ms floor.
    noise = [_record(t / 50, 0.015) for t in range(400)]
    noise += [_record(10 + t / 50, 0.054) for t in range(600)]
    # A slow path far worse during the deploy, but with too few requests to judge.
    noise += [_record(t / 10, 0.3, path="/rare") for t in range(50)]
    noise += [_record(10 + t / 10, 3.0, path="/rare") for t in range(50)]
    report = _report(noise)
    assert report.verdict() == []
    rare = next(path for path in report.latency_by_path() if path.name == "GET /rare")
    assert rare.judged is False
    assert rare.p99_ms["during"] == 3000.0


def test_a_release_that_is_slower_after_the_deploy_fails_the_gate() -> None:
    records = [_record(t / 50, 0.010) for t in range(400)]
    records += [_record(21 + t / 50, 0.510, server="v2-0") for t in range(400)]
    assert _report(records).verdict() == [
        "GET /: p99 after the deploy 510ms > 1.5 x and > 50ms above 10ms before it"
    ]


def test_the_stable_release_failing_after_the_canary_started_is_a_problem() -> None:
    thresholds = Thresholds()
    before = [_record(t, 0.01) for t in range(100)] + [_record(50, 0, status=500)]
    fine = [_record(100 + t, 0.01) for t in range(100)]
    assert thresholds.stable_problem(before, fine) is None
    broken = fine + [_record(200 + t, 0, status=500) for t in range(10)]
    problem = thresholds.stable_problem(before, broken)
    assert problem == (
        "the stable release failed 10 of 110 requests since the canary started "
        "(9.1%, 1.0% before it)"
    )


def test_users_whose_session_was_lost_or_lost_a_write_are_counted() -> None:
    def call(at: float, before: int, count: int | None, status: int = 200) -> RequestRecord:
        return RequestRecord(
            at,
            at + 0.01,
            "/_zerodown/rehearsal/session",
            status,
            "",
            "v2-0",
            visitor=7,
            scenario="sessions",
            session_before=before,
            session_count=count,
        )

    calls = [call(1, 0, 1), call(2, 1, 2), call(3, 2, 3), call(4, 3, 2), call(5, 2, 1)]
    calls += [call(6, 1, None, status=503), call(7, 1, None, status=403)]
    losses = LoadResult(calls).session_losses()
    assert [(loss.kind, loss.detail) for loss in losses] == [
        ("write", "count 2 after 3"),
        ("session", "a new session (it held 2)"),
        ("session", "refused with 403"),
    ]
    sessions = _report(calls).sessions()
    assert sessions is not None
    assert sessions["users_logged_out"] == 1
    assert sessions["by_release"]["v2"]["instances"]["v2-0"] == {
        "sessions_lost": 2,
        "writes_lost": 1,
    }


def test_a_missing_haproxy_is_named_with_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(procs.shutil, "which", lambda name: None)
    monkeypatch.setattr(procs, "SYSTEM_DIRS", ())
    with pytest.raises(FileNotFoundError, match="apt-get install haproxy"):
        haproxy.find_haproxy()


def test_retry_lets_the_proxy_try_another_instance_on_connection_errors(tmp_path: Path) -> None:
    kwargs = {
        "port": 1,
        "backends": ["app"],
        "admin_socket": tmp_path / "s",
        "route_map": tmp_path / "m",
        "check": ProxyCheck(),
    }
    strict = render_config(**kwargs, retries=0)
    assert "retries 0\n    no option redispatch" in strict
    nginx_like = render_config(**kwargs, retries=1)
    assert "retries 1\n    option redispatch 1\n    retry-on conn-failure" in nginx_like


#: The Django example's release that switches from Django's database engine to zerodown's.
DJANGO_SWITCH = (
    "examples.django_app.asgi:application --database postgres "
    "--setup 'django-admin migrate --settings examples.django_app.settings' "
    "--env DJANGO_SESSIONS=db --new-env DJANGO_SESSIONS=switching"
)


@pytest.mark.e2e
def test_the_django_example_switches_session_engines_with_nobody_logged_out(
    tmp_path: Path, redis_server: Service
) -> None:
    # Release v1 keeps sessions in PostgreSQL (Django's db engine); v2 is the one release
    # that reads them and writes zerodown's store (and the database, for v1) on Redis.
    done, document = rehearse(tmp_path, f"{DJANGO_SWITCH} --env REDIS_URL={redis_server.url}")
    assert done.returncode == 0, done.stdout + done.stderr
    run = document["runs"][0]
    assert run["failed"] == 0
    assert run["sessions"]["users"] == 10
    assert run["sessions"]["users_logged_out"] == 0
    assert set(run["per_release"]) == {"v1", "v2"}


def test_the_django_example_serves_its_probes_under_gunicorn(procs: ProcessGroup) -> None:
    args = ["-c", "python:zerodown.gunicorn_conf", "-k", "gthread", "--threads", "4"]
    instance = procs.gunicorn(
        "examples.django_app.wsgi:application", args=args, ready_path="/readyz"
    )
    for path in ("/livez", "/startupz", "/", "/slow?ms=10"):
        wait_for_http(instance.url + path, timeout=5)


@pytest.mark.e2e
def test_a_users_k6_script_is_the_traffic_and_its_failed_checks_are_attributed(
    tmp_path: Path,
) -> None:
    done, document = rehearse(
        tmp_path,
        "examples.starlette_app:app --k6-script tests/apps/users.js --rate 40",
        env={"SLOW_STATUS": "201"},  # the script's check of /slow now fails every time
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (run,) = document["runs"]
    assert run["load"]["rate_unit"] == "iterations/s"
    assert {path["path"] for path in run["latency_ms"]["by_path"]} == {"GET home", "GET /slow"}
    failed_checks = run["failures_by_kind"]["check:slow answers as expected"]
    assert failed_checks == run["failed"] > 100
    assert run["checks_failed_unattributed"] == 0
    assert set(run["failures_by_release"]) == {"v1", "v2"}
    assert run["k6_thresholds_crossed"] == ["checks: rate>0.5"]
    assert any("options vus, duration are replaced" in note for note in run["deploy"]["notes"])
    # Another function of the same script, whose checks pass, passes.
    again, document = rehearse(
        tmp_path / "again",
        "examples.starlette_app:app --k6-script tests/apps/users.js --k6-exec browse --rate 40",
    )
    assert again.returncode == 0, again.stdout + again.stderr
    (run,) = document["runs"]
    assert run["failed"] == 0
    assert [path["path"] for path in run["latency_ms"]["by_path"]] == ["GET browse"]


@pytest.mark.e2e
@pytest.mark.parametrize(
    "new_env",
    [
        "ZERODOWN_SESSION_SECRETS=a-secret-the-old-release-never-had-0123456",
        "REDIS_URL={redis}/5",  # another Redis database: the sessions are not there
    ],
    ids=["another-secret", "another-redis-database"],
)
def test_a_new_release_that_cannot_read_the_sessions_logs_every_user_out(
    tmp_path: Path, redis_server: Service, new_env: str
) -> None:
    # The user's own environment reaches the instances, ZERODOWN_* included.
    env = {
        "REDIS_URL": f"{redis_server.url.rsplit('/', 1)[0]}/0",
        "ZERODOWN_SESSION_SECRETS": "the-secret-of-the-running-release-0123456789",
        "ZERODOWN_SHUTDOWN_DELAY": "3",
    }
    new_env = new_env.format(redis=redis_server.url.rsplit("/", 1)[0])
    done, document = rehearse(
        tmp_path, f"examples.starlette_app:app --shutdown-delay 2 --new-env {new_env}", env=env
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (run,) = document["runs"]
    sessions = run["sessions"]
    assert sessions["users"] == run["load"]["session_users"] == 10
    assert sessions["users_logged_out"] == 10
    # The new release logs them out first; while both serve, each loses the other's.
    first = min(sessions["by_release"].items(), key=lambda item: item[1]["first_at_s"])
    assert first[0] == "v2"
    assert "10 of 10 users were logged out" in done.stdout
    assert run["settings_overridden"] == [
        "--shutdown-delay 2 overrides ZERODOWN_SHUTDOWN_DELAY=3 from your environment"
    ]
    assert "setting: --shutdown-delay 2 overrides" in done.stdout


@pytest.mark.e2e
def test_a_canary_that_breaks_the_stable_release_is_rolled_back(
    tmp_path: Path, redis_server: Service
) -> None:
    done, document = rehearse(
        tmp_path,
        "tests.apps.releases:needs_shared_key --new-app tests.apps.releases:deletes_shared_key "
        "--factory --strategy canary --canary-pause 3",
        env={"REDIS_URL": redis_server.url},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (run,) = document["runs"]
    assert run["deploy"]["rolled_back"].startswith("at 10%: the stable release failed")
    assert set(run["failures_by_release"]) == {"v1"}
    assert run["server"] == "uvicorn --factory"
    assert "release v1 failed" in done.stdout


@pytest.mark.e2e
def test_the_new_release_runs_from_its_own_directory(tmp_path: Path) -> None:
    # Another checkout of the app, where the new release's module only exists.
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "released_app.py").write_text(
        "import zerodown\n"
        "from starlette.applications import Starlette\n"
        "from starlette.responses import PlainTextResponse\n"
        "from starlette.routing import Route\n"
        "async def index(request):\n"
        "    return PlainTextResponse('from the new checkout')\n"
        "routes = [Route('/', index), Route('/slow', index)]\n"
        "app = zerodown.ASGIMiddleware(Starlette(routes=routes))\n"
    )
    done, document = rehearse(
        tmp_path / "run",
        f"examples.starlette_app:app --new-app released_app:app --new-dir {checkout}",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = document["runs"]
    assert run["new_dir"] == str(checkout)
    assert run["per_release"]["v2"] > 0


def test_every_option_of_the_rehearsal_is_in_its_help_and_its_docs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["rehearse", "--help"])
    assert exited.value.code == 0
    options = set(re.findall(r"(--[a-z0-9-]+)", capsys.readouterr().out)) - {"--help"}
    documented = set(re.findall(r"(--[a-z0-9-]+)", (REPO / "docs/rehearse.md").read_text()))
    assert options - documented == set()
    for option in (
        "--k6-script",
        "--traffic",
        "--p99-floor-ms",
        "--min-requests",
        "--max-surge",
        "--max-unavailable",
        "--ready-timeout",
        "--new-dir",
        "--factory",
        "--session-users",
        "--k6-exec",
    ):
        assert option in options


@pytest.mark.e2e
def test_a_release_that_never_turns_ready_is_reported_with_its_failing_check(
    tmp_path: Path,
) -> None:
    done, document = rehearse(
        tmp_path,
        "examples.starlette_app:app --new-app tests.apps.releases:never_ready --ready-timeout 3",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (run,) = document["runs"]
    assert "v2-0 did not turn ready within 3s" in run["deploy"]["aborted"]
    assert f"migrations: fail: RuntimeError: {NOT_READY_REASON}" in run["verdict"]["reasons"][0]
    assert "GET /readyz" not in done.stdout  # the reason, not the access log


@pytest.mark.e2e
def test_a_failing_migration_stops_the_rehearsal_with_its_output(tmp_path: Path) -> None:
    done = zerodown(
        "rehearse",
        "examples.starlette_app:app",
        *("--rate", "20", "--duration", "8", "--workdir", str(tmp_path)),
        *("--migrate", "echo relation notes does not exist >&2; exit 3"),
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--migrate 'echo relation notes" in done.stderr
    assert "exited with status 3" in done.stderr
    assert "relation notes does not exist" in done.stderr
    # The timeline showed the step start before it failed.
    assert "migrate started" in done.stdout


@pytest.mark.e2e
def test_a_flag_turned_on_in_the_new_release_only_shows_whose_requests_fail(
    tmp_path: Path,
) -> None:
    done, document = rehearse(
        tmp_path,
        "tests.apps.flagged:app --slow-fraction 0 --rate 40 --new-flag new-pricing=true",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (run,) = document["runs"]
    assert run["flags"] == {"every_instance": {}, "new_release": {"new-pricing": True}}
    assert set(run["failures_by_release"]) == {"v2"}
    assert run["per_release"]["v1"] > 0


def namespaces_allowed() -> bool:
    """A network namespace can be made here (CI runs as root: there it must)."""
    if os.environ.get("CI"):
        return True
    command = ["unshare", "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    done = subprocess.run([*command, "true"], capture_output=True, check=False)
    return done.returncode == 0


needs_namespaces = pytest.mark.skipif(
    not namespaces_allowed(),
    reason="this machine forbids network namespaces (not root, no unprivileged user namespaces)",
)


@pytest.mark.e2e
@needs_namespaces
def test_a_kubernetes_service_rolls_with_zerodown_and_refuses_connections_without(
    tmp_path: Path,
) -> None:
    done, document = rehearse(
        tmp_path, "examples.starlette_app:app --network kubernetes --propagation 2 --compare"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with_zerodown, without = document["runs"]
    assert with_zerodown["failed"] == 0
    assert with_zerodown["network"]["kind"] == "kubernetes"
    pods = {pod["name"]: pod for pod in with_zerodown["network"]["pods"]}
    leaving = pods["v1-0"]
    # The endpoint went 2 s after the deletion; the listener stayed open past it.
    assert leaving["endpoint_removed_at_s"] - leaving["deleted_at_s"] >= 1.9
    assert leaving["listener_closed_at_s"] > leaving["endpoint_removed_at_s"]
    assert with_zerodown["per_release"]["v2"] > 0  # named by the instances themselves
    # Without zerodown the listener closes at SIGTERM, while kube-proxy still sends there.
    assert without["failed"] > 0
    assert set(without["network"]["failures_by_phase"]) == {"before endpoint removal"}
    assert "refused" in without["network"]["failures_by_phase"]["before endpoint removal"]


@pytest.mark.e2e
@needs_namespaces
def test_a_delay_shorter_than_the_propagation_fails_and_the_doctor_says_why(
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "deployment.yaml"
    text = (REPO / "examples" / "k8s" / "deployment.yaml").read_text()
    manifest.write_text(
        text.replace(
            'ZERODOWN_SHUTDOWN_DELAY\n              value: "5"',
            'ZERODOWN_SHUTDOWN_DELAY\n              value: "1"',
        )
    )
    done, document = rehearse(
        tmp_path, f"--manifest {manifest} --network kubernetes --propagation 2 --instances 2"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (run,) = document["runs"]
    # Refused by the closed listener; a kept-alive connection may also be closed unanswered.
    assert "refused" in run["failures_by_kind"]
    assert set(run["failures_by_kind"]) <= {"refused", "closed", "reset"}
    assert "before endpoint removal" in run["network"]["failures_by_phase"]
    assert run["network"]["manifest"] == str(manifest)
    doctor = zerodown("doctor", "--manifest", str(manifest), "--propagation", "2")
    assert doctor.returncode == 1
    assert "delay-below-propagation" in doctor.stdout


@pytest.mark.e2e
@needs_namespaces
def test_an_ingress_nginx_in_front_of_the_service_rolls_with_zerodown(tmp_path: Path) -> None:
    done, document = rehearse(
        tmp_path, "examples.starlette_app:app --network ingress-nginx --propagation 2"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = document["runs"]
    assert run["failed"] == 0
    assert run["network"]["kind"] == "ingress-nginx"
    assert any("Lua balancer" in note for note in run["network"]["not_modeled"])
    assert run["per_release"]["v2"] > 0  # the instances' own header, through nginx
