"""Health checks against the real things: redis-server, PostgreSQL, an HTTP server, a disk."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis as redis_py
import redis.asyncio as redis_asyncio

from tests.bed import Instance, ProcessGroup, Service
from zerodown import ConfigurationError, Health
from zerodown.health import Check, disk_space, migrations_applied, postgres, redis
from zerodown.health import http as http_check

TOKEN = "health-token"


def get(port: int, path: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def serve(procs: ProcessGroup, **env: str) -> Instance:
    return procs.uvicorn("tests.apps.health_app:app", env={"ZERODOWN_HEALTH_TOKEN": TOKEN, **env})


def run(checks: list[Check]) -> dict[str, tuple[str, str]]:
    """Run ``checks`` once in a fresh registry: each one's status and output."""

    async def main() -> dict[str, tuple[str, str]]:
        health = Health()
        for check in checks:
            health.add(check)
        report = await health.run(health.checks)
        return {c.name: (c.shown_status(r), r.output) for c, r in report.results}

    return asyncio.run(main())


# -- Redis -----------------------------------------------------------------------------------


def test_readiness_follows_redis_down_and_up_while_liveness_stays(procs: ProcessGroup) -> None:
    server = procs.redis()
    instance = serve(procs, REDIS_URL=server.url)
    assert get(instance.port, "/readyz")[0] == 200
    server.process.stop()
    stopped = time.monotonic()
    while (answer := get(instance.port, "/readyz", TOKEN))[0] != 503:
        assert get(instance.port, "/livez")[0] == 200
        # One cache TTL (1 s), plus the probe's own round trip on a busy machine.
        assert time.monotonic() - stopped < 1.5, "readiness still passed after one cache TTL"
        time.sleep(0.05)
    body = answer[1]
    assert body["status"] == "fail"
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["redis"][0]["status"] == "fail"
    assert "Connection" in checks["redis"][0]["output"]
    assert get(instance.port, "/readyz")[1] == {"status": "fail", "phase": "ready"}

    procs.redis(port=server.port)
    deadline = time.monotonic() + 15  # the backoff reaches 5 s at most
    while get(instance.port, "/readyz")[0] != 200:
        assert get(instance.port, "/livez")[0] == 200
        assert time.monotonic() < deadline, "readiness did not come back with redis"
        time.sleep(0.2)


def test_redis_checks_with_each_kind_of_client(procs: ProcessGroup) -> None:
    server = procs.redis()

    async def main() -> dict[str, str]:
        health = Health()
        asyncio_client = redis_asyncio.Redis.from_url(server.url)
        health.add(redis(asyncio_client, name="asyncio"))
        health.add(redis(redis_py.Redis.from_url(server.url), name="sync"))
        health.add(redis(server.url, name="url"))
        health.add(redis("redis://:pa55word@127.0.0.1:1/0", name="dead"))
        try:
            report = await health.run(health.checks)
        finally:
            await asyncio_client.aclose()
        return {check.name: result.status for check, result in report.results}

    assert asyncio.run(main()) == {"asyncio": "pass", "sync": "pass", "url": "pass", "dead": "fail"}


# -- PostgreSQL ------------------------------------------------------------------------------


def statements(server: Service, text: str) -> int:
    return sum(line.rstrip().endswith(text) for line in server.process.log_text().splitlines())


def test_200_concurrent_probes_make_one_database_round_trip(
    procs: ProcessGroup, postgres_server: Service
) -> None:
    instance = serve(procs, DATABASE_URL=postgres_server.url, CACHE_TTL="60")
    before = statements(postgres_server, ": SELECT 1")

    async def probe_all() -> list[int]:
        async def one() -> int:
            reader, writer = await asyncio.open_connection("127.0.0.1", instance.port)
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            status = int((await reader.readline()).split()[1])
            writer.close()
            return status

        return await asyncio.gather(*(one() for _ in range(200)))

    assert asyncio.run(probe_all()) == [200] * 200
    time.sleep(0.5)  # the server writes its log line after answering
    assert statements(postgres_server, ": SELECT 1") - before == 1


