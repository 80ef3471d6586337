"""A complete gunicorn config of zerodown's hooks: ``gunicorn -c python:zerodown.gunicorn_conf``."""

from zerodown.gunicorn import *  # noqa: F403
