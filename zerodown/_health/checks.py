"""The built-in checks: dependencies (PostgreSQL, migrations, Redis, disk, HTTP) and the
process itself (event-loop lag, stuck worker threads).

Each factory returns a :class:`Check`; extra keyword arguments (``timeout``, ``critical``,
``groups``, ``cache_ttl``, ...) go to it. Client libraries are imported when a check is
made or run, never when zerodown is imported.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import weakref
from collections import deque
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, Unpack
from urllib.parse import urlsplit

from .._errors import ConfigurationError
from .._lifecycle import Lifecycle, get_lifecycle
from .._sqlstate import UNDEFINED_TABLE, sqlstate
from .model import DEFAULT_CHECK_TIMEOUT, LIVENESS, STARTUP, Check, CheckOptions


def _milliseconds(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


def _import_asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError:
        raise ConfigurationError(
            "the PostgreSQL checks need asyncpg: pip install 'zerodown[postgres]'"
        ) from None
    return asyncpg


async def _fetch(target: Any, query: str, seconds: float) -> tuple[list[Any], dict[str, object]]:
    """Run ``query`` on ``target``; its rows, and the pool's usage when it is a pool.

    A pool with every connection in use is not waited on: under load that wait would fail
    readiness on every instance at once and take the whole service out.
    """
    if isinstance(target, str):
        asyncpg = _import_asyncpg()
        connection = await asyncpg.connect(libpq_url(target), timeout=seconds)
        try:
            return list(await connection.fetch(query)), {}
        finally:
            await connection.close(timeout=seconds)
    if _sqlalchemy_engine(target) is not None:
        return await _fetch_sqlalchemy(target, query, seconds)
    asyncpg = _import_asyncpg()
    pool = target() if callable(target) and not isinstance(target, asyncpg.Pool) else target
    if pool is None:
        raise ConfigurationError("the pool is not created yet")
    size, idle, most = pool.get_size(), pool.get_idle_size(), pool.get_max_size()
    usage: dict[str, object] = {"poolInUse": size - idle, "poolMax": most}
    if idle == 0 and size >= most:
        usage["saturated"] = True
        return [], usage
    async with pool.acquire(timeout=seconds) as connection:
        return list(await connection.fetch(query)), usage


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://...``) as the plain one asyncpg takes."""
    scheme, separator, rest = url.partition("://")
    if separator and scheme.partition("+")[0] in ("postgresql", "postgres"):
        return f"postgresql://{rest}"
    return url


def _sqlalchemy_engine(target: Any) -> str | None:
    """``sync`` or ``async`` for a SQLAlchemy ``Engine`` or ``AsyncEngine``, else None.

    Told by the type's module, so that SQLAlchemy is imported only by apps that use it.
    """
    kind = type(target)
    if not kind.__module__.startswith("sqlalchemy."):
        return None
    return {"Engine": "sync", "AsyncEngine": "async"}.get(kind.__name__)


async def _fetch_sqlalchemy(
    engine: Any, query: str, seconds: float
) -> tuple[list[Any], dict[str, object]]:
    """Run ``query`` on one of the engine's pooled connections, within ``seconds``."""
    from sqlalchemy import text

    checked_out = getattr(engine.pool, "checkedout", None)
    usage: dict[str, object] = {} if checked_out is None else {"poolInUse": checked_out()}
    if _sqlalchemy_engine(engine) == "async":
        async with asyncio.timeout(seconds), engine.connect() as connection:
            return list((await connection.execute(text(query))).all()), usage

    def fetch() -> list[Any]:
        with engine.connect() as connection:
            return list(connection.execute(text(query)).all())

    return await asyncio.wait_for(asyncio.to_thread(fetch), seconds), usage


