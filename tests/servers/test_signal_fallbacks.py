"""Where zerodown cannot hold the server's SIGTERM back, it says so once and what to do."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from tests.bed import ProcessGroup
from zerodown import Lifecycle, Settings
from zerodown._signals import install_signal_relay


def test_gunicorn_asgi_worker_gets_one_warning_and_still_serves(procs: ProcessGroup) -> None:
    instance = procs.gunicorn(
        "examples.starlette_app:app",
        args=["-k", "asgi", "--workers", "1"],
    )
    log = instance.process.log_text()
    assert log.count("handles SIGTERM through asyncio") == 1
    assert "preStop sleep" in log


def test_a_server_outside_the_main_thread_gets_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="zerodown")
    lifecycle = Lifecycle(settings=Settings.load(environ={}))
    relays: list[object] = []

    def serve_in_thread() -> None:
        async def startup() -> None:
            relays.append(install_signal_relay(lifecycle))

        asyncio.run(startup())

    thread = threading.Thread(target=serve_in_thread)
    thread.start()
    thread.join()
    assert relays == [None]
    assert "outside the main thread" in caplog.text
    assert "preStop sleep" in caplog.text


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_signals_owned_by_an_event_loop_are_not_chained(
    loop_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    import signal

    import uvloop

    lifecycle = Lifecycle(settings=Settings.load(environ={}))
    loop = uvloop.new_event_loop() if loop_kind == "uvloop" else asyncio.new_event_loop()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        loop.add_signal_handler(signal.SIGTERM, lambda: None)

        async def startup() -> object:
            return install_signal_relay(lifecycle)

        assert loop.run_until_complete(startup()) is None
        assert "handles SIGTERM through asyncio" in caplog.text
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        loop.close()
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("server_module", ["hypercorn.asyncio.run", "granian._signals"])
def test_a_loop_whose_sigint_stops_as_sigterm_does_is_held_back_then_given_sigint(
    server_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal
    import sys
    import types

    monkeypatch.setitem(sys.modules, server_module, types.ModuleType(server_module))
    lifecycle = Lifecycle(settings=Settings.load(environ={"ZERODOWN_SHUTDOWN_DELAY": "0.3"}))
    loop = asyncio.new_event_loop()
    stopped: list[tuple[str, float]] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    async def serve() -> float:
        stop = asyncio.Event()

        def graceful_stop(name: str) -> None:
            stopped.append((name, loop.time()))
            stop.set()

        # As hypercorn and granian do: one graceful stop for both signals, on the loop.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, graceful_stop, sig.name)
        assert install_signal_relay(lifecycle) is not None
        signalled = loop.time()
        signal.raise_signal(signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), timeout=5)
        return signalled

    try:
        signalled = loop.run_until_complete(serve())
        assert lifecycle.is_draining
        ((name, at),) = stopped
        assert name == "SIGINT"
        assert at - signalled >= 0.3  # the server's stop began once the delay was over
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler)
        loop.close()
