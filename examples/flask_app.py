"""A Flask app wrapped by zerodown.

gunicorn -k gthread --threads 8 examples.flask_app:app
"""

from __future__ import annotations

import time

from flask import Flask, Response, jsonify, request, session

import zerodown
from examples._common import RELEASE, add_to_cart, register_checks, session_options, sleep_ms
from zerodown.sessions import init_flask

app = Flask(__name__)
register_checks(zerodown.get_health())


@app.get("/")
def index() -> Response:
    response = jsonify(hello="world")
    response.headers["X-Release"] = RELEASE
    return response


@app.get("/slow")
def slow() -> tuple[Response, int] | Response:
    try:
        ms = sleep_ms(request.args.get("ms"))
    except ValueError as error:
        return jsonify(error=str(error)), 400
    time.sleep(ms / 1000)
    response = jsonify(slept_ms=ms)
    response.headers["X-Release"] = RELEASE
    return response


sessions = session_options()
if sessions is not None:
    # Sessions first, zerodown's middleware last, so that it is the outermost: it answers
    # the probes before a session is looked at and counts every request, its session's
    # save included, as in flight.
    init_flask(app, **sessions)

    @app.get("/cart")
    def cart() -> Response:
        return jsonify(items=session.get("cart", []))

    @app.post("/cart/add")
    def cart_add() -> tuple[Response, int] | Response:
        try:
            items = add_to_cart(session, request.args.get("item"))
        except ValueError as error:
            return jsonify(error=str(error)), 400
        response = jsonify(items=items)
        response.headers["X-Release"] = RELEASE
        return response


app.wsgi_app = zerodown.WSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]
