"""``zerodown rehearse``: its options, and turning them into a plan and a run.

Every setting of an instance is taken from an explicit flag, then the user's environment
(which the instances inherit, ``ZERODOWN_*`` included), then zerodown's default; where a
flag or the rehearsal itself overrides a variable the user set, the run says which and why.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path

from ..._errors import ConfigurationError
from ..._json_output import words_stream, write_json
from ..._settings import Settings
from ..doctor.manifest import ManifestError
from ..postgres import add_database_options
from .fleet import PRESTOP_PATH, SERVERS, NotReady, ServerSpec
from .kube import (
    FromManifest,
    NamespaceUnavailable,
    PreStop,
    from_manifest,
    in_own_namespace,
    run_in_own_namespace,
)
from .plan import MIGRATE_AT, NETWORKS, STRATEGIES, RehearsalPlan
from .progress import Progress
from .report import Thresholds, render_side_by_side, report_document
from .run import rehearse
from .traffic import load_traffic

#: Options that set a field of the same name of the rehearsal plan, its default theirs:
#: (group, option, type, help).
_PLAN_OPTIONS: tuple[tuple[str, str, type, str], ...] = (
    ("deploy", "--instances", int, "instances of each release"),
    ("deploy", "--canary-pause", float, "seconds per canary step"),
    ("deploy", "--max-surge", int, "rolling: instances above --instances while it rolls"),
    ("deploy", "--max-unavailable", int, "rolling: instances below --instances while it rolls"),
    ("deploy", "--ready-timeout", float, "seconds an instance has to turn ready"),
    ("load", "--rate", int, "iterations per second: requests, or runs of your k6 function"),
    ("load", "--duration", float, "seconds of load"),
    ("load", "--fast-path", str, "path of zerodown's ordinary requests"),
    ("load", "--slow-path", str, "path of zerodown's slow requests"),
    ("load", "--slow-fraction", float, "share of slow requests"),
    ("load", "--k6-exec", str, "the function of --k6-script that is one iteration"),
    ("load", "--session-users", int, "users who check that their session survives (0: none)"),
)
#: Instance settings read as the instances read them: (option, variable, Settings field).
_INSTANCE_SETTINGS = (
    ("--shutdown-delay", "ZERODOWN_SHUTDOWN_DELAY", "shutdown_delay"),
    ("--drain-timeout", "ZERODOWN_DRAIN_TIMEOUT", "drain_timeout"),
    ("--grace", "ZERODOWN_GRACE_PERIOD", "grace_period"),
)
#: terminationGracePeriodSeconds when neither --grace nor ZERODOWN_GRACE_PERIOD gives it.
DEFAULT_GRACE = 30.0
#: Set by the rehearsal over the user's value, and why.
_REHEARSAL_SETTINGS = {
    # HAProxy drops idle server connections after 5 s, before any server's keep-alive.
    "ZERODOWN_PROXY_IDLE_TIMEOUT": (
        "5",
        "the rehearsal's HAProxy drops idle connections after 5 s",
    ),
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    defaults = {field.name: field.default for field in fields(RehearsalPlan)}
    rehearse = commands.add_parser(
        "rehearse",
        help="rehearse a deploy of your app under load and report every failed request",
        description="Start your app's instances behind HAProxy (TLS, readiness checks, no "
        "retries), send open-loop load with k6 (zerodown's or your own script) and users "
        "who check their sessions, deploy the new release with the chosen strategy and "
        "report every request, per release. Exit 0 when the deploy stayed within the "
        "thresholds, 1 when it crossed one, 2 when the rehearsal could not run. Settings of "
        "an instance come from a flag, then --manifest, then your environment (the instances "
        "inherit it), "
        "then zerodown's default.",
    )
    rehearse.add_argument(
        "app", nargs="?", help="the app as MODULE:ATTR, e.g. myapp.main:app (or a factory)"
    )
    rehearse.add_argument(
        "--new-app", metavar="MODULE:ATTR", help="the release to deploy, if not APP"
    )
    rehearse.add_argument(
        "--new-dir",
        type=Path,
        metavar="PATH",
        help="where the new release's code is (another checkout or worktree), if not here",
    )
    server = rehearse.add_argument_group("how an instance runs")
    server.add_argument(
        "--server",
        choices=SERVERS,
        default="uvicorn",
        help="what serves each instance (default: uvicorn); where zerodown cannot hold the "
        "server's SIGTERM back (uwsgi, hypercorn --workers N, granian --interface wsgi), the "
        f"rehearsal calls the preStop endpoint ({PRESTOP_PATH}) first, as the kubelet would",
    )
    server.add_argument(
        "--server-args",
        default="",
        metavar="ARGS",
        help="more options for the server's command line, after zerodown's, e.g. "
        "--server-args='--max-requests 100' (not with --command)",
    )
    server.add_argument(
        "--interface",
        choices=("asgi", "wsgi"),
        default="asgi",
        help="granian's application interface (default: asgi)",
    )
    server.add_argument(
        "-k",
        "--worker-class",
        help="gunicorn worker class: sync, gthread (default), asgi, uvicorn (zerodown's) or a "
        "dotted path; overrides --gunicorn-config's",
    )
    server.add_argument(
        "--workers",
        type=int,
        help="worker processes (default: gunicorn and uwsgi 2, granian 1, hypercorn 0: it "
        "serves in its own process)",
    )
    server.add_argument(
        "--threads", type=int, help="threads per gthread worker or uwsgi process (default: 8)"
    )
    server.add_argument(
        "--gunicorn-config",
        metavar="PATH",
        help="yours (with zerodown's hooks); -k, --workers and --threads override it",
    )
    server.add_argument(
        "--factory", action="store_true", help="APP is a function that returns the app"
    )
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
    for option, whose in (("--flag", "every instance"), ("--new-flag", "the new release")):
        server.add_argument(
            option,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"a feature flag of {whose}, through zerodown.openfeature (VALUE as JSON: "
            'true, 3, "blue"; else a string)',
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
    for option, variable, name in _INSTANCE_SETTINGS:
        default = DEFAULT_GRACE if option == "--grace" else getattr(Settings(), name)
        groups["deploy"].add_argument(
            option,
            type=float,
            help=f"seconds; the instances' {variable} (default: yours, else {default:g})",
        )
    for group, option, kind, help_text in _PLAN_OPTIONS:
        default = defaults[option.lstrip("-").replace("-", "_")]
        groups[group].add_argument(
            option, type=kind, default=default, help=f"{help_text} (default: %(default)s)"
        )
    groups["load"].add_argument(
        "--k6-script",
        type=Path,
        metavar="FILE.js",
        help="your k6 script: its default function (or --k6-exec) is one iteration, run at "
        "--rate per second; BASE_URL in its __ENV is the proxy's address",
    )
    groups["load"].add_argument(
        "--traffic",
        type=Path,
        metavar="FILE.toml",
        help="your traffic declared: weighted requests, and users who log in (see "
        "docs/rehearse.md); one request per iteration",
    )
    database = rehearse.add_argument_group(
        "the database and the migration",
        "Each command runs through the shell with DATABASE_URL and PGAPPNAME set; --env values "
        "may use {database_url}, {db_host}, {db_port}, {db_name}, {db_user}, {db_password}.",
    )
    add_database_options(
        database,
        throwaway="start a throwaway PostgreSQL for each run, watched while the migration runs",
        yours="use your database instead",
    )
    database.add_argument(
        "--setup",
        action="append",
        default=[],
        metavar="CMD",
        help="before release N starts, e.g. 'alembic upgrade head' (repeatable, in order)",
    )
    database.add_argument(
        "--seed-rows", type=int, help="ZERODOWN_SEED_ROWS of the --setup commands, for a seed"
    )
    database.add_argument(
        "--migrate",
        metavar="CMD",
        help="release N+1's migration, with its environment, while release N serves",
    )
    database.add_argument(
        "--migrate-at",
        choices=MIGRATE_AT,
        default="before-new",
        help="before the first new instance (a pre-deploy job; the default) or once it is ready",
    )
    database.add_argument(
        "--contract", metavar="CMD", help="the contract step, once release N is gone"
    )
    network = rehearse.add_argument_group(
        "the network",
        "haproxy: HAProxy health-checks the instances (an ingress, a load balancer). "
        "kubernetes: a Service as kube-proxy makes it, real iptables NAT rules in a network "
        "namespace of the rehearsal's own, the kubelet's probes, endpoints removed after the "
        "propagation delay (rolling only; needs root or unprivileged user namespaces). "
        "ingress-nginx: nginx as ingress-nginx configures it, in front of that model.",
    )
    network.add_argument("--network", choices=NETWORKS, default="haproxy")
    network.add_argument(
        "--manifest",
        type=Path,
        metavar="FILE.yaml",
        help="your Deployment: probes, preStop, grace period, replicas and rollout, "
        "ZERODOWN_* env and the command (flags win over it, it wins over your environment)",
    )
    network.add_argument(
        "--propagation",
        type=float,
        default=defaults["propagation"],
        help="kubernetes: seconds until an endpoint change reaches the node (default: %(default)s)",
    )
    network.add_argument(
        "--propagation-spread",
        type=float,
        default=defaults["propagation_spread"],
        help="kubernetes: up to this many seconds more, drawn per change (default: %(default)s)",
    )
    network.add_argument(
        "--seed", type=int, default=defaults["seed"], help="of the spread (default: %(default)s)"
    )
    verdict = rehearse.add_argument_group("the verdict and the report")
    verdict.add_argument("--max-failures", type=int, default=0, help="(default: 0)")
    thresholds = Thresholds()
    verdict.add_argument(
        "--max-p99-ratio",
        type=float,
        default=thresholds.max_p99_ratio,
        help="a path's p99 during and after the deploy / its p99 before (default: %(default)s)",
    )
    verdict.add_argument(
        "--p99-floor-ms",
        type=float,
        default=thresholds.p99_floor_ms,
        help="...and at least this many ms above it to fail (default: %(default)s)",
    )
    verdict.add_argument(
        "--min-requests",
        type=int,
        default=thresholds.min_requests,
        help="fewer requests of a path in a window: its p99 is shown, not judged "
        "(default: %(default)s)",
    )
    verdict.add_argument(
        "--max-lock-wait",
        type=float,
        default=thresholds.max_lock_wait,
        help="seconds a query of the app may wait for a lock (default: %(default)s)",
    )
    verdict.add_argument(
        "--compare", action="store_true", help="run it again with ZERODOWN_DISABLED=1, side by side"
    )
    verdict.add_argument(
        "--json", metavar="FILE", help="write the report as JSON (- for standard output)"
    )
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


def _manifest(path: Path) -> FromManifest:
    try:
        return from_manifest(path)
    except ManifestError as error:
        raise ValueError(str(error)) from None


def _from_manifest(manifest: FromManifest, argv: Sequence[str]) -> dict[str, object]:
    """The plan's fields the manifest sets: the rollout's unless given as flags, the
    kubelet's probes and the preStop hook."""

    def given(option: str) -> bool:
        return any(arg == option or arg.startswith(option + "=") for arg in argv)

    fields_: dict[str, object] = {
        "readiness": manifest.readiness,
        "startup": manifest.startup,
        "pre_stop": manifest.pre_stop,
        "not_modeled": manifest.not_modeled,
    }
    for option, name, value in (
        ("--instances", "instances", manifest.instances),
        ("--max-surge", "max_surge", manifest.max_surge),
        ("--max-unavailable", "max_unavailable", manifest.max_unavailable),
    ):
        if value is not None and not given(option):
            fields_[name] = value
    return fields_


