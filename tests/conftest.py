from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bed import ProcessGroup, Service, start_postgres
from zerodown._cli.procs import ManagedProcess, stop_all

# Processes started here inherit this environment, as a rehearsal's instances inherit the
# user's: a developer's own ZERODOWN_* settings must not change what the tests see.
for _name in [name for name in os.environ if name.startswith("ZERODOWN_")]:
    del os.environ[_name]


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Start real processes for one test; every one is stopped by PID afterwards."""
    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture
def redis_server(procs: ProcessGroup) -> Service:
    """A fresh redis-server of the test's own, free to be killed or paused."""
    return procs.redis()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Service]:
    """One PostgreSQL for the session (initdb costs a couple of seconds)."""
    started: list[ManagedProcess] = []
    try:
        yield start_postgres(started)
    finally:
        stop_all(started)


#: Fixtures that start real processes: a test using one is marked ``servers``.
SERVER_FIXTURES = frozenset({"procs", "redis_server", "postgres_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if uses & SERVER_FIXTURES or item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.servers)


@pytest.fixture(autouse=True)
def _no_process_outside_servers(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a test not marked ``servers``, starting a process is an error, so that the fast
    subset (``-m 'not servers'``) really starts none."""
    if request.node.get_closest_marker("servers") is not None:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(
            f"{request.node.nodeid} starts a process: mark it @pytest.mark.servers"
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
