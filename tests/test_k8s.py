"""The Kubernetes manifests in examples/k8s, run: each container command as written (its
address and port moved to a free loopback port) with the manifest's environment, and its
probes must answer. The rules they are held to are ``zerodown doctor``'s
(tests/cli/test_doctor.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bed import REPO, ProcessGroup, get
from zerodown._cli.procs import LOOPBACK, child_environment, free_port, wait_for_http

MANIFESTS = sorted((REPO / "examples" / "k8s").glob("*.yaml"))
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


#: Validators nobody here wrote, pinned; installed by the test into a venv of their own
#: (checkov's dependencies would fight the test tools').
VALIDATORS = ("checkov==3.3.30", "kubernetes-validate==1.37.0")
TOOLS = REPO / ".venv" / "k8s-validators"


def validators() -> Path:
    """The validators' bin directory, installed once."""
    stamp = TOOLS / ".installed"
    if stamp.exists() and stamp.read_text() == " ".join(VALIDATORS):
        return TOOLS / "bin"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(TOOLS)], check=True)
    pip = [str(TOOLS / "bin" / "python"), "-m", "pip", "install", "-q", *VALIDATORS]
    subprocess.run(pip, check=True, capture_output=True, timeout=900)
    stamp.write_text(" ".join(VALIDATORS))
    return TOOLS / "bin"


@pytest.mark.servers
def test_the_manifests_pass_kubernetes_validate_and_checkov() -> None:
    tools = validators()
    done = subprocess.run(
        [str(tools / "kubernetes-validate"), "--strict", *map(str, MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    checkov = [str(tools / "checkov"), "--directory", str(REPO / "examples" / "k8s")]
    done = subprocess.run(
        [*checkov, "--framework", "kubernetes", "--output", "json", "--compact"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    (report,) = (
        [json.loads(done.stdout)] if done.stdout.startswith("{") else json.loads(done.stdout)
    )
    assert report["summary"]["failed"] == 0, report["results"]["failed_checks"]
    # Skips only with a reason, as checkov's annotation carries it.
    assert report["summary"]["skipped"] == len(MANIFESTS)  # the image, once in each file
    for skipped in report["results"]["skipped_checks"]:
        assert skipped["check_id"] == "CKV_K8S_43", skipped
        assert "cannot be pinned" in skipped["check_result"]["suppress_comment"]
