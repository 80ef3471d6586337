"""The workers of one pre-fork server drain together when one of them gets the preStop
call (zerodown._servers.siblings), each answering readiness from its own lifecycle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zerodown import Lifecycle, Settings
from zerodown._health.registry import Health
from zerodown._phase import Phase
from zerodown._probes import Endpoint, ProbePaths, ProbeRequest, Probes
from zerodown._servers import siblings as siblings_module
from zerodown._servers.siblings import Siblings, master_pid

READYZ = ProbeRequest(Endpoint.READYZ, "GET")


def worker(master: int, monkeypatch: pytest.MonkeyPatch) -> Probes:
    """The probes of one worker of ``master``: its own lifecycle, as a process has."""
    monkeypatch.setattr(siblings_module, "master_pid", lambda: master)
    lifecycle = Lifecycle(settings=Settings.load(environ={"ZERODOWN_SHUTDOWN_DELAY": "5"}))
    lifecycle.mark_ready()
    return Probes(lifecycle, Health(), ProbePaths(prestop="/prestop"), None)


@pytest.fixture
def master(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    return os.getpid()  # a live process, whose start time names the mark


def test_a_prestop_call_in_one_worker_drains_the_others_at_their_next_probe(
    master: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    called, other = worker(master, monkeypatch), worker(master, monkeypatch)
    other.checks_for(READYZ)
    assert other.lifecycle.phase is Phase.READY
    assert called.prestop_wait("GET") == pytest.approx(5, abs=0.5)
    other.checks_for(READYZ)
    assert other.lifecycle.phase is Phase.DRAINING


def test_workers_of_another_master_are_left_serving(
    master: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    called = worker(master, monkeypatch)
    elsewhere = worker(os.getppid(), monkeypatch)
    called.prestop_wait("GET")
    elsewhere.checks_for(READYZ)
    assert elsewhere.lifecycle.phase is Phase.READY


def test_a_post_to_the_prestop_path_tells_nobody(
    master: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    called, other = worker(master, monkeypatch), worker(master, monkeypatch)
    assert called.prestop_wait("POST") == 0
    other.checks_for(READYZ)
    assert other.lifecycle.phase is Phase.READY


def test_a_process_no_pre_fork_server_started_has_no_siblings() -> None:
    assert master_pid() is None  # pytest's process: no uWSGI, no multiprocessing parent


def test_the_mark_names_the_master_by_pid_and_start_time(master: int) -> None:
    # A later process given the same PID has another start time, so finds no mark.
    started = Path(f"/proc/{master}/stat").read_text().rpartition(")")[2].split()[19]
    assert Siblings(master).mark.name == f"zerodown-prestop-{master}-{started}"
