"""The Flask example plus routes that show the WSGI in-flight counting."""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Response, jsonify

import zerodown
from examples.flask_app import app

lifecycle = zerodown.get_lifecycle()


@app.get("/stream")
def stream() -> Response:
    def chunks() -> Iterator[bytes]:
        for _ in range(400):  # bounded: ends by itself after about 20 s
            yield b"x" * 16384
            time.sleep(0.05)

    return Response(chunks(), mimetype="application/octet-stream")


@app.get("/boom")
def boom() -> Response:
    raise RuntimeError("the app failed")


@app.get("/in-flight")
def in_flight() -> Response:
    return jsonify(in_flight=lifecycle.in_flight)
