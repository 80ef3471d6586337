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
    "django",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "pglast",
)


@pytest.mark.servers
@pytest.mark.parametrize(
    "module",
    [
        "zerodown",
        "zerodown.health",
        "zerodown.sessions",
        "zerodown.codec",
        "zerodown.migrations",
        "zerodown.gunicorn",
        "zerodown.gunicorn_conf",
    ],
)
def test_importing_zerodown_imports_no_optional_dependency(module: str) -> None:
    # A Flask app's gunicorn config must work without uvicorn or uvicorn-worker installed;
    # sessions and records are built on msgspec, the one dependency zerodown has; no public
    # module brings the tooling in.
    listed = (*OPTIONAL, "uvicorn_worker", "gunicorn", "zerodown._cli")
    if module in ("zerodown.sessions", "zerodown.codec"):
        listed = tuple(name for name in listed if name != "msgspec")
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


def test_one_definition_of_a_checks_options() -> None:
    from dataclasses import fields

    from zerodown.health import Check, CheckOptions

    declared = {f.name for f in fields(Check) if f.init} - {"name", "function", "secrets"}
    assert set(CheckOptions.__annotations__) == declared


def test_errors_form_one_hierarchy() -> None:
    from zerodown.codec import UnreadableRecord
    from zerodown.sessions import SessionError, SessionTooLarge, StoreUnavailable

    for error in (StoreUnavailable, SessionTooLarge, UnreadableRecord, SessionError):
        assert issubclass(error, zerodown.ZerodownError)
    assert issubclass(StoreUnavailable, SessionError)
    assert issubclass(zerodown.ConfigurationError, ValueError)  # as before the hierarchy


def test_renamed_public_names_still_work_with_a_warning() -> None:
    import zerodown.codec
    import zerodown.sessions

    with pytest.warns(DeprecationWarning, match="DEFAULT_MAX_SESSION_SIZE"):
        assert zerodown.sessions.DEFAULT_MAX_SIZE == 64 * 1024  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match="DEFAULT_MAX_PAYLOAD_SIZE"):
        assert zerodown.codec.DEFAULT_MAX_SIZE == 1 << 20  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        zerodown.sessions.NO_SUCH_NAME  # type: ignore[attr-defined]  # noqa: B018