def postgres(
    target: Any,
    *,
    name: str = "postgres",
    query: str = "SELECT 1",
    **options: Unpack[CheckOptions],
) -> Check:
    """PostgreSQL answers ``query``.

    ``target`` is an asyncpg pool, a SQLAlchemy ``Engine`` or ``AsyncEngine`` (one of its
    pooled connections), a URL (``postgresql://``, or SQLAlchemy's
    ``postgresql+psycopg://`` and ``postgresql+asyncpg://``: a connection per run), or a
    function returning the pool (for pools made at startup, after the check was
    registered).

    With a pool, ``poolInUse``/``poolMax`` are reported; a saturated pool warns instead of
    queueing the check behind the app's own queries.
    """

    async def check() -> dict[str, object]:
        started = time.monotonic()
        _, usage = await _fetch(target, query, _deadline(options))
        if usage.pop("saturated", False):
            return {
                "status": "warn",
                "output": f"pool saturated: all {usage['poolMax']} connections in use; "
                "the check did not wait for one",
                **usage,
            }
        return {"observedValue": _milliseconds(started), "observedUnit": "ms", **usage}

    secrets = (target,) if isinstance(target, str) else ()
    options.setdefault("component_type", "datastore")
    return Check(name, check, secrets=secrets, **options)


def migrations_applied(
    target: Any,
    supported: str | Iterable[str] | None = None,
    *,
    alembic: Any = None,
    name: str = "migrations",
    query: str = "SELECT version_num FROM alembic_version",
    **options: Unpack[CheckOptions],
) -> Check:
    """The database's schema version is one this release supports.

    ``target`` is what :func:`postgres` takes. ``supported`` are the revisions this release
    runs against; or ``alembic`` computes them, the heads of its migration scripts: the
    path of an ``alembic.ini``, an Alembic ``Config`` or ``ScriptDirectory``. In the
    ``startup`` group unless told otherwise: a new release does not become ready before
    its migration ran, while the running release is not taken out when the next one
    migrates ahead of it.
    """
    if (supported is None) == (alembic is None):
        raise ConfigurationError(
            "migrations_applied needs the supported revisions or alembic= (the path of an "
            "alembic.ini, a Config or a ScriptDirectory), one of them"
        )
    if alembic is not None:
        supported = alembic_heads(alembic)
    assert supported is not None
    revisions = frozenset([supported] if isinstance(supported, str) else supported)
    if not revisions:
        raise ConfigurationError("migrations_applied needs at least one supported revision")

    async def check() -> dict[str, object]:
        try:
            rows, _ = await _fetch(target, query, _deadline(options))
        except Exception as error:
            if sqlstate(error) == UNDEFINED_TABLE:
                return {"status": "fail", "output": "no schema version table: run the migrations"}
            raise
        found = sorted(str(row[0]) for row in rows)
        observed = ",".join(found) or None
        if not found:
            return {"status": "fail", "output": "the schema version table is empty"}
        unknown = [revision for revision in found if revision not in revisions]
        if unknown:
            wanted = ", ".join(sorted(revisions))
            return {
                "status": "fail",
                "observedValue": observed,
                "output": f"the database is at {observed}; this release runs on {wanted}",
            }
        return {"observedValue": observed}

    options.setdefault("groups", (STARTUP,))
    secrets = (target,) if isinstance(target, str) else ()
    options.setdefault("component_type", "datastore")
    return Check(name, check, secrets=secrets, **options)


def alembic_heads(alembic: Any) -> list[str]:
    """The head revisions of an Alembic project: an ``alembic.ini`` path, a ``Config`` or a
    ``ScriptDirectory``."""
    try:
        from alembic.config import Config
        from alembic.script import ScriptDirectory
    except ImportError:
        raise ConfigurationError("alembic= needs Alembic: pip install alembic") from None
    if isinstance(alembic, (str, os.PathLike)):
        path = Path(alembic)
        if not path.is_file():
            raise ConfigurationError(
                f"alembic={str(path)!r}: no such file; give the path of alembic.ini"
            )
        alembic = Config(str(path))
    script = (
        alembic if isinstance(alembic, ScriptDirectory) else ScriptDirectory.from_config(alembic)
    )
    heads = list(script.get_heads())
    if not heads:
        raise ConfigurationError(f"the Alembic scripts in {script.dir} have no revision yet")
    return heads


