"""Importing the user's objects named as ``MODULE:ATTR``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def import_target(target: str) -> object:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected MODULE:ATTR, got {target!r}")
    sys.path.insert(0, str(Path.cwd()))
    module = importlib.import_module(module_name)
    return getattr(module, attribute)
