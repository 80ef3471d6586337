"""The ``zerodown`` command: one sub-command per module of this package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import schema, wait_ready
from .doctor import command as doctor
from .migrations import command as migrations
from .rehearse import command as rehearse


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # As given: a command that runs itself again (in a network namespace) passes them on.
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command == "rehearse":
        return rehearse.run(parser, args)
    if args.command == "doctor":
        return doctor.run(parser, args)
    if args.command == "migrations":
        return migrations.run(parser, args)
    if args.command == "wait-ready":
        return wait_ready.run(args)
    return schema.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zerodown", description="Deploys that lose nothing.")
    commands = parser.add_subparsers(dest="command", required=True)
    schema.add_parser(commands)
    rehearse.add_parser(commands)
    migrations.add_parser(commands)
    doctor.add_parser(commands)
    wait_ready.add_parser(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
