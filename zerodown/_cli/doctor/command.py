"""``zerodown doctor``: a static check of a Deployment and its server's settings, for CI
and for a person. Exit 1 on an error, 0 with warnings only (or none), 2 when the manifest
cannot be read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..._json_output import words_stream, write_json
from ..targets import import_target
from .manifest import ManifestError, read_manifest
from .rules import Assumptions, Finding, diagnose


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    defaults = Assumptions()
    doctor = commands.add_parser(
        "doctor",
        help="check a Kubernetes Deployment and its server's settings for lost requests",
        description="Read a Deployment (its probes, preStop, grace period, rollout, "
        "PodDisruptionBudget, the container's command and ZERODOWN_* environment) and the "
        "server's settings as the server parses them, and report everything that makes a "
        "rotation lose requests: each with its file and line, what it causes during a "
        "deploy, and the fix. Exit 1 on an error, 0 with warnings only.",
    )
    doctor.add_argument("--manifest", type=Path, required=True, metavar="FILE.yaml")
    doctor.add_argument("--container", help="the container to check (default: the first)")
    doctor.add_argument(
        "--gunicorn-config",
        type=Path,
        metavar="PATH",
        help="the gunicorn config the container uses, if not the --config of its command",
    )
    doctor.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="import the app to count its shutdown callbacks in the budget",
    )
    doctor.add_argument(
        "--propagation",
        type=float,
        default=defaults.propagation,
        help="seconds until every node stops sending new connections to a deleted pod "
        "(default: %(default)s)",
    )
    doctor.add_argument(
        "--proxy-idle-timeout",
        type=float,
        default=defaults.proxy_idle_timeout,
        help="the idle timeout of the proxy in front, for its upstream connections "
        "(default: %(default)s, ingress-nginx's and AWS ALB's)",
    )
    doctor.add_argument("--json", metavar="FILE", help="write the findings as JSON (- for stdout)")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    assumptions = Assumptions(
        propagation=args.propagation, proxy_idle_timeout=args.proxy_idle_timeout
    )
    try:
        manifest = read_manifest(args.manifest, args.container)
    except ManifestError as error:
        print(f"zerodown doctor: {error}", file=sys.stderr)
        return 2
    callbacks = None
    notes = []
    if args.app is not None:
        try:
            import_target(args.app)
        except Exception as error:  # the user's module runs here
            print(
                f"zerodown doctor: --app {args.app}: {type(error).__name__}: {error}",
                file=sys.stderr,
            )
            return 2
        from ..._lifecycle import get_lifecycle

        callbacks = get_lifecycle().callbacks_budget
    else:
        notes.append("shutdown callbacks not counted in the budget: give --app MODULE:ATTR")
    findings = diagnose(
        manifest, assumptions, gunicorn_config=args.gunicorn_config, callbacks_budget=callbacks
    )
    out = words_stream(args.json)
    print(render(findings, notes), file=out)
    if args.json is not None:
        write_json(
            {
                "manifest": str(args.manifest),
                "assumptions": {
                    "propagation_s": assumptions.propagation,
                    "proxy_idle_timeout_s": assumptions.proxy_idle_timeout,
                    "shutdown_callbacks_s": callbacks,
                },
                "findings": [finding.as_json() for finding in findings],
                "notes": notes,
            },
            args.json,
        )
    return 1 if any(finding.level == "error" for finding in findings) else 0


def render(findings: list[Finding], notes: list[str]) -> str:
    lines = []
    for finding in findings:
        lines.append(f"{finding.file}:{finding.line}: {finding.level}: {finding.rule}")
        lines.append(f"  {finding.problem}")
        lines.append(f"  during a deploy: {finding.effect}")
        lines.append(f"  fix: {finding.fix}")
        lines.append("")
    lines += [f"note: {note}" for note in notes]
    errors = sum(finding.level == "error" for finding in findings)
    lines.append(f"{errors} errors, {len(findings) - errors} warnings")
    return "\n".join(lines)
