"""``zerodown rehearse``: its options, and turning them into a plan and a run."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path

from .fleet import NotReady, ServerSpec
from .plan import STRATEGIES, RehearsalPlan
from .progress import Progress
from .report import Thresholds, render_side_by_side, report_document
from .run import rehearse

#: Options that set a field of the same name of the rehearsal plan, its default theirs:
#: (group, option, type, help).
_PLAN_OPTIONS: tuple[tuple[str, str, type, str], ...] = (
    ("deploy", "--instances", int, "instances of each release"),
    ("deploy", "--grace", float, "seconds from SIGTERM to SIGKILL (terminationGracePeriodSeconds)"),
    ("deploy", "--shutdown-delay", float, "the instances' ZERODOWN_SHUTDOWN_DELAY"),
    ("deploy", "--drain-timeout", float, "the instances' ZERODOWN_DRAIN_TIMEOUT"),
    ("deploy", "--canary-pause", float, "seconds per canary step"),
    ("load", "--rate", int, "requests per second"),
    ("load", "--duration", float, "seconds of load"),
    ("load", "--fast-path", str, "path of the ordinary requests"),
    ("load", "--slow-path", str, "path of the slow requests"),
    ("load", "--slow-fraction", float, "share of slow requests"),
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    defaults = {field.name: field.default for field in fields(RehearsalPlan)}
    rehearse = commands.add_parser(
        "rehearse",
        help="rehearse a deploy of your app under load and report every failed request",
        description="Start your app's instances behind HAProxy (readiness checks, no "
        "retries), send open-loop load with k6, deploy the new release with the chosen "
        "strategy and report every request. Exit 0 when the deploy stayed within the "
        "thresholds, 1 when it crossed one, 2 when the rehearsal could not run.",
    )
    rehearse.add_argument("app", nargs="?", help="the app as MODULE:ATTR, e.g. myapp.main:app")
    rehearse.add_argument(
        "--new-app", metavar="MODULE:ATTR", help="the release to deploy, if not APP"
    )
    server = rehearse.add_argument_group("how an instance runs")
    server.add_argument("--server", choices=("uvicorn", "gunicorn"), default="uvicorn")
    server.add_argument(
        "-k",
        "--worker-class",
        default="gthread",
        help="gunicorn worker class: sync, gthread (default), asgi, uvicorn (zerodown's) or a "
        "dotted path",
    )
    server.add_argument("--workers", type=int, default=2, help="gunicorn workers (default: 2)")
    server.add_argument(
        "--threads", type=int, default=8, help="threads per gthread worker (default: 8)"
    )
    server.add_argument("--gunicorn-config", metavar="PATH", help="yours (with zerodown's hooks)")
    server.add_argument(
        "--command",
        dest="command_template",
        metavar="TEMPLATE",
        help="the full command of one instance, with {port} (and {app}), instead of --server",
    )
    for option, whose in (("--env", "every instance"), ("--new-env", "the new release")):
        server.add_argument(
            option, action="append", default=[], metavar="KEY=VALUE", help=f"environment of {whose}"
        )
    groups = {"deploy": rehearse.add_argument_group("the deploy")}
    groups["load"] = rehearse.add_argument_group("the load")
    groups["deploy"].add_argument("--strategy", choices=STRATEGIES, default="rolling")
    groups["deploy"].add_argument(
        "--retry",
        action="store_true",
        help="let the proxy retry once on connection errors, as nginx",
    )
    groups["deploy"].add_argument(
        "--canary-steps", default="10,50,100", help="percentages (default: 10,50,100)"
    )
    for group, option, kind, help_text in _PLAN_OPTIONS:
        default = defaults[option.lstrip("-").replace("-", "_")]
        groups[group].add_argument(
            option, type=kind, default=default, help=f"{help_text} (default: %(default)s)"
        )
    verdict = rehearse.add_argument_group("the verdict and the report")
    verdict.add_argument("--max-failures", type=int, default=0, help="(default: 0)")
    verdict.add_argument(
        "--max-p99-ratio",
        type=float,
        default=1.5,
        help="p99 during the deploy / steady p99 (default: 1.5)",
    )
    verdict.add_argument(
        "--compare", action="store_true", help="run it again with ZERODOWN_DISABLED=1, side by side"
    )
    verdict.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    verdict.add_argument("--workdir", type=Path, help="where logs go (default: a new temp dir)")
    verdict.add_argument("--quiet", action="store_true", help="print only the report")


def _pairs(raw: Sequence[str], option: str) -> dict[str, str]:
    pairs = {}
    for item in raw:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ValueError(f"{option} {item!r}: expected KEY=VALUE")
        pairs[key] = value
    return pairs


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        if args.app is None and args.command_template is None:
            raise ValueError("give the app as MODULE:ATTR, or --command")
        try:
            steps = tuple(int(step) for step in args.canary_steps.split(","))
        except ValueError:
            raise ValueError(
                f"--canary-steps {args.canary_steps!r}: expected percentages such as 10,50,100"
            ) from None
        # Options named as the plan's fields are taken as they are.
        same = {f.name: getattr(args, f.name) for f in fields(RehearsalPlan) if f.name in args}
        plan = RehearsalPlan(
            **{
                **same,
                "app": args.app or args.command_template,
                "server": ServerSpec(
                    kind="command" if args.command_template else args.server,
                    worker_class=args.worker_class,
                    workers=args.workers,
                    threads=args.threads,
                    gunicorn_config=args.gunicorn_config,
                    command=args.command_template or "",
                ),
                "retries": 1 if args.retry else 0,
                "env": _pairs(args.env, "--env"),
                "new_env": _pairs(args.new_env, "--new-env"),
                "canary_steps": steps,
                "thresholds": Thresholds(
                    max_failures=args.max_failures, max_p99_ratio=args.max_p99_ratio
                ),
            }
        )
    except ValueError as error:
        parser.error(f"rehearse: {error}")
    if problems := plan.problems():
        parser.error("rehearse: " + "; ".join(problems))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="zerodown-rehearsal-"))
    runs = [plan, replace(plan, disabled=True)] if args.compare else [plan]
    reports = []
    for run in runs:
        name = "without-zerodown" if run.disabled else "with-zerodown"
        progress = Progress(None if args.quiet else sys.stdout)
        if not args.quiet:
            print(f"\n== {name}: logs in {workdir / name}", flush=True)
        try:
            reports.append(rehearse(run, workdir / name, progress))
        except (NotReady, FileNotFoundError, RuntimeError, TimeoutError) as error:
            print(f"zerodown rehearse: {error}\n(logs in {workdir / name})", file=sys.stderr)
            return 2
    print()
    for report in reports:
        print(report.render(), end="\n\n")
    if len(reports) > 1:
        print(render_side_by_side(reports), end="\n\n")
    if args.json is not None:
        args.json.write_text(json.dumps(report_document(reports), indent=2) + "\n")
    return 0 if reports[0].passed else 1
