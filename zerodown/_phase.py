"""Where a process is in its life: a leaf, so that telemetry can name the phases too."""

from __future__ import annotations

import enum


class Phase(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"
