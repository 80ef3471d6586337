"""Feature flags through OpenFeature (``pip install 'zerodown[openfeature]'``).

zerodown has no flag system of its own; it plugs into the OpenFeature SDK's::

    from openfeature import api
    import zerodown.openfeature

    api.set_provider(MyVendorProvider(...))
    zerodown.openfeature.instrument()

:func:`instrument` does three things:

- the provider's state becomes a check (startup and readiness): ``NOT_READY``, ``ERROR`` and
  ``FATAL`` fail it, ``STALE`` warns; the provider's events are logged;
- ``api.shutdown()`` runs among the shutdown callbacks, after the drain;
- every evaluation's context gets ``zerodown.release``, ``zerodown.instance`` and
  ``zerodown.cohort`` (``canary`` or ``stable``, from ``ZERODOWN_COHORT``, which
  ``zerodown rehearse`` sets), so a flag can target the canary, or the window in which both
  releases serve.

Under ``zerodown rehearse --flag KEY=VALUE`` (``--new-flag`` for the new release) the
rehearsal gives each instance its flags in ``ZERODOWN_FLAGS`` and :func:`instrument` serves
them from the SDK's in-memory provider instead of yours, so both code paths of a flag run
under the deploy.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any, Unpack

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.hook import Hook, HookContext, HookHints
from openfeature.provider import ProviderStatus
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from ._flags import COHORT_VARIABLE, COHORTS, FLAGS_VARIABLE
from ._health.model import READINESS, STARTUP, Check, CheckOptions
from ._health.registry import Health, get_health
from ._lifecycle import Lifecycle, get_lifecycle

logger = logging.getLogger("zerodown.openfeature")

_FAILING = {ProviderStatus.NOT_READY, ProviderStatus.ERROR, ProviderStatus.FATAL}


class DeployContextHook(Hook):
    """Adds the release, the instance and the cohort to every evaluation's context."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        cohort = env.get(COHORT_VARIABLE) or "stable"
        if cohort not in COHORTS:
            raise ValueError(f"{COHORT_VARIABLE}={cohort!r}: expected one of {', '.join(COHORTS)}")
        self.attributes: dict[str, Any] = {
            "zerodown.release": env.get("ZERODOWN_RELEASE") or env.get("ZERODOWN_VERSION") or "",
            "zerodown.instance": env.get("HOSTNAME") or socket.gethostname(),
            "zerodown.cohort": cohort,
        }

    def before(self, hook_context: HookContext, hints: HookHints) -> EvaluationContext:
        return EvaluationContext(attributes=self.attributes)


def provider_ready(
    domain: str | None = None, *, name: str = "feature-flags", **options: Unpack[CheckOptions]
) -> Check:
    """A check of the OpenFeature provider's state (of ``domain``, else the default one),
    in the startup and readiness groups unless ``groups`` says otherwise."""

    async def check() -> dict[str, object]:
        status = api.get_client(domain).get_provider_status()
        metadata = api.get_provider_metadata(domain)
        observed = f"{metadata.name}: {status.value}"
        if status in _FAILING:
            return {"status": "fail", "observedValue": observed, "output": observed}
        if status is ProviderStatus.STALE:
            return {"status": "warn", "observedValue": observed, "output": observed}
        return {"observedValue": observed}

    options.setdefault("groups", (STARTUP, READINESS))
    options.setdefault("component_type", "component")
    return Check(name, check, **options)


def instrument(
    domain: str | None = None,
    *,
    health: Health | None = None,
    lifecycle: Lifecycle | None = None,
    environ: Mapping[str, str] | None = None,
    **options: Unpack[CheckOptions],
) -> None:
    """The provider's state as a check (``options`` are the check's), ``api.shutdown()`` at
    shutdown, the deploy's context on every evaluation, and the rehearsal's flags when it
    gives some."""
    env = os.environ if environ is None else environ
    flags = env.get(FLAGS_VARIABLE)
    if flags:
        api.set_provider(InMemoryProvider(_in_memory_flags(flags)), domain)
        logger.info("serving the rehearsal's flags from %s", FLAGS_VARIABLE)
    (health or get_health()).add(provider_ready(domain, **options))
    (lifecycle or get_lifecycle()).on_shutdown(api.shutdown)
    api.add_hooks([DeployContextHook(env)])
    for event in ProviderEvent:
        api.add_handler(event, _event_logger(event))


def _event_logger(event: ProviderEvent) -> Callable[[EventDetails], None]:
    quiet = event in (ProviderEvent.PROVIDER_READY, ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)

    def log(details: EventDetails) -> None:
        changed = details.flags_changed or []
        logger.log(
            logging.INFO if quiet else logging.WARNING,
            "zerodown: feature flag provider %s: %s%s%s",
            details.provider_name or "?",
            event.value.removeprefix("PROVIDER_").lower().replace("_", " "),
            f": {details.message}" if details.message else "",
            f" (flags changed: {', '.join(changed)})" if changed else "",
        )

    return log


def _in_memory_flags(raw: str) -> dict[str, InMemoryFlag[Any]]:
    """``{"key": value, ...}`` as flags with one variant each."""
    try:
        values = json.loads(raw)
    except ValueError:
        raise ValueError(f"{FLAGS_VARIABLE} is not JSON: {raw[:80]!r}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{FLAGS_VARIABLE} must be a JSON object of flag keys and values")
    return {
        str(key): InMemoryFlag(default_variant="rehearsal", variants={"rehearsal": value})
        for key, value in values.items()
    }