def test_a_non_critical_failure_warns_and_never_shows_the_dsn(
    procs: ProcessGroup, postgres_server: Service
) -> None:
    port = postgres_server.port + 1 if postgres_server.port < 65535 else 1
    dsn = f"postgresql://reporter:hunter2-secret@127.0.0.1:{port}/reports"
    instance = serve(procs, BROKEN_DSN=dsn)
    status, body = get(instance.port, "/readyz")
    assert (status, body) == (200, {"status": "warn", "phase": "ready"})
    status, detailed = get(instance.port, "/readyz?verbose", TOKEN)
    assert status == 200
    checks = detailed["checks"]
    assert isinstance(checks, dict)
    assert checks["reports-db"][0]["status"] == "warn"
    assert checks["reports-db"][0]["componentType"] == "datastore"
    # Without authorization ?verbose is ignored: the plain probe's body.
    assert get(instance.port, "/readyz?verbose", "wrong-token")[1] == body
    everything = json.dumps(detailed) + instance.process.log_text()
    assert "hunter2" not in everything
    assert "reporter" not in everything


def test_postgres_through_a_pool_a_dsn_and_a_saturated_pool(postgres_server: Service) -> None:
    async def main() -> dict[str, tuple[str, str]]:
        pool = await asyncpg.create_pool(postgres_server.url, min_size=1, max_size=2)
        health = Health()
        health.add(postgres(pool, name="pool"))
        health.add(postgres(postgres_server.url, name="dsn"))
        health.add(postgres(lambda: pool, name="factory"))
        try:
            passing = await health.run(health.checks)
            async with pool.acquire(), pool.acquire():
                saturated = Health()
                saturated.add(postgres(pool, name="pool"))
                held = await saturated.run(saturated.checks)
        finally:
            await pool.close()
        results = {c.name: (c.shown_status(r), r.output) for c, r in passing.results}
        check, result = held.results[0]
        results["saturated"] = (check.shown_status(result), result.output)
        return results

    results = asyncio.run(main())
    assert results["pool"] == ("pass", "")
    assert results["dsn"] == ("pass", "")
    assert results["factory"] == ("pass", "")
    assert results["saturated"][0] == "warn"
    assert "pool saturated" in results["saturated"][1]


@pytest.fixture
def database(postgres_server: Service) -> Iterator[str]:
    """A database of the test's own on the session's PostgreSQL."""
    name = f"migrations_{time.monotonic_ns()}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(postgres_server.url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield postgres_server.url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(admin(f"DROP DATABASE {name}"))


def execute(dsn: str, *statements: str) -> None:
    async def main() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(main())