def redis(client: Any, *, name: str = "redis", **options: Unpack[CheckOptions]) -> Check:
    """Redis answers ``PING``: a redis-py client (sync or asyncio) or a ``redis://`` URL.

    A URL gets a sync client of the check's own whose socket timeouts are the check's.
    """
    try:
        import redis as redis_py
        import redis.asyncio as redis_asyncio
    except ImportError:
        raise ConfigurationError(
            "the Redis check needs redis-py: pip install 'zerodown[redis]'"
        ) from None
    secrets: tuple[str, ...] = ()
    if isinstance(client, str):
        secrets = (client,)
        socket_timeout = _socket_timeout(options)
        client = redis_py.Redis.from_url(
            client, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
    options.setdefault("component_type", "datastore")
    if isinstance(client, redis_asyncio.Redis):
        asyncio_client = client

        async def ping_async() -> dict[str, object]:
            started = time.monotonic()
            await asyncio_client.ping()
            return {"observedValue": _milliseconds(started), "observedUnit": "ms"}

        return Check(name, ping_async, secrets=secrets, **options)
    sync_client = client

    def ping() -> dict[str, object]:
        started = time.monotonic()
        sync_client.ping()
        return {"observedValue": _milliseconds(started), "observedUnit": "ms"}

    return Check(name, ping, secrets=secrets, **options)


def disk_space(
    path: str = "/",
    *,
    min_free_ratio: float | None = None,
    min_free_bytes: int | None = None,
    name: str = "disk",
    **options: Unpack[CheckOptions],
) -> Check:
    """The file system holding ``path`` has room: at least ``min_free_ratio`` of it (5% by
    default) and ``min_free_bytes``."""
    if min_free_ratio is None and min_free_bytes is None:
        min_free_ratio = 0.05
    if min_free_ratio is not None and not 0 <= min_free_ratio <= 1:
        raise ConfigurationError(f"min_free_ratio must be between 0 and 1, got {min_free_ratio}")

    def check() -> dict[str, object]:
        usage = shutil.disk_usage(path)
        ratio = usage.free / usage.total if usage.total else 0.0
        result: dict[str, object] = {
            "observedValue": round(ratio * 100, 2),
            "observedUnit": "percent free",
            "freeBytes": usage.free,
            "totalBytes": usage.total,
        }
        short = []
        if min_free_ratio is not None and ratio < min_free_ratio:
            short.append(f"{ratio:.1%} free, below {min_free_ratio:.1%}")
        if min_free_bytes is not None and usage.free < min_free_bytes:
            short.append(f"{usage.free} bytes free, below {min_free_bytes}")
        if short:
            result.update(status="fail", output="; ".join(short))
        return result

    options.setdefault("component_type", "system")
    return Check(name, check, **options)


def http(
    url: str,
    *,
    expected_status: Collection[int] = range(200, 300),
    method: str = "GET",
    headers: dict[str, str] | None = None,
    name: str = "http",
    **options: Unpack[CheckOptions],
) -> Check:
    """An HTTP dependency answers ``url`` with a status in ``expected_status``.

    Redirects are not followed: a dependency that redirects its health URL is worth
    knowing about, so list 3xx statuses if they are fine.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise ConfigurationError(f"the http check needs an http:// or https:// URL, got {url!r}")
    # Imported here: urllib.request brings ssl and email, which `import zerodown` need not.
    from urllib.error import HTTPError
    from urllib.request import HTTPRedirectHandler, Request, build_opener

    class NoRedirects(HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    socket_timeout = _socket_timeout(options)
    opener = build_opener(NoRedirects)
    request_headers = {"User-Agent": "zerodown-health", **(headers or {})}

    def check() -> dict[str, object]:
        started = time.monotonic()
        request = Request(url, method=method, headers=request_headers)
        try:
            with opener.open(request, timeout=socket_timeout) as response:
                status = response.status
        except HTTPError as error:
            status = error.code
        result: dict[str, object] = {
            "observedValue": _milliseconds(started),
            "observedUnit": "ms",
            "httpStatus": status,
        }
        if status not in expected_status:
            result.update(status="fail", output=f"answered HTTP {status}")
        return result

    secrets = tuple(value for value in (headers or {}).values())
    options.setdefault("component_type", "http")
    return Check(name, check, secrets=(url, *secrets), **options)


def _deadline(options: CheckOptions) -> float:
    """The seconds the check is given (:attr:`Check.timeout`)."""
    return options.get("timeout", DEFAULT_CHECK_TIMEOUT)


def _socket_timeout(options: CheckOptions) -> float:
    """The timeout for a socket a check opens: a second past the check's own deadline, which
    reports a timeout the same way for every check; the socket's only ends the thread that
    was left waiting."""
    return _deadline(options) + 1.0


# -- the process itself --------------------------------------------------------------------


def _process_check_defaults(options: CheckOptions) -> None:
    # Nothing remote to protect: read afresh on every probe, no backoff.
    options.setdefault("groups", (LIVENESS,))
    options.setdefault("cache_ttl", 0.0)
    options.setdefault("max_backoff", 0.0)
    options.setdefault("component_type", "system")


class _LagMonitor:
    """Ticks on an event loop and remembers how late each tick woke, for ``window`` s."""

    def __init__(self, tick: float, window: float) -> None:
        self._tick = tick
        self._window = window
        self._samples: deque[tuple[float, float]] = deque()
        self.task = asyncio.get_running_loop().create_task(self._run(), name="zerodown-lag")

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self._tick)
            now = time.monotonic()
            self._samples.append((now, now - before - self._tick))
            while self._samples and self._samples[0][0] < now - self._window:
                self._samples.popleft()

    def worst(self) -> float:
        return max((late for _, late in self._samples), default=0.0)


def event_loop_lag(
    *,
    max_lag: float = 2.0,
    window: float = 10.0,
    tick: float = 0.25,
    name: str = "event_loop",
    **options: Unpack[CheckOptions],
) -> Check:
    """The event loop ran a timer no more than ``max_lag`` s late in the last ``window`` s.

    A liveness check: a loop stuck in blocking code answers nothing, and the probe that
    finally runs after the block sees it. The ASGI middleware adds it by default.
    """
    monitors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LagMonitor] = (
        weakref.WeakKeyDictionary()
    )

    async def check() -> dict[str, object]:
        loop = asyncio.get_running_loop()
        monitor = monitors.get(loop)
        if monitor is None or monitor.task.done():
            monitor = monitors[loop] = _LagMonitor(tick, window)
        worst = monitor.worst()
        result: dict[str, object] = {
            "observedValue": round(worst * 1000, 1),
            "observedUnit": "ms",
        }
        if worst > max_lag:
            result.update(
                status="fail",
                output=f"the event loop was blocked for {worst:.2f}s "
                f"(more than {max_lag:g}s) in the last {window:g}s",
            )
        return result

    _process_check_defaults(options)
    return Check(name, check, **options)


def stuck_threads(
    *,
    limit: float = 60.0,
    threads: int | None = None,
    lifecycle: Lifecycle | None = None,
    name: str = "worker_threads",
    **options: Unpack[CheckOptions],
) -> Check:
    """Not every worker thread is stuck in a request older than ``limit`` s (WSGI).

    The thread answering the probe is free, so the check fails when all the others are
    stuck. ``threads`` defaults to gunicorn's ``threads`` under the zerodown hooks. With one
    thread per process the probe cannot be answered while it is stuck, so this check never
    fails there; gunicorn's ``timeout`` restarts such a worker.
    """

    def check() -> dict[str, object]:
        owner = lifecycle or get_lifecycle()
        count = threads or owner.server.worker_threads or 1
        stuck = owner.requests_older_than(limit)
        result: dict[str, object] = {
            "observedValue": stuck,
            "observedUnit": "stuck threads",
            "threads": count,
        }
        if count > 1 and stuck >= count - 1:
            result.update(
                status="fail",
                output=f"{stuck} of {count} worker threads have been in one request for "
                f"more than {limit:g}s",
            )
        return result

    _process_check_defaults(options)
    return Check(name, check, **options)
