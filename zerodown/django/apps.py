"""The Django app ``zerodown.django``: its health and system checks, registered at load."""

from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings


class ZerodownConfig(AppConfig):  # type: ignore[misc]  # Django ships no types
    name = "zerodown.django"
    label = "zerodown"
    verbose_name = "zerodown"

    def ready(self) -> None:
        from . import checks, health

        checks.register()
        if dict(getattr(settings, "ZERODOWN", {}) or {}).get("checks", True):
            health.register()
