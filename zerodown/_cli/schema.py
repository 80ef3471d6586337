"""``zerodown schema lock|check``: the records' schema lock, for CI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._records.codec import Registry
from .._records.schema import check_schemas, lock_schemas
from .targets import import_target

DEFAULT_LOCK = "zerodown-schema.lock.json"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schema = commands.add_parser("schema", help="lock and check the schemas of your records")
    actions = schema.add_subparsers(dest="action", required=True)
    for action, help_text in (
        ("lock", "write the records' current schemas into the lock file"),
        ("check", "exit 1 if the code breaks compatibility with the locked versions"),
    ):
        sub = actions.add_parser(action, help=help_text)
        sub.add_argument(
            "--registry",
            required=True,
            metavar="MODULE:ATTR",
            help="where your zerodown.codec.Registry lives, e.g. myapp.records:registry",
        )
        sub.add_argument("--lock", type=Path, default=Path(DEFAULT_LOCK), help="the lock file")
        if action == "lock":
            sub.add_argument(
                "--force", action="store_true", help="rewrite a locked version that never shipped"
            )
        else:
            sub.add_argument(
                "--window",
                type=int,
                default=2,
                help="how many previous versions must stay compatible (default 2)",
            )


def run(args: argparse.Namespace) -> int:
    try:
        registry = import_target(args.registry)
        if not isinstance(registry, Registry):
            raise ValueError(f"{args.registry} is a {type(registry).__name__}, not a Registry")
        if args.action == "lock":
            changes = lock_schemas(registry, args.lock, force=args.force)
            for change in changes:
                print(change)
            print(f"{args.lock}: {'up to date' if not changes else 'written'}")
            return 0
        problems = check_schemas(registry, args.lock, window=args.window)
    except (ValueError, ImportError, AttributeError) as error:
        print(f"zerodown schema {args.action}: {error}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"BREAKING {problem}")
    if problems:
        print(f"{len(problems)} breaking change(s) against {args.lock}", file=sys.stderr)
        return 1
    print(f"compatible with every locked version in the window of {args.window}")
    return 0
