"""gunicorn config for the examples, with zerodown's hooks.

    gunicorn -c examples/gunicorn.conf.py -k gthread --threads 8 examples.flask_app:app
    gunicorn -c examples/gunicorn.conf.py -k sync examples.flask_app:app
    gunicorn -c examples/gunicorn.conf.py -k zerodown.gunicorn.UvicornWorker \
        examples.starlette_app:app
    gunicorn -c examples/gunicorn.conf.py -k asgi --keep-alive 15 examples.starlette_app:app

Threads are set on the command line: gunicorn turns a sync worker with threads into gthread.
The lame-duck delay comes from ZERODOWN_SHUTDOWN_DELAY (default 5 s) and is spent before
graceful_timeout starts, so the pod needs terminationGracePeriodSeconds of at least
ZERODOWN_SHUTDOWN_DELAY + graceful_timeout + 2 (here 5 + 20 + 2 = 27; Kubernetes' default 30
fits). docs/gunicorn.md explains each setting.
"""

import os

from zerodown.gunicorn import *  # noqa: F403

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Above the proxy's idle timeout for upstream connections (60 s for most), so the proxy
# always closes an idle connection first and never sends a request on one gunicorn closes.
keepalive = 65
# The longest request must fit. An asgi worker also needs keepalive below it (an idle
# kept-alive connection holds a stopping asgi worker), hence --keep-alive 15 above.
graceful_timeout = 20
timeout = 30
