"""A Flask app on zerodown's sessions in Redis (``REDIS_URL``), for tests under gunicorn."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, session

import zerodown
from zerodown.sessions import RedisStore, init_flask

SECRET = "first-secret-of-32-characters-xx"

flask_app = Flask(__name__)


@flask_app.get("/get")
def get() -> Any:
    return jsonify(dict(session.items()))


init_flask(flask_app, store=RedisStore(os.environ["REDIS_URL"]), secrets=[SECRET])
flask_app.wsgi_app = zerodown.WSGIMiddleware(flask_app.wsgi_app)  # type: ignore[method-assign]
app = flask_app
