"""``--network kubernetes`` without a network: the rules as kube-proxy writes them, the
phases of a termination, what a manifest gives the rehearsal, and what the plan refuses."""

from __future__ import annotations

from tests.bed import REPO
from zerodown._cli.rehearse.kube import (
    DEFAULT_READINESS,
    PodTimeline,
    PreStop,
    ProbeSpec,
    from_manifest,
    service_rules,
)
from zerodown._cli.rehearse.plan import RehearsalPlan


def test_the_rules_spread_new_connections_as_kube_proxy_does() -> None:
    rules = service_rules(["v1-0", "v1-1", "v2-0"], {"v1-0": 1001, "v1-1": 1002, "v2-0": 1003})
    pick = "-A KUBE-SVC-ZERODOWN -m statistic --mode random --probability"
    assert f"{pick} 0.3333333333 -j KUBE-SEP-V1-0" in rules
    assert f"{pick} 0.5000000000 -j KUBE-SEP-V1-1" in rules
    assert "-A KUBE-SVC-ZERODOWN -j KUBE-SEP-V2-0" in rules  # the last one takes the rest
    assert "-A KUBE-SEP-V2-0 -p tcp -j DNAT --to-destination 127.0.0.1:1003" in rules
    assert "REJECT" not in rules


def test_an_endpoint_that_goes_has_its_chain_deleted_and_none_left_rejects() -> None:
    rules = service_rules([], {}, stale=["v1-0"])
    assert ":KUBE-SEP-V1-0 - [0:0]" in rules  # flushed first, then deleted
    assert "-X KUBE-SEP-V1-0" in rules
    assert "-j REJECT --reject-with tcp-reset" in rules


def test_a_failure_falls_in_the_phase_of_the_pods_termination() -> None:
    pod = PodTimeline("v1-0", 1001, deleted_at=10.0, endpoint_removed_at=12.0)
    pod.listener_closed_at, pod.exited_at = 15.0, 16.0
    assert pod.phase(9.0) is None
    assert pod.phase(11.0) == "before endpoint removal"
    assert pod.phase(13.0) == "between removal and listener close"
    assert pod.phase(15.5) == "during drain"


def test_a_manifest_gives_the_replicas_probes_grace_prestop_env_and_command() -> None:
    plain = from_manifest(REPO / "examples" / "k8s" / "deployment.yaml")
    assert (plain.instances, plain.max_surge, plain.max_unavailable, plain.grace) == (3, 1, 0, 35)
    assert plain.readiness == ProbeSpec("/readyz", period=2, timeout=2, failure_threshold=1)
    assert plain.startup == ProbeSpec("/startupz", period=1, failure_threshold=120)
    assert plain.env["ZERODOWN_SHUTDOWN_DELAY"] == "5"
    assert plain.command == (
        "uvicorn examples.starlette_app:app --host=127.0.0.1 --port={port} "
        "--timeout-keep-alive=75 --timeout-graceful-shutdown=20"
    )
    assert plain.pre_stop is None
    assert "livenessProbe: restarts (not modeled)" in plain.not_modeled
    prestop = from_manifest(REPO / "examples" / "k8s" / "deployment-prestop.yaml")
    assert prestop.pre_stop == PreStop(http_path="/prestop")


def test_the_plan_refuses_what_kube_proxy_does_not_do() -> None:
    problems = RehearsalPlan(app="a:b", network="kubernetes", retries=1).problems()
    assert "--retry is refused with --network kubernetes: kube-proxy does not retry" in problems
    problems = RehearsalPlan(app="a:b", network="kubernetes", strategy="canary").problems()
    assert any("rolling update" in problem for problem in problems)
    assert RehearsalPlan(app="a:b", network="kubernetes").readiness == DEFAULT_READINESS


def test_the_ingress_variant_refuses_a_retry_of_the_rehearsals_own() -> None:
    problems = RehearsalPlan(app="a:b", network="ingress-nginx", retries=1).problems()
    assert any("proxy_next_upstream" in problem for problem in problems)
