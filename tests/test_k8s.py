"""The Kubernetes manifests in examples/k8s: held to the rules the docs give, then run.

Each container command is run here as written (its address and port moved to a free
loopback port) with the manifest's environment, and its probes must answer.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bed import REPO, ProcessGroup, get
from zerodown import Lifecycle, Settings
from zerodown._cli.procs import LOOPBACK, child_environment, free_port, wait_for_http

MANIFESTS = sorted((REPO / "examples" / "k8s").glob("*.yaml"))
SHELLS = {"sh", "bash", "dash", "ash", "zsh"}
#: ingress-nginx's and AWS ALB's idle timeout for upstream connections.
PROXY_IDLE_TIMEOUT = 60
PROBES = {"startupProbe": "/startupz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def the_container(path: Path) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The Deployment's pod spec, its one container, and every document of the file."""
    docs = documents(path)
    (deployment,) = [doc for doc in docs if doc["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container, docs


def environment(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: str(item["value"]) for item in container.get("env", [])}


def server_settings(command: list[str]) -> tuple[float, float, str]:
    """The server's drain bound, keep-alive and worker class, read by the server's own
    argument parsing (and, for gunicorn, its config file)."""
    if Path(command[0]).name == "uvicorn":
        from uvicorn.main import main as uvicorn_main

        params = uvicorn_main.make_context("uvicorn", command[1:]).params
        return float(params["timeout_graceful_shutdown"]), float(params["timeout_keep_alive"]), ""
    from gunicorn.app.wsgiapp import WSGIApplication

    saved = sys.argv
    sys.argv = command
    try:
        cfg = WSGIApplication().cfg
    finally:
        sys.argv = saved
    return float(cfg.graceful_timeout), float(cfg.keepalive), str(cfg.worker_class_str)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_the_manifest_follows_the_rules(path: Path) -> None:
    pod, container, docs = the_container(path)
    deployment = next(doc for doc in docs if doc["kind"] == "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budgets = [doc for doc in docs if doc["kind"] == "PodDisruptionBudget"]
    assert any(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items() for pdb in budgets)

    command = container["command"]
    assert isinstance(command, list), "exec form: the server must be PID 1"
    assert Path(command[0]).name not in SHELLS, "a shell does not pass SIGTERM on"

    ports = {port["name"] for port in container["ports"]}
    for probe, probe_path in PROBES.items():
        assert container[probe]["httpGet"]["path"] == probe_path
        assert container[probe]["httpGet"]["port"] in ports

    env = environment(container)
    grace = pod["terminationGracePeriodSeconds"]
    assert float(env["ZERODOWN_GRACE_PERIOD"]) == grace
    drain, keepalive, worker = server_settings(command)
    lifecycle = Lifecycle(settings=Settings.load(environ=env))
    lifecycle.on_shutdown(lambda: None)  # the one callback the budget comments count
    assert lifecycle.budget_problems(drain_timeout=drain) == []
    if worker == "asgi":
        assert keepalive < drain, "an idle kept-alive connection would hold the worker"
    else:
        assert keepalive > PROXY_IDLE_TIMEOUT, "the proxy must close idle connections first"

    pre_stop = container.get("lifecycle", {}).get("preStop")
    if pre_stop is not None:
        assert pre_stop["httpGet"]["path"] == env["ZERODOWN_PRESTOP_PATH"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_the_manifest_command_serves_its_probes(procs: ProcessGroup, path: Path) -> None:
    _, container, _ = the_container(path)
    port = str(free_port())
    command = [
        part.replace("0.0.0.0", LOOPBACK).replace("8000", port) for part in container["command"]
    ]
    command[0] = str(Path(sys.executable).with_name(command[0]))
    if Path(command[0]).name == "gunicorn":
        command.append("--no-control-socket")  # masters on one machine would share it
    process = procs.start(path.stem, command, child_environment(REPO, environment(container)))
    for probe_path in PROBES.values():
        wait_for_http(f"http://{LOOPBACK}:{port}{probe_path}", timeout=30, process=process)
    pre_stop = container.get("lifecycle", {}).get("preStop")
    if pre_stop is not None:
        # Served (a POST is refused, not passed to the app), without draining the instance.
        assert get(int(port), pre_stop["httpGet"]["path"], method="POST")[0] == 405