def test_the_migrations_check_reads_a_real_alembic_version_table(database: str) -> None:
    check = migrations_applied(database, {"ae10", "b7c2"})
    status, output = run([check])["migrations"]
    assert status == "fail"
    assert "run the migrations" in output

    execute(database, "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
    assert run([check])["migrations"] == ("fail", "the schema version table is empty")

    execute(database, "INSERT INTO alembic_version VALUES ('ae10')")
    assert run([check])["migrations"] == ("pass", "")

    execute(database, "UPDATE alembic_version SET version_num = 'c9d9'")
    status, output = run([check])["migrations"]
    assert status == "fail"
    assert output == "the database is at c9d9; this release runs on ae10, b7c2"


def test_the_postgres_checks_take_sqlalchemy_engines_and_urls(database: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    rest = database.partition("://")[2]
    engine = create_engine(f"postgresql+psycopg://{rest}")
    # An async engine's pooled connections belong to one event loop (the app's, which the
    # middleware runs async checks on); each run() here has a loop of its own.
    async_engine = create_async_engine(f"postgresql+asyncpg://{rest}", poolclass=NullPool)
    try:
        targets = {
            "engine": engine,
            "async-engine": async_engine,
            "psycopg-url": f"postgresql+psycopg://{rest}",
            "asyncpg-url": f"postgresql+asyncpg://{rest}",
        }
        checks = [postgres(target, name=name) for name, target in targets.items()]
        migrations = [
            migrations_applied(target, "ae10", name=f"migrations-{name}")
            for name, target in targets.items()
        ]
        assert {name: status for name, (status, _) in run(checks).items()} == dict.fromkeys(
            targets, "pass"
        )
        assert run(migrations) == {
            f"migrations-{name}": ("fail", "no schema version table: run the migrations")
            for name in targets
        }
        execute(
            database,
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
            "INSERT INTO alembic_version VALUES ('ae10')",
        )
        assert {status for status, _ in run(migrations).values()} == {"pass"}
    finally:
        engine.dispose()
        asyncio.run(async_engine.dispose())


def test_the_migrations_check_takes_its_revisions_from_alembic(
    database: str, tmp_path: Path
) -> None:
    from alembic import command
    from alembic.config import Config

    command.init(Config(str(tmp_path / "alembic.ini")), str(tmp_path / "migrations"))
    # Without a file name: its env.py would otherwise run logging.config.fileConfig, which
    # disables every logger of this process (the suite's log assertions with them).
    config = Config()
    config.set_main_option("script_location", str(tmp_path / "migrations"))
    config.set_main_option("sqlalchemy.url", "postgresql+psycopg://" + database.partition("://")[2])
    command.revision(config, "create notes", rev_id="0001")
    command.revision(config, "add a column", rev_id="0002")
    check = migrations_applied(database, alembic=str(tmp_path / "alembic.ini"))
    command.upgrade(config, "0001")
    assert run([check])["migrations"] == (
        "fail",
        "the database is at 0001; this release runs on 0002",
    )
    command.upgrade(config, "head")
    assert run([check])["migrations"] == ("pass", "")
    with pytest.raises(ConfigurationError, match="one of them"):
        migrations_applied(database)
    with pytest.raises(ConfigurationError, match="no such file"):
        migrations_applied(database, alembic=str(tmp_path / "missing.ini"))


# -- HTTP and disk ---------------------------------------------------------------------------


def test_http_checks_against_a_real_server(procs: ProcessGroup) -> None:
    instance = procs.uvicorn("examples.starlette_app:app")
    results = run(
        [
            http_check(f"{instance.url}/", name="ok"),
            http_check(f"{instance.url}/slow?ms=nope", name="bad-request"),
            http_check(f"{instance.url}/slow?ms=400", name="slow-ok", timeout=2.0),
            http_check(f"{instance.url}/slow?ms=3000", name="too-slow", timeout=0.3),
            http_check("http://user:pw@127.0.0.1:1/", name="refused"),
        ]
    )
    assert results["ok"] == ("pass", "")
    assert results["bad-request"] == ("fail", "answered HTTP 400")
    assert results["slow-ok"] == ("pass", "")
    assert results["too-slow"] == ("fail", "timed out after 0.3s")
    assert results["refused"][0] == "fail"


def test_disk_space_against_the_real_file_system(tmp_path: object) -> None:
    results = run(
        [
            disk_space(str(tmp_path), name="roomy", min_free_ratio=0.0),
            disk_space(str(tmp_path), name="full", min_free_ratio=1.0),
            disk_space(str(tmp_path), name="bytes", min_free_bytes=2**62),
        ]
    )
    assert results["roomy"] == ("pass", "")
    assert results["full"][0] == "fail"
    assert "below 100.0%" in results["full"][1]
    assert results["bytes"][0] == "fail"


@pytest.mark.parametrize("example", ["starlette_app", "fastapi_app", "flask_app"])
def test_the_examples_check_the_dependencies_the_environment_names(
    procs: ProcessGroup, postgres_server: Service, example: str
) -> None:
    server = procs.redis()
    env = {
        "ZERODOWN_HEALTH_TOKEN": TOKEN,
        "DATABASE_URL": postgres_server.url,
        "REDIS_URL": server.url,
        # With REDIS_URL the examples keep sessions too, which need their secrets.
        "ZERODOWN_SESSION_SECRETS": "health-test-secret-32-characters",
    }
    app = f"examples.{example}:app"
    if example == "flask_app":
        instance = procs.gunicorn(app, env=env, args=["-k", "gthread", "--threads", "2"])
    else:
        instance = procs.uvicorn(app, env=env)
    status, body = get(instance.port, "/readyz?verbose", TOKEN)
    assert status == 200, body
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert {name: check[0]["status"] for name, check in checks.items()} == {
        "postgres": "pass",
        "redis": "pass",
    }
    server.process.stop()
    deadline = time.monotonic() + 5
    while get(instance.port, "/readyz")[0] != 503:
        assert time.monotonic() < deadline, "readiness ignored the dead redis"
        time.sleep(0.1)
