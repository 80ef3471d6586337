"""zerodown.openfeature with the real OpenFeature SDK: the provider's state as a check, its
shutdown among zerodown's, the deploy's context on every evaluation, the rehearsal's flags."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from openfeature import api
from openfeature.event import ProviderEventDetails
from openfeature.provider.in_memory_provider import InMemoryProvider

import zerodown.openfeature
from zerodown import Health, Lifecycle
from zerodown._polling import poll
from zerodown.openfeature import DeployContextHook, instrument


@pytest.fixture(autouse=True)
def sdk() -> Iterator[None]:
    """The SDK's global state, reset around each test."""
    api.shutdown()
    yield
    api.shutdown()


def statuses(health: Health) -> list[str]:
    return [result.status for _, result in health.run_sync(health.checks).results]


class Failing(InMemoryProvider):
    """A provider that cannot reach its service at start."""

    def initialize(self, evaluation_context: object) -> None:
        raise ConnectionError("flagd at 127.0.0.1:8013 refused the connection")


def test_the_example_flag_targets_the_canary_cohort_only() -> None:
    # examples/flags_app.py's provider and rule, evaluated with each cohort's context.
    from examples import flags_app

    client = api.get_client()
    for cohort, expected in (("canary", True), ("stable", False)):
        api.clear_hooks()
        api.add_hooks([DeployContextHook({"ZERODOWN_COHORT": cohort, "ZERODOWN_RELEASE": "v2"})])
        details = client.get_boolean_details(flags_app.FLAG, False)
        assert (cohort, details.value) == (cohort, expected)


def test_the_hook_adds_release_instance_and_cohort() -> None:
    hook = DeployContextHook({"ZERODOWN_RELEASE": "v7", "HOSTNAME": "shop-5f9c-abcde"})
    assert hook.attributes == {
        "zerodown.release": "v7",
        "zerodown.instance": "shop-5f9c-abcde",
        "zerodown.cohort": "stable",
    }
    with pytest.raises(ValueError, match="ZERODOWN_COHORT='blue'"):
        DeployContextHook({"ZERODOWN_COHORT": "blue"})


def test_the_providers_state_is_a_startup_and_readiness_check(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = Health()
    instrument(health=health, lifecycle=Lifecycle(), environ={}, cache_ttl=0)
    (check,) = health.checks
    assert set(check.groups) == {"startup", "readiness"}
    provider = InMemoryProvider({})
    api.set_provider(provider)
    assert statuses(health) == ["pass"]
    with caplog.at_level(logging.INFO, logger="zerodown.openfeature"):
        provider.emit_provider_stale(ProviderEventDetails(message="no update for 5 min"))
        assert statuses(health) == ["warn"]
        provider.emit_provider_error(ProviderEventDetails(message="stream closed"))
        assert statuses(health) == ["fail"]
        # The SDK runs event handlers on its own thread pool.
        for line in ("stale: no update for 5 min", "error: stream closed"):
            assert poll(lambda line=line: line in caplog.text, timeout=5), caplog.text
    api.set_provider(Failing({}))
    assert statuses(health) == ["fail"]


def test_the_sdk_shuts_down_with_the_process() -> None:
    shut: list[str] = []

    class Recording(InMemoryProvider):
        def shutdown(self) -> None:
            shut.append("provider")

    api.set_provider(Recording({}))
    lifecycle = Lifecycle()
    instrument(health=Health(), lifecycle=lifecycle, environ={})
    asyncio.run(lifecycle.shutdown())
    assert shut == ["provider"]


def test_the_rehearsals_flags_are_served_in_place_of_the_providers() -> None:
    api.set_provider(InMemoryProvider({}))
    env = {"ZERODOWN_FLAGS": '{"new-pricing": true, "banner": "blue"}'}
    instrument(health=Health(), lifecycle=Lifecycle(), environ=env)
    client = api.get_client()
    assert client.get_boolean_value("new-pricing", False) is True
    assert client.get_string_value("banner", "") == "blue"
    with pytest.raises(ValueError, match="ZERODOWN_FLAGS is not JSON"):
        instrument(health=Health(), lifecycle=Lifecycle(), environ={"ZERODOWN_FLAGS": "{x"})
    assert zerodown.openfeature.FLAGS_VARIABLE == "ZERODOWN_FLAGS"
