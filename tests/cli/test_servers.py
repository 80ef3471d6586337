"""How ``zerodown rehearse --server`` runs hypercorn, granian and uWSGI, and which of them
gets the preStop endpoint before SIGTERM: command lines and plans, no process started."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerodown._cli.main import build_parser
from zerodown._cli.rehearse.fleet import ServerSpec
from zerodown._cli.rehearse.plan import RehearsalPlan

CONTROL = Path("/tmp/v1-0.control")


def argv(spec: ServerSpec) -> list[str]:
    return spec.argv("examples.starlette_app:app", 8000, 15, CONTROL)[1:]


def test_hypercorn_serves_in_its_own_process_unless_given_workers() -> None:
    alone = ServerSpec(kind="hypercorn")
    assert argv(alone)[:3] == ["examples.starlette_app:app", "--bind", "127.0.0.1:8000"]
    assert argv(alone)[3:] == ["--workers", "0", "--keep-alive", "10", "--graceful-timeout", "15"]
    assert alone.holds_sigterm
    assert not alone.reloads  # no master to reload its workers
    with_workers = ServerSpec(kind="hypercorn", workers=2)
    assert not with_workers.holds_sigterm
    assert with_workers.reloads


def test_granian_holds_sigterm_on_its_asgi_workers_loop_only() -> None:
    asgi = ServerSpec(kind="granian", factory=True)
    assert argv(asgi)[:2] == ["--interface", "asgi"]
    assert argv(asgi)[-2:] == ["--factory", "examples.starlette_app:app"]
    assert asgi.holds_sigterm
    assert not ServerSpec(kind="granian", interface="wsgi").holds_sigterm


def test_uwsgi_stops_on_sigterm_and_chain_reloads_through_its_fifo() -> None:
    spec = ServerSpec(kind="uwsgi", server_args=("--max-requests", "100"))
    line = argv(spec)
    for option in ("--die-on-term", "--lazy-apps", "--need-app", "--master"):
        assert option in line
    assert line[line.index("--master-fifo") + 1] == str(CONTROL)
    assert line[-2:] == ["--max-requests", "100"]  # the user's, after zerodown's
    assert not spec.holds_sigterm
    assert spec.reloads


@pytest.mark.parametrize(
    ("plan", "problem"),
    [
        (RehearsalPlan(app="a:b", strategy="hup"), "the server's own reload"),
        (
            RehearsalPlan(app="a:b", strategy="hup", server=ServerSpec(kind="hypercorn")),
            "hypercorn with --workers 1 or more",
        ),
        (
            RehearsalPlan(app="a:b", server=ServerSpec(kind="uwsgi", factory=True)),
            "--factory is not for --server uwsgi",
        ),
        (
            RehearsalPlan(
                app="x {port}",
                server=ServerSpec(kind="command", command="x {port}", server_args=("-v",)),
            ),
            "--server-args is for --server",
        ),
    ],
)
def test_plans_a_server_cannot_run_are_refused_with_what_to_change(
    plan: RehearsalPlan, problem: str
) -> None:
    assert any(problem in said for said in plan.problems())


def test_every_server_is_a_choice_of_the_rehearsal() -> None:
    args = build_parser().parse_args(["rehearse", "a:b", "--server", "uwsgi"])
    assert args.server == "uwsgi"
