"""Every snippet in the docs runs: Python is executed, configs are checked by the tools that
read them, and every command line is parsed by the program it calls."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import yaml

from tests.bed import REPO, find_nginx
from zerodown._cli.main import build_parser
from zerodown._cli.rehearse.haproxy import find_haproxy

PAGES = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
_FENCE = re.compile(
    r"^(?P<indent> *)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
_INCLUDE = re.compile(r'^ *--8<-- "(?P<path>[^"]+)"$', re.M)
#: Languages that are prose or output, not something to run.
_NOT_RUN = {"text", "", "console-output"}
#: What a page's Python snippets take as given: the reader's own app and clients.
PREAMBLES = {
    "gunicorn.md": """
import zerodown
from starlette.applications import Starlette
app = Starlette()
""",
    "health.md": """
import os
import pathlib
import types
import redis
from sqlalchemy import create_engine
engine = create_engine("postgresql+psycopg://app@127.0.0.1/app")
# alembic="alembic.ini" is the notes example's, as an app's own would be beside it.
os.chdir(pathlib.Path(os.environ["PYTHONPATH"]) / "examples" / "notes")
from starlette.applications import Starlette
app = starlette_app = Starlette()
redis_client = redis.Redis()
DATABASE_URL = "postgresql://app@127.0.0.1/app"
index = types.SimpleNamespace(replication_lag=None)
""",
    "index.md": """
import os
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("ZERODOWN_SESSION_SECRETS", "s" * 32)
""",
    "lifecycle.md": """
import os
import types
from flask import Flask
from starlette.applications import Starlette
api = Starlette()
flask_app = Flask(__name__)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
pool = types.SimpleNamespace(close=None)
broadcaster = types.SimpleNamespace(publish=print)
def flush_metrics() -> None: ...
""",
    "sessions.md": """
