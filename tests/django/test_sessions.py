"""zerodown.django.sessions against a real redis-server: Django's own session backend tests
(``tests/sessions_tests`` of Django's source distribution, fetched with pip) and zerodown's
guarantees (tests/django/suite), each run by Django's test runner in a child Python."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import django
import pytest

from tests.bed import REPO, Service

pytestmark = pytest.mark.servers

#: Where Django's session tests are kept once fetched (beside the packages they test).
SOURCE = REPO / ".venv" / f"django-{django.__version__}-tests"


@pytest.fixture(scope="module")
def django_tests() -> Path:
    """The ``tests`` directory of Django's source distribution, holding ``sessions_tests``."""
    if not (SOURCE / "sessions_tests" / "tests.py").is_file():
        with tempfile.TemporaryDirectory() as download:
            pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
            pip += ["--no-binary", ":all:", f"django=={django.__version__}", "-d", download]
            subprocess.run(pip, check=True, timeout=300)
            (archive,) = Path(download).glob("*.tar.gz")
            with tarfile.open(archive) as sdist:
                members = [m for m in sdist.getmembers() if "/tests/sessions_tests/" in m.name]
                for member in members:
                    member.name = member.name.split("/tests/", 1)[1]
                sdist.extractall(SOURCE, members=members, filter="data")
    return SOURCE


def run(django_tests: Path, redis: Service, module: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.django.suite.run", str(django_tests), module],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "TEST_REDIS_URL": redis.url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    ran = re.search(r"^Ran (\d+) tests", done.stderr, re.MULTILINE)
    assert ran is not None, done.stderr[-2000:]
    return int(ran.group(1)), done.stderr


def test_djangos_own_session_tests_pass_against_the_engine(
    django_tests: Path, redis_server: Service
) -> None:
    ran, log = run(django_tests, redis_server, "tests.django.suite.cases")
    # SessionTestsMixin's tests (sync and async) and SessionMiddlewareTests, all of them.
    assert ran >= 77, log


def test_merges_logouts_outages_and_the_switch_of_engines(
    django_tests: Path, redis_server: Service
) -> None:
    run(django_tests, redis_server, "tests.django.suite.behaviour")
