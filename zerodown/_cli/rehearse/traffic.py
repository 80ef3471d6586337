"""``--traffic FILE.toml``: the app's traffic declared instead of scripted.

Weighted requests, each one iteration::

    [[request]]
    path = "/notes"            # {vu}, {iteration} and {run} (the run's id) filled in
    weight = 3                 # default 1
    method = "GET"             # default GET
    name = "list notes"        # what the report judges it under; default METHOD PATH
    expect = [200]             # the statuses that pass its check; default 200-399
    headers = { Accept = "application/json" }
    query = { page = "1" }
    json = { text = "hi" }     # or form = { ... }; at most one
    anonymous = true           # sent without logging in, its answer not checked for it

and, optionally, users: every VU is one, with its own cookies, who logs in before its
first request (registering first, if told how) and whose answers must show the logged-in
marker; a missing marker is a failed ``logged in`` check, a user logged out::

    [users]
    register = { method = "POST", path = "/register", json = { username = "u{vu}", ... } }
    login = { method = "POST", path = "/login", json = { username = "u{vu}", ... } }
    logged_in = { status = [200, 201] } # or { header = "X-User" }, or { body = "Log out" }
    logout = { method = "POST", path = "/logout", every = 20 }   # every 20th iteration

The rehearsal's k6 entry script interprets the result of :func:`load_traffic`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .haproxy import path_problem

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STEP_KEYS = frozenset({"method", "path", "name", "expect", "headers", "query", "json", "form"})
_REQUEST_KEYS = _STEP_KEYS | {"weight", "anonymous"}
_USERS_KEYS = frozenset({"register", "login", "logged_in", "logout"})
_MARKERS = frozenset({"status", "header", "body"})


class TrafficError(ValueError):
    """The traffic file is not one the rehearsal can send; the message says where."""


def load_traffic(path: Path) -> dict[str, Any]:
    """The traffic file as the entry script takes it, every part checked."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise TrafficError(f"--traffic {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise TrafficError(f"--traffic {path} is not TOML: {error}") from None
    where = f"--traffic {path}"
    _no_other_keys(raw, {"request", "users"}, where)
    requests = raw.get("request")
    if not isinstance(requests, list) or not requests:
        raise TrafficError(f"{where} has no [[request]]: declare at least one")
    traffic: dict[str, Any] = {
        "requests": [
            _request(entry, f"{where}, request {n + 1}") for n, entry in enumerate(requests)
        ]
    }
    if "users" in raw:
        traffic["users"] = _users(raw["users"], f"{where}, [users]")
    elif any(not request["anonymous"] for request in traffic["requests"]):
        for request in traffic["requests"]:
            request["anonymous"] = True  # without users every request is anonymous
    return traffic


def _request(entry: Any, where: str) -> dict[str, Any]:
    table = _table(entry, where)
    _no_other_keys(table, _REQUEST_KEYS, where)
    request = _step({k: v for k, v in table.items() if k not in ("weight", "anonymous")}, where)
    weight = table.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
        raise TrafficError(f"{where}: weight must be a number above 0")
    anonymous = table.get("anonymous", False)
    if not isinstance(anonymous, bool):
        raise TrafficError(f"{where}: anonymous must be true or false")
    return {**request, "weight": float(weight), "anonymous": anonymous}


def _users(entry: Any, where: str) -> dict[str, Any]:
    table = _table(entry, where)
    _no_other_keys(table, _USERS_KEYS, where)
    if "login" not in table or "logged_in" not in table:
        raise TrafficError(f"{where} needs login and logged_in")
    users: dict[str, Any] = {
        "login": _step(_table(table["login"], f"{where} login"), f"{where} login")
    }
    if "register" in table:
        users["register"] = _step(
            _table(table["register"], f"{where} register"), f"{where} register"
        )
    marker = _table(table["logged_in"], f"{where} logged_in")
    if len(marker) != 1 or not set(marker) <= _MARKERS:
        raise TrafficError(
            f'{where} logged_in is one of {{ status = 200 }}, {{ header = "X-User" }}, '
            f'{{ body = "..." }}'
        )
    ((kind, value),) = marker.items()
    if kind == "status":
        statuses = value if isinstance(value, list) else [value]
        if not statuses or not all(map(_is_status, statuses)):
            raise TrafficError(f"{where} logged_in: status = {value!r} is not a status or a list")
        value = statuses
    elif not isinstance(value, str):
        raise TrafficError(f"{where} logged_in: {kind} = {value!r} is not a string")
    users["logged_in"] = {"kind": kind, "value": value.lower() if kind == "header" else value}
    if "logout" in table:
        logout = dict(_table(table["logout"], f"{where} logout"))
        every = logout.pop("every", 20)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise TrafficError(
                f"{where} logout: every must be a whole number of iterations, 1 or more"
            )
        users["logout"] = {**_step(logout, f"{where} logout"), "every": every}
    return users


def _step(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    _no_other_keys(table, _STEP_KEYS, where)
    method = str(table.get("method", "GET")).upper()
    if method not in METHODS:
        raise TrafficError(f"{where}: method {method!r} is not one of {', '.join(sorted(METHODS))}")
    path = table.get("path")
    if not isinstance(path, str):
        raise TrafficError(f'{where} needs a path, e.g. path = "/"')
    if (problem := path_problem(path)) is not None:
        raise TrafficError(f"{where}: path {problem}")
    expect = table.get("expect")
    if expect is not None and (
        not isinstance(expect, list) or not expect or not all(map(_is_status, expect))
    ):
        raise TrafficError(f"{where}: expect is a list of statuses, e.g. expect = [200, 201]")
    if "json" in table and "form" in table:
        raise TrafficError(f"{where}: give json or form, not both")
    step: dict[str, Any] = {
        "method": method,
        "path": path,
        "name": str(table.get("name") or f"{method} {path.partition('?')[0]}"),
        "expect": expect,
        "headers": _strings(table.get("headers", {}), f"{where} headers"),
        "query": _strings(table.get("query", {}), f"{where} query"),
    }
    if "json" in table:
        step["json"] = table["json"]
    if "form" in table:
        step["form"] = _strings(table["form"], f"{where} form")
    return step


def _table(entry: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(entry, dict):
        raise TrafficError(f"{where} must be a table")
    return entry


def _strings(entry: Any, where: str) -> dict[str, str]:
    table = _table(entry, where)
    if not all(
        isinstance(value, str | int | float) and not isinstance(value, bool)
        for value in table.values()
    ):
        raise TrafficError(f"{where}: every value must be a string or a number")
    return {str(key): str(value) for key, value in table.items()}


def _no_other_keys(
    table: Mapping[str, Any], allowed: frozenset[str] | set[str], where: str
) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise TrafficError(
            f"{where}: unknown key {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
        )


def _is_status(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599
