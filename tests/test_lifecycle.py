from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from zerodown import Lifecycle, Phase, Settings


def make(**overrides: float) -> Lifecycle:
    return Lifecycle(settings=Settings.load(environ={}, **overrides))


def test_phases_move_forward_only() -> None:
    lifecycle = make()
    assert lifecycle.phase is Phase.STARTING
    lifecycle.mark_ready()
    assert lifecycle.phase is Phase.READY
    assert lifecycle.start_draining() is True
    assert lifecycle.start_draining() is False
    lifecycle.mark_ready()
    assert lifecycle.phase is Phase.DRAINING
    asyncio.run(lifecycle.shutdown())
    assert lifecycle.phase is Phase.STOPPED
    assert lifecycle.is_draining


def test_counts_requests_from_many_threads() -> None:
    lifecycle = make()
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for _ in range(2000):
            lifecycle.request_finished(lifecycle.request_started())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert lifecycle.in_flight == 0
    assert lifecycle.oldest_request_age is None


def test_oldest_request_age_follows_the_oldest_still_running() -> None:
    lifecycle = make()
    first = lifecycle.request_started()
    time.sleep(0.05)
    second = lifecycle.request_started()
    assert lifecycle.in_flight == 2
    age = lifecycle.oldest_request_age
    assert age is not None
    assert age >= 0.05
    lifecycle.request_finished(first)
    younger = lifecycle.oldest_request_age
    assert younger is not None
    assert younger < age
    lifecycle.request_finished(second)
    lifecycle.request_finished(second)  # a double finish is harmless
    assert lifecycle.in_flight == 0


def test_on_draining_runs_once_and_survives_a_failing_callback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lifecycle = make()
    calls: list[str] = []

    @lifecycle.on_draining
    def broken() -> None:
        raise RuntimeError("boom")

    lifecycle.on_draining(lambda: calls.append("told"))
    lifecycle.start_draining("SIGTERM received")
    lifecycle.start_draining("SIGTERM received")
    assert calls == ["told"]
    assert "on_draining callback" in caplog.text


def test_shutdown_callbacks_run_in_reverse_bounded_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="zerodown")
    lifecycle = make(callback_timeout=0.3)
    order: list[str] = []

    lifecycle.on_shutdown(lambda: order.append("sync, registered first"))

    @lifecycle.on_shutdown
    async def close_pool() -> None:
        order.append("async")

    @lifecycle.on_shutdown
    def fails() -> None:
        order.append("fails")
        raise RuntimeError("pool already closed")

    @lifecycle.on_shutdown
    async def hangs() -> None:
        order.append("hangs")
        await asyncio.sleep(60)

    started = time.monotonic()
    asyncio.run(lifecycle.shutdown())
    assert time.monotonic() - started < 5
    assert order == ["hangs", "fails", "async", "sync, registered first"]
    assert "hangs timed out after 0.3s" in caplog.text
    assert "fails failed" in caplog.text
    assert lifecycle.phase is Phase.STOPPED
    asyncio.run(lifecycle.shutdown())
    assert len(order) == 4, "a second shutdown must not run the callbacks again"


def test_a_blocking_sync_callback_does_not_block_the_bound() -> None:
    lifecycle = make()
    lifecycle.on_shutdown(lambda: time.sleep(3), timeout=0.2)
    started = time.monotonic()
    lifecycle.shutdown_sync()
    assert time.monotonic() - started < 2


def test_budget_fits_or_says_what_to_change() -> None:
    roomy = make(shutdown_delay=5, drain_timeout=15, grace_period=30)
    assert roomy.budget_problems() == []
    assert make(shutdown_delay=5).budget_problems() == [], "no grace period known: no check"

    tight = make(shutdown_delay=10, drain_timeout=20, grace_period=30)
    tight.on_shutdown(lambda: None, timeout=5)
    (problem,) = tight.budget_problems()
    assert "37.0s" in problem
    assert "terminationGracePeriodSeconds to at least 37" in problem
    assert make(shutdown_delay=10, grace_period=30).budget_problems(drain_timeout=5) == []
