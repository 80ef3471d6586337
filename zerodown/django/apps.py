"""The Django app ``zerodown.django``: its settings, health and system checks, applied at
load."""

from __future__ import annotations

from django.apps import AppConfig


class ZerodownConfig(AppConfig):  # type: ignore[misc]  # Django ships no types
    name = "zerodown.django"
    label = "zerodown"
    verbose_name = "zerodown"

    def ready(self) -> None:
        from .._lifecycle import configure_lifecycle
        from . import checks, health
        from .conf import TIMINGS, lifecycle_settings, zerodown_settings

        checks.register()
        given = zerodown_settings()
        if TIMINGS & set(given):
            configure_lifecycle(lifecycle_settings())
        if given.get("checks", True):
            health.register()
