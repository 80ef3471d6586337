from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bed import ProcessGroup, Service, start_postgres
from zerodown._cli.procs import ManagedProcess, stop_all


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