def _flags(raw: Sequence[str], option: str) -> dict[str, object]:
    """``KEY=VALUE`` flags, each VALUE read as JSON when it is JSON, else as a string."""
    flags: dict[str, object] = {}
    for key, value in _pairs(raw, option).items():
        try:
            flags[key] = json.loads(value)
        except ValueError:
            flags[key] = value
    return flags


def instance_environment(
    args: argparse.Namespace, user_env: Mapping[str, str]
) -> tuple[dict[str, str], Settings, float, list[str]]:
    """What the rehearsal sets over the user's environment, the settings the instances
    will run with, the grace period, and a line for each variable of the user's overridden."""
    # What each setting's flag gave (None: not given), read once.
    given = {
        option: getattr(args, option[2:].replace("-", "_")) for option, _, _ in _INSTANCE_SETTINGS
    }
    try:
        settings = Settings.load(
            environ=user_env, **{name: given[option] for option, _, name in _INSTANCE_SETTINGS}
        )
    except ConfigurationError as error:
        raise ValueError(str(error)) from None
    grace = DEFAULT_GRACE if settings.grace_period is None else settings.grace_period
    env: dict[str, str] = {}
    overrides = []
    for option, variable, _name in _INSTANCE_SETTINGS:
        if given[option] is None:
            continue
        env[variable] = f"{given[option]:g}"
        if variable in user_env and user_env[variable] != env[variable]:
            mine = f"{variable}={user_env[variable]}"
            overrides.append(f"{option} {env[variable]} overrides {mine} from your environment")
    for variable, (value, why) in _REHEARSAL_SETTINGS.items():
        env[variable] = value
        if variable in user_env and user_env[variable] != value:
            overrides.append(f"{variable}={value} overrides your {user_env[variable]}: {why}")
    for key, value in _pairs(args.env, "--env").items():
        if key in user_env and user_env[key] != value:
            overrides.append(f"--env {key}={value} overrides {key} from your environment")
        env[key] = value
    database = "--database postgres" if args.database else args.database_url and "--database-url"
    if database and user_env.get("DATABASE_URL") and "DATABASE_URL" not in env:
        overrides.append(f"{database} sets DATABASE_URL over yours from your environment")
    if "ZERODOWN_RELEASE" in user_env:
        overrides.append("ZERODOWN_RELEASE is set to v1 and v2: the report names the releases so")
    return env, settings, grace, overrides


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        manifest = None if args.manifest is None else _manifest(args.manifest)
        if args.app is None and args.command_template is None:
            if manifest is None or manifest.command is None:
                raise ValueError("give the app as MODULE:ATTR, or --command (or --manifest)")
            args.command_template = manifest.command
        try:
            steps = tuple(int(step) for step in args.canary_steps.split(","))
        except ValueError:
            raise ValueError(
                f"--canary-steps {args.canary_steps!r}: expected percentages such as 10,50,100"
            ) from None
        manifest_env = {} if manifest is None else manifest.env
        env, settings, grace, overrides = instance_environment(args, {**os.environ, **manifest_env})
        env = {**manifest_env, **env}
        # Options named as the plan's fields are taken as they are.
        same = {f.name: getattr(args, f.name) for f in fields(RehearsalPlan) if f.name in args}
        if manifest is not None:
            same.update(_from_manifest(manifest, args.argv))
            if manifest.grace is not None and args.grace is None:
                grace = manifest.grace
        spec = ServerSpec(
            kind="command" if args.command_template else args.server,
            worker_class=args.worker_class,
            workers=args.workers,
            threads=args.threads,
            gunicorn_config=args.gunicorn_config,
            command=args.command_template or "",
            factory=args.factory,
            interface=args.interface,
            server_args=tuple(shlex.split(args.server_args)),
        )
        if manifest is None and not spec.holds_sigterm:
            # The tested fallback: the lame-duck window served before SIGTERM.
            path = env.setdefault("ZERODOWN_PRESTOP_PATH", PRESTOP_PATH)
            same["pre_stop"] = PreStop(http_path=path)
        plan = RehearsalPlan(
            **{
                **same,
                "app": args.app or args.command_template,
                "server": spec,
                "retries": 1 if args.retry else 0,
                # k6 runs from the script's directory, so that its own imports resolve.
                "k6_script": args.k6_script and args.k6_script.resolve(),
                "new_dir": args.new_dir and args.new_dir.resolve(),
                "traffic_file": args.traffic,
                "traffic": None if args.traffic is None else load_traffic(args.traffic),
                "grace": grace,
                "shutdown_delay": settings.shutdown_delay,
                "drain_timeout": settings.drain_timeout,
                "env": env,
                "new_env": _pairs(args.new_env, "--new-env"),
                "flags": _flags(args.flag, "--flag"),
                "new_flags": _flags(args.new_flag, "--new-flag"),
                "canary_steps": steps,
                "setup": tuple(args.setup),
                "overrides": tuple(overrides),
                "thresholds": Thresholds(
                    max_failures=args.max_failures,
                    max_p99_ratio=args.max_p99_ratio,
                    p99_floor_ms=args.p99_floor_ms,
                    min_requests=args.min_requests,
                    max_lock_wait=args.max_lock_wait,
                ),
            }
        )
    except ValueError as error:
        parser.error(f"rehearse: {error}")
    if problems := plan.problems():
        parser.error("rehearse: " + "; ".join(problems))
    if plan.network != "haproxy" and not in_own_namespace():
        try:
            return run_in_own_namespace(args.argv)
        except NamespaceUnavailable as error:
            print(f"zerodown rehearse: {error}", file=sys.stderr)
            return 2
    if plan.database or plan.database_url:
        try:
            import psycopg  # noqa: F401  (the database watch's driver)
        except ImportError:
            parser.error("rehearse: --database needs psycopg: pip install 'zerodown[rehearse]'")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="zerodown-rehearsal-"))
    out = words_stream(args.json)
    runs = [plan, replace(plan, disabled=True)] if args.compare else [plan]
    reports = []
    for run in runs:
        name = "without-zerodown" if run.disabled else "with-zerodown"
        progress = Progress(None if args.quiet else out)
        if not args.quiet:
            print(f"\n== {name}: logs in {workdir / name}", flush=True, file=out)
        try:
            reports.append(rehearse(run, workdir / name, progress))
        except (NotReady, FileNotFoundError, RuntimeError, TimeoutError) as error:
            print(f"zerodown rehearse: {error}\n(logs in {workdir / name})", file=sys.stderr)
            return 2
    print(file=out)
    for report in reports:
        print(report.render(), end="\n\n", file=out)
    if len(reports) > 1:
        print(render_side_by_side(reports), end="\n\n", file=out)
    if args.json is not None:
        write_json(report_document(reports), args.json)
    return 0 if reports[0].passed else 1
