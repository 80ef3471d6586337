"""``zerodown doctor`` on the shipped manifests (clean) and on each way of breaking one: the
rule, the line it points at, and the exit status."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.bed import REPO
from zerodown._cli.main import main

MANIFESTS = sorted((REPO / "examples" / "k8s").glob("*.yaml"))
UVICORN = (REPO / "examples" / "k8s" / "deployment.yaml").read_text()
SHUTDOWN_DELAY = 'ZERODOWN_SHUTDOWN_DELAY\n              value: "5"'
ROLLING = (
    "maxUnavailable: 0 # a new pod is ready before an old one is told to stop\n      maxSurge: 1"
)
Doctor = Callable[..., tuple[int, dict[str, object]]]


@pytest.fixture
def doctor(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Doctor:
    """``zerodown doctor`` on a manifest's text: its status and JSON document."""

    def run(text: str, *options: str) -> tuple[int, dict[str, object]]:
        manifest = tmp_path / "deployment.yaml"
        manifest.write_text(text)
        try:
            status = main(["doctor", "--manifest", str(manifest), "--json", "-", *options])
        except SystemExit as exit:
            status = int(exit.code or 0)
        out, _ = capsys.readouterr()
        return status, json.loads(out) if out.strip() else {}

    return run


def findings(document: dict[str, object]) -> dict[str, int]:
    """rule -> line."""
    listed = document["findings"]
    assert isinstance(listed, list)
    return {finding["rule"]: finding["line"] for finding in listed}


def line_of(text: str, needle: str) -> int:
    """The line that starts with ``needle`` (after its indentation, when ``needle`` has
    none); ``AFTER>NEEDLE``: the first such line after the one that starts with AFTER."""
    after, _, needle = needle.rpartition(">")
    lines = list(enumerate(text.splitlines(), 1))
    if after:
        start = line_of(text, after)
        lines = lines[start:]
    return next(
        n for n, line in lines if line.startswith(needle) or line.lstrip().startswith(needle)
    )


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_the_shipped_manifests_have_no_finding(path: Path, doctor: Doctor) -> None:
    status, document = doctor(path.read_text())
    assert (status, document["findings"]) == (0, [])


@pytest.mark.parametrize(
    ("edit", "rule", "needle", "status"),
    [
        # The lame-duck window shorter than the endpoint removal's propagation.
        ((SHUTDOWN_DELAY, SHUTDOWN_DELAY.replace('"5"', '"1"')),
         "delay-below-propagation", "- name: ZERODOWN_SHUTDOWN_DELAY", 1),
        (("terminationGracePeriodSeconds: 35", "terminationGracePeriodSeconds: 25"),
         "budget", "terminationGracePeriodSeconds", 1),
        (("value: \"35\"", "value: \"25\""), "grace-period-mismatch",
         "- name: ZERODOWN_GRACE_PERIOD", 1),
        (("{path: /livez, port: http}", "{path: /readyz, port: http}"),
         "liveness-is-readiness", "livenessProbe:>httpGet", 1),
        (("{path: /readyz, port: http}", "{path: /health, port: http}"),
         "probe-path", "httpGet: {path: /health", 1),
        (("{path: /readyz, port: http}", "{path: /readyz, port: web}"),
         "probe-port", "httpGet: {path: /readyz, port: web}", 1),
        (("            - --timeout-graceful-shutdown=20 # = ZERODOWN_DRAIN_TIMEOUT\n", ""),
         "uvicorn-drain-unbounded", "command:", 1),
        (("--timeout-keep-alive=75", "--timeout-keep-alive=5"),
         "keep-alive-below-proxy", "- --timeout-keep-alive=5", 1),
        (("maxUnavailable: 0 # a new pod", "maxUnavailable: 1 # a new pod"),
         "rollout-capacity", "maxUnavailable: 1 # a new pod", 0),
        ((ROLLING, "maxUnavailable: 0\n      maxSurge: 0"), "rollout-stuck",
         "maxUnavailable: 0", 1),
        (("kind: PodDisruptionBudget", "kind: ConfigMap"), "no-disruption-budget",
         "      labels:", 0),
        (("          command:\n            - uvicorn",
          "          command:\n            - sh\n            - -c\n            - uvicorn"),
         "entrypoint-shell", "command:", 1),
        (("      containers:\n        - name: app\n",
          "      containers:\n        - name: app\n          lifecycle:\n            preStop:\n"
          "              sleep: {seconds: 5}\n"),
         "double-wait", "preStop:", 0),
    ],
)  # fmt: skip
def test_each_way_of_breaking_a_manifest_is_found_on_its_line(
    doctor: Doctor, edit: tuple[str, str], rule: str, needle: str, status: int
) -> None:
    old, new = edit
    assert old in UVICORN
    broken = UVICORN.replace(old, new, 1)
    got, document = doctor(broken)
    found = findings(document)
    assert rule in found, document["findings"]
    assert found[rule] == line_of(broken, needle)
    assert got == status


def test_a_gunicorn_manifest_needs_zerodowns_hooks_or_the_prestop_endpoint(
    doctor: Doctor, tmp_path: Path
) -> None:
    gunicorn = (REPO / "examples" / "k8s" / "deployment-gunicorn.yaml").read_text()
    bare = tmp_path / "gunicorn.conf.py"
    bare.write_text("keepalive = 65\ngraceful_timeout = 20\n")
    status, document = doctor(gunicorn, "--gunicorn-config", str(bare))
    assert status == 1
    assert "gunicorn-hooks" in findings(document)
    # Without the hooks the master closes its listener at SIGTERM: no lame-duck window.
    assert "delay-below-propagation" in findings(document)
    prestop = (REPO / "examples" / "k8s" / "deployment-prestop.yaml").read_text()
    assert doctor(prestop)[0] == 0  # -k asgi without hooks, the preStop endpoint instead


def test_the_assumptions_are_options_and_the_apps_callbacks_count(doctor: Doctor) -> None:
    status, document = doctor(UVICORN, "--propagation", "8")
    assert status == 1
    assert "delay-below-propagation" in findings(document)
    assert doctor(UVICORN, "--proxy-idle-timeout", "90")[1]["findings"] != []
    status, document = doctor(UVICORN, "--app", "tests.apps.slow_callbacks:app")
    assert status == 1
    assert "budget" in findings(document)
    assert document["assumptions"]["shutdown_callbacks_s"] == 20  # type: ignore[index]


def test_an_unreadable_manifest_exits_2(doctor: Doctor) -> None:
    assert doctor("kind: Service\n")[0] == 2
    assert doctor("{not yaml")[0] == 2
