"""Tests of ``zerodown migrations check`` and ``zerodown.migrations``."""

from __future__ import annotations

import threading
import time

import psycopg


def hold_open(url: str, statement: str, seconds: float) -> threading.Thread:
    """A transaction of the app's that runs ``statement`` and stays open ``seconds`` (a
    report, a slow request) before it commits; returns once the statement ran."""
    ran = threading.Event()

    def hold() -> None:
        with psycopg.connect(url) as connection:
            connection.execute(statement)
            ran.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    ran.wait(10)
    return thread
