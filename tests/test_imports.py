from __future__ import annotations

import subprocess
import sys
import types

import pytest

import zerodown

OPTIONAL = (
    "redis",
    "asyncpg",
    "opentelemetry",
    "starlette",
    "fastapi",
    "flask",
    "uvicorn",
    "msgspec",
)


@pytest.mark.parametrize("module", ["zerodown", "zerodown.gunicorn"])
def test_importing_zerodown_imports_no_optional_dependency(module: str) -> None:
    # A Flask app's gunicorn config must work without uvicorn or uvicorn-worker installed.
    listed = (*OPTIONAL, "uvicorn_worker", "gunicorn")
    code = f"import sys, {module}; print(','.join(m for m in {listed!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_the_public_api_is_what_all_says() -> None:
    public = [
        name
        for name in dir(zerodown)
        if (not name.startswith("_") or name == "__version__")
        and not isinstance(getattr(zerodown, name), types.ModuleType)  # zerodown.codec
    ]
    assert sorted(zerodown.__all__) == sorted(public)
