"""``zerodown rehearse`` and ``zerodown wait-ready``, run as a user runs them."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.bed import REPO, ProcessGroup
from zerodown._cli import procs
from zerodown._cli.procs import wait_for_http
from zerodown._cli.rehearse import haproxy
from zerodown._cli.rehearse.haproxy import ProxyCheck, render_config
from zerodown._cli.rehearse.k6 import LoadResult, RequestRecord
from zerodown._cli.rehearse.plan import RehearsalPlan
from zerodown._cli.rehearse.report import REPORT_SCHEMA_PATH, DeployOutcome, RehearsalReport

ZERODOWN = str(Path(sys.executable).with_name("zerodown"))
#: Short rehearsals: a few steady seconds, the deploy, a few more.
SHORT = ["--rate", "120", "--duration", "12"]


def zerodown(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ZERODOWN, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def rehearse(tmp_path: Path, options: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    """A short ``zerodown rehearse`` with ``options``: its output and its JSON report, valid."""
    report = tmp_path / "report.json"
    args = [*shlex.split(options), *SHORT, "--json", str(report), "--workdir", str(tmp_path)]
    done = zerodown("rehearse", *args)
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


@pytest.mark.e2e
def test_bluegreen_rehearsal_of_flask_under_gunicorn_passes(tmp_path: Path) -> None:
    done, document = rehearse(
        tmp_path, "examples.flask_app:app --strategy bluegreen --server gunicorn -k gthread"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = document["runs"]
    assert run["failed"] == 0
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
        (["examples.starlette_app:app", "--strategy", "hup"], "add --server gunicorn"),
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


def _record(started: float, latency: float, status: int = 200) -> RequestRecord:
    return RequestRecord(started, started + latency, "/", status, "", "v1-0")


def test_the_verdict_names_each_threshold_crossed() -> None:
    steady = [_record(t / 10, 0.1) for t in range(100)]
    during = [_record(10 + t / 10, 0.5) for t in range(50)]
    failed = [_record(12, 0.0, status=502)]
    report = RehearsalReport(
        plan=RehearsalPlan("a:b"),
        result=LoadResult(steady + during + failed),
        load_started=0.0,
        deploy_started=10.0,
        deploy_ended=30.0,
        outcome=DeployOutcome(aborted="v2-0 exited with status 3 before /readyz answered"),
        events=[],
        releases={"v1-0": "v1"},
    )
    reasons = report.verdict()
    assert reasons[0] == "1 failed requests (http_502 1); at most 0 allowed"
    assert reasons[1] == "p99 during the deploy 500ms > 1.5 x steady p99 100ms"
    assert reasons[2].startswith("the deploy did not complete: v2-0 exited")
    assert reasons[3].startswith("the deploy outlasted the load by 14.6s")
    assert not report.passed


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


@pytest.mark.e2e
def test_rolling_rehearsal_of_the_django_example_passes(tmp_path: Path) -> None:
    done, document = rehearse(tmp_path, "examples.django_app.asgi:application")
    assert done.returncode == 0, done.stdout + done.stderr
    assert document["runs"][0]["failed"] == 0


def test_the_django_example_serves_its_probes_under_gunicorn(procs: ProcessGroup) -> None:
    args = ["-c", "python:zerodown.gunicorn_conf", "-k", "gthread", "--threads", "4"]
    instance = procs.gunicorn(
        "examples.django_app.wsgi:application", args=args, ready_path="/readyz"
    )
    for path in ("/livez", "/startupz", "/", "/slow?ms=10"):
        wait_for_http(instance.url + path, timeout=5)
