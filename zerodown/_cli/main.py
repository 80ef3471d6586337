"""The ``zerodown`` command."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

DEFAULT_LOCK = "zerodown-schema.lock.json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "rehearse":
        return _rehearse(parser, args)
    if args.command == "wait-ready":
        return _wait_ready(args)
    return _schema(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zerodown", description="Deploys that lose nothing.")
    commands = parser.add_subparsers(dest="command", required=True)

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
    _add_rehearse(commands)
    wait = commands.add_parser(
        "wait-ready",
        help="wait until an app is ready (for deploy scripts)",
        description="Poll a readiness endpoint with backoff; exit 0 once it answers 200, "
        "1 with the last answer when the timeout passes.",
    )
    wait.add_argument("url", help="the readiness URL, or the app's base URL for its /readyz")
    wait.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    return parser


def _schema(args: argparse.Namespace) -> int:
    from .._records.codec import Registry
    from .._records.schema import check_schemas, lock_schemas

    try:
        registry = _load(args.registry)
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


def _add_rehearse(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from dataclasses import fields

    from .rehearse.plan import STRATEGIES, RehearsalPlan

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


def _rehearse(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from dataclasses import fields, replace

    from .rehearse.fleet import NotReady, ServerSpec
    from .rehearse.plan import RehearsalPlan
    from .rehearse.progress import Progress
    from .rehearse.report import Thresholds, render_side_by_side, report_document
    from .rehearse.run import rehearse

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


def _wait_ready(args: argparse.Namespace) -> int:
    from .wait_ready import readiness_url, wait_ready

    try:
        url = readiness_url(args.url)
    except ValueError as error:
        print(f"zerodown wait-ready: {error}", file=sys.stderr)
        return 2
    outcome = wait_ready(url, args.timeout)
    if outcome.ready:
        print(f"ready: {url} answered 200 after {outcome.waited:.1f}s")
        return 0
    print(
        f"not ready after {outcome.waited:.1f}s ({outcome.polls} polls): {url} last gave "
        f"{outcome.detail}",
        file=sys.stderr,
    )
    return 1


def _load(target: str) -> object:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected MODULE:ATTR, got {target!r}")
    sys.path.insert(0, str(Path.cwd()))
    module = importlib.import_module(module_name)
    return getattr(module, attribute)


if __name__ == "__main__":
    sys.exit(main())
