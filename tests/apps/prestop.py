"""The Starlette and Flask examples with the preStop endpoint served at ``/prestop``."""

from __future__ import annotations

import zerodown
from examples import flask_app, starlette_app

PATHS = zerodown.ProbePaths(prestop="/prestop")

asgi_app = zerodown.ASGIMiddleware(starlette_app.app.app, probe_paths=PATHS)
flask_app.app.wsgi_app = zerodown.WSGIMiddleware(flask_app.app.wsgi_app.app, probe_paths=PATHS)  # type: ignore[attr-defined,method-assign]
wsgi_app = flask_app.app