import os
from flask import Flask
from starlette.applications import Starlette
from zerodown._sessions.policy import SessionConfig
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("ZERODOWN_SESSION_SECRETS", "s" * 32)
starlette_app = Starlette()
flask_app = Flask(__name__)
wsgi_app = flask_app.wsgi_app
session = SessionConfig(secrets=["s" * 32]).open(None, None, unavailable=False)
session["coupon"] = "SAVE10"
""",
}


@dataclass(frozen=True)
class Snippet:
    page: Path
    lang: str
    body: str
    line: int

    def __str__(self) -> str:
        return f"{self.page.name}:{self.line} ({self.lang})"


def snippets(page: Path) -> list[Snippet]:
    text = page.read_text()
    found = []
    for match in _FENCE.finditer(text):
        indent = len(match["indent"])
        body = "\n".join(line[indent:] for line in match["body"].splitlines())
        body = _INCLUDE.sub(lambda m: (REPO / m["path"]).read_text(), body)
        found.append(Snippet(page, match["lang"], body, text.count("\n", 0, match.start()) + 1))
    return found


ALL = [snippet for page in PAGES for snippet in snippets(page)]


def of(*langs: str) -> list[Snippet]:
    return [snippet for snippet in ALL if snippet.lang in langs]


def test_every_snippet_has_a_language_this_file_runs() -> None:
    runnable = {"python", "yaml", "json", "console", "toml", "nginx", "haproxy", "bash"}
    unknown = [str(s) for s in ALL if s.lang not in runnable | _NOT_RUN]
    assert unknown == []


@pytest.mark.servers
@pytest.mark.parametrize("page", sorted({s.page for s in of("python")}), ids=lambda p: p.name)
def test_python_snippets_run_in_order_on_each_page(page: Path, tmp_path: Path) -> None:
    bodies = [PREAMBLES.get(page.name, ""), *(s.body for s in of("python") if s.page == page)]
    # Each snippet may be a whole module; joined, only the first line may hold this.
    code = "\n\n".join(bodies).replace("from __future__ import annotations\n", "")
    (tmp_path / "snippets.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZERODOWN_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "snippets.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{page.name}:\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("snippet", of("yaml", "json", "toml"), ids=str)
def test_data_snippets_parse(snippet: Snippet) -> None:
    if snippet.lang == "yaml":
        assert list(yaml.safe_load_all(snippet.body))
    elif snippet.lang == "json":
        json.loads(snippet.body)
    else:
        tomllib.loads(snippet.body)


def _commands(snippet: Snippet) -> list[list[str]]:
    """The command lines of a console snippet, continuation lines joined, comments dropped.

    Where lines start with a ``$`` prompt, only those are commands; the rest is output.
    """
    lines = snippet.body.replace("\\\n", " ").splitlines()
    if any(line.startswith("$ ") for line in lines):
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


def _check_command(argv: list[str]) -> None:
    program = argv[0]
    if program == "zerodown":
        build_parser().parse_args(argv[1:])
    elif program == "uvicorn":
        from uvicorn.main import main as uvicorn_main

        uvicorn_main.make_context("uvicorn", argv[1:])
    elif program == "gunicorn":
        from gunicorn.config import Config

        Config().parser().parse_args(argv[1:])
    elif program == "hypercorn":
        import hypercorn.__main__ as hypercorn_main

        # Its main() parses the command line into a Config, then runs it: parse only.
        with mock.patch.object(hypercorn_main, "run", return_value=0):
            assert hypercorn_main.main(argv[1:]) == 0
    elif program == "granian":
        from granian.cli import cli as granian_cli

        granian_cli.make_context("granian", argv[1:])
    elif program == "uwsgi":
        pass  # no parser in Python: test_uwsgi_command_lines_use_its_options
    elif program == "bash":
        assert (REPO / argv[1]).exists(), f"{argv[1]} is not in the repository"
    elif program == "alembic":
        from alembic.config import CommandLine

        CommandLine().parser.parse_args(argv[1:])
    elif program == "export":
        assert all("=" in assignment for assignment in argv[1:]), argv
    elif program not in {"pip", "sudo", "curl", "kubectl", "echo", "python", "python3", "git"}:
        raise AssertionError(f"no check for the command {program!r}: add one here")


@pytest.mark.servers
def test_uwsgi_command_lines_use_its_options() -> None:
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("uwsgi")), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    known = set(re.findall(r"--([a-z0-9-]+)", listed))
    used = {
        arg[2:]
        for snippet in of("console")
        for argv in _commands(snippet)
        if argv[:1] == ["uwsgi"]
        for arg in argv
        if arg.startswith("--")
    }
    assert used, "the docs show uwsgi command lines"
    assert used - known == set()


@pytest.mark.parametrize("snippet", of("console"), ids=str)
def test_command_lines_parse(snippet: Snippet) -> None:
    for argv in _commands(snippet):
        if argv:
            _check_command(argv)


@pytest.mark.servers
@pytest.mark.parametrize("snippet", of("bash"), ids=str)
def test_shell_scripts_parse(snippet: Snippet) -> None:
    done = subprocess.run(
        ["bash", "-n"], input=snippet.body, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.servers
@pytest.mark.parametrize("snippet", of("haproxy"), ids=str)
def test_haproxy_snippets_are_valid_configs(snippet: Snippet, tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(snippet.body + "\n")
    for map_file in re.findall(r"map\(([^,)]+)", snippet.body):
        (tmp_path / map_file).write_text("active blue\n")
    done = subprocess.run(
        [find_haproxy(), "-c", "-f", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.servers
@pytest.mark.parametrize("snippet", of("nginx"), ids=str)
def test_nginx_snippets_are_valid_configs(snippet: Snippet, tmp_path: Path) -> None:
    body = snippet.body
    if "events" not in body:  # a part of the http block, as the docs show it
        body = f"events {{}}\nhttp {{\n{body}\n}}\n"
    (tmp_path / "logs").mkdir()
    (tmp_path / "upstream.inc").write_text("server 127.0.0.1:1;\n")
    (tmp_path / "nginx.conf").write_text(body)
    done = subprocess.run(
        [find_nginx(), "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
