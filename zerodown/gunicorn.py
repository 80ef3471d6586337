"""gunicorn hooks that make every rotation safe: TERM, HUP, ``max_requests`` and USR2.

In ``gunicorn.conf.py``::

    from zerodown.gunicorn import *  # noqa: F403

or, with no config file of your own, ``gunicorn -c python:zerodown.gunicorn_conf``. If your
config defines one of these hooks too, call zerodown's from yours. For ASGI apps, also use
``-k zerodown.gunicorn.UvicornWorker`` (needs ``zerodown[gunicorn]``) or ``-k asgi``.
"""

from __future__ import annotations

from typing import Any

from ._servers.gunicorn import (
    child_exit,
    post_fork,
    pre_fork,
    pre_request,
    when_ready,
    worker_exit,
)

__all__ = ["child_exit", "post_fork", "pre_fork", "pre_request", "when_ready", "worker_exit"]


def __getattr__(name: str) -> Any:
    # Imported on use so that WSGI users need neither uvicorn nor uvicorn-worker.
    if name == "UvicornWorker":
        from ._servers.uvicorn_worker import UvicornWorker

        return UvicornWorker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
