"""Old public names, kept working with a warning that names what replaces them."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping


def moved(module: str, renamed: Mapping[str, tuple[str, object]]) -> Callable[[str], object]:
    """A module ``__getattr__`` that answers each old name of ``renamed`` (old name ->
    (new name, value)) with a DeprecationWarning."""

    def __getattr__(name: str) -> object:
        if name in renamed:
            new_name, value = renamed[name]
            warnings.warn(
                f"{module}.{name} is deprecated; use {module}.{new_name}",
                DeprecationWarning,
                stacklevel=2,
            )
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
