"""The test bed itself: each real service starts, answers, and is stopped by PID."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import redis

from tests.bed import ProcessGroup, Service
from zerodown._cli.rehearse.haproxy import ProxyCheck
from zerodown._cli.rehearse.k6 import LoadPlan


def test_redis_server_answers(redis_server: Service) -> None:
    client = redis.Redis.from_url(redis_server.url)
    assert client.ping() is True
    client.close()


def test_postgres_answers(postgres_server: Service) -> None:
    async def select_one() -> int:
        connection = await asyncpg.connect(postgres_server.url)
        try:
            value: int = await connection.fetchval("SELECT 1")
            return value
        finally:
            await connection.close()

    assert asyncio.run(select_one()) == 1


def test_haproxy_checks_readiness_and_k6_records_each_request(procs: ProcessGroup) -> None:
    instance = procs.uvicorn("examples.starlette_app:app")
    proxy = procs.haproxy([instance], check=ProxyCheck(path="/readyz"))
    assert proxy.server_states() == {"s0": "UP"}
    result = procs.load(LoadPlan(proxy.url, rate=40, duration=2, slow_path="/slow?ms=50"))
    outcome = result.result(timeout=30)
    assert len(outcome.records) >= 60, outcome.describe()
    assert not outcome.failed, outcome.describe()
    assert {record.path for record in outcome.records} == {"/", "/slow?ms=50"}
    assert all(record.server == "s0" for record in outcome.records)


def test_stopped_processes_are_gone(procs: ProcessGroup) -> None:
    service = procs.redis()
    procs.stop_all()
    assert service.process.returncode is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=service.port, socket_connect_timeout=0.2).ping()
        except redis.ConnectionError:
            return
        time.sleep(0.05)
    raise AssertionError("redis-server still answers after stop_all()")
