"""hypercorn, granian and uWSGI, each rehearsed under load behind HAProxy as a user runs
``zerodown rehearse --server``: zerodown holds hypercorn's and granian's SIGTERM back on
their event loop; uWSGI gets the preStop endpoint first, which every worker then obeys.
The matrix with and without zerodown, and each server's reload, is
``benchmarks/servers.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_rehearse import rehearse

pytestmark = [pytest.mark.e2e, pytest.mark.servers]
ONE_INSTANCE = "--instances 1 --rate 60 --duration 10"


def instance_log(tmp_path: Path, run: str, name: str) -> str:
    return (tmp_path / run / "instances" / f"{name}.log").read_text()


def events(run: dict[str, Any]) -> list[str]:
    return [event["event"] for event in run["deploy"]["events"]]


@pytest.mark.parametrize(
    "options",
    [
        "examples.starlette_app:app --server hypercorn",
        "examples.starlette_app:app --server granian",
    ],
)
def test_the_lame_duck_window_is_held_on_the_servers_event_loop(
    tmp_path: Path, options: str
) -> None:
    done, document = rehearse(tmp_path, f"{options} {ONE_INSTANCE}")
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = document["runs"]
    assert run["failed"] == 0
    assert any(event.startswith("SIGTERM to v1-0") for event in events(run))  # no preStop
    log = instance_log(tmp_path, "with-zerodown", "v1-0")
    assert "SIGTERM received; draining" in log
    assert "lame-duck window over after 5.0s" in log


def test_uwsgi_is_called_on_its_prestop_endpoint_and_every_worker_drains(tmp_path: Path) -> None:
    # Two processes, recycled every 150 requests: the preStop call reaches one of them,
    # the others (and any worker respawned since) learn it from the master's mark
    # (tests/servers/test_siblings.py).
    done, document = rehearse(
        tmp_path,
        f"examples.flask_app:app --server uwsgi --server-args '--max-requests 150' {ONE_INSTANCE}",
    )
    (with_zerodown,) = document["runs"]
    assert with_zerodown["failed"] == 0, done.stdout
    assert any("preStop GET /_zerodown/prestop" in event for event in events(with_zerodown))
    log = instance_log(tmp_path, "with-zerodown", "v1-0")
    assert "the preStop endpoint was called; draining" in log


def test_uwsgi_chain_reload_replaces_every_worker_and_loses_no_request(tmp_path: Path) -> None:
    done, document = rehearse(
        tmp_path, f"examples.flask_app:app --server uwsgi --strategy hup {ONE_INSTANCE}"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = document["runs"]
    assert run["failed"] == 0
    assert any(event.startswith("chain reload (c to v1-0.control)") for event in events(run))
    assert any(event == "v1-0 reloaded: every worker is new" for event in events(run))
