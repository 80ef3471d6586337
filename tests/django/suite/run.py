"""Runs test modules with Django's test runner: ``python -m tests.django.suite.run DIR
LABEL...``, DIR being the ``tests`` directory of Django's source distribution."""

from __future__ import annotations

import os
import sys


def main() -> int:
    sys.path.insert(0, sys.argv[1])
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.django.suite.settings"
    import django
    from django.test.runner import DiscoverRunner

    django.setup()
    failures: int = DiscoverRunner(verbosity=2).run_tests(sys.argv[2:])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
