"""``--network kubernetes``: a Service as kube-proxy makes it, on this machine's kernel.

The rehearsal runs in a network namespace of its own (``unshare --net``; with
``--map-root-user`` when not root, where the kernel allows unprivileged user namespaces).
There a Service's virtual IP on a loopback address is DNATed to the ready pods by iptables
NAT rules written the way kube-proxy's iptables mode writes them: a ``KUBE-SVC`` chain that
picks an endpoint with ``statistic --mode random --probability 1/n`` rules, and a
``KUBE-SEP`` chain per endpoint. New connections are spread by those rules; established
ones keep their conntrack entry when an endpoint goes, as kube-proxy leaves TCP entries.

A kubelet-like prober drives each pod's startup and readiness from its probe spec, and an
endpoints controller adds a pod once it is ready and removes a deleted one: each change
reaches "the node" (the iptables rules) after ``propagation`` seconds, plus a seeded random
``spread``. Every change of a pod's state is on its timeline, from which the report tells
in which phase each failure happened.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..procs import LOOPBACK, http_get

#: The Service's virtual IP and port: a loopback address, never a routable one.
SERVICE_IP = "127.0.10.1"
SERVICE_PORT = 80
#: Set in the re-executed command's environment: it is in its namespace already.
NAMESPACE_MARK = "ZERODOWN_REHEARSAL_NETNS"
_SERVICE_CHAIN = "KUBE-SVC-ZERODOWN"
#: Seconds between looks at a terminating pod's listening socket.
_LISTENER_POLL = 0.02


class NamespaceUnavailable(RuntimeError):
    """No network namespace could be made; the message says what is needed."""


def in_own_namespace() -> bool:
    return os.environ.get(NAMESPACE_MARK) == "1"


def run_in_own_namespace(argv: Sequence[str]) -> int:
    """Run ``zerodown ARGV`` again inside a new network namespace; its exit status."""
    missing = [tool for tool in ("unshare", "ip", "iptables-restore") if not _which(tool)]
    if missing:
        raise NamespaceUnavailable(
            f"--network kubernetes needs {', '.join(missing)}: run `bash scripts/zd setup` "
            "(apt-get install iptables iproute2 util-linux)"
        )
    unshare = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--net", "--map-root-user"]
    probe = subprocess.run([*unshare, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise NamespaceUnavailable(
            "--network kubernetes runs the rehearsal in a network namespace of its own, and "
            f"none could be made ({probe.stderr.strip() or 'unshare failed'}): run it as root, "
            "or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 "
            "or user.max_user_namespaces > 0)"
        )
    command = [*unshare, sys.executable, "-m", "zerodown._cli.main", *argv]
    return subprocess.run(command, env={**os.environ, NAMESPACE_MARK: "1"}, check=False).returncode


def _which(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (path for path in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.path.exists(path)), None
    )


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """A probe as the kubelet runs it (Kubernetes' defaults where the manifest is silent)."""

    path: str
    period: float = 10.0
    timeout: float = 1.0
    failure_threshold: int = 3
    success_threshold: int = 1
    initial_delay: float = 0.0

    @classmethod
    def from_manifest(cls, spec: Mapping[str, Any], default_path: str) -> ProbeSpec:
        http = spec.get("httpGet") or {}
        return cls(
            path=str(http.get("path", default_path)),
            period=float(spec.get("periodSeconds", 10)),
            timeout=float(spec.get("timeoutSeconds", 1)),
            failure_threshold=int(spec.get("failureThreshold", 3)),
            success_threshold=int(spec.get("successThreshold", 1)),
            initial_delay=float(spec.get("initialDelaySeconds", 0)),
        )


@dataclass(frozen=True, slots=True)
class PreStop:
    """A container's preStop hook: a sleep (``sleep``, or ``exec`` of ``sleep N``) or an
    ``httpGet`` of the pod."""

    sleep: float = 0.0
    http_path: str | None = None

    def describe(self) -> str:
        return f"GET {self.http_path}" if self.http_path else f"sleep {self.sleep:g}s"

    def run(self, base_url: str) -> None:
        if self.http_path is not None:
            # The kubelet waits for the answer (up to the grace period).
            http_get(base_url + self.http_path, timeout=3600)
        else:
            time.sleep(self.sleep)


#: Without a manifest: the probes of the shipped examples (examples/k8s/deployment.yaml).
DEFAULT_READINESS = ProbeSpec("/readyz", period=2, timeout=2, failure_threshold=1)
DEFAULT_STARTUP = ProbeSpec("/startupz", period=1, failure_threshold=120)


@dataclass(slots=True)
class PodTimeline:
    """What happened to one pod, in ``time.time()`` seconds; None until it did."""

    name: str
    port: int
    ready_at: float | None = None
    in_endpoints_at: float | None = None
    deleted_at: float | None = None
    endpoint_removed_at: float | None = None
    listener_closed_at: float | None = None
    exited_at: float | None = None

    def phase(self, moment: float) -> str | None:
        """The phase of this pod's termination that ``moment`` falls in, if any."""
        if self.deleted_at is None or moment < self.deleted_at:
            return None
        removed, closed = self.endpoint_removed_at, self.listener_closed_at
        if removed is None or moment < removed:
            return "before endpoint removal"
        if closed is None or moment < closed:
            return "between removal and listener close"
        if self.exited_at is None or moment < self.exited_at + 0.5:
            return "during drain"
        return None


@dataclass(slots=True)
class _Pod:
    timeline: PodTimeline
    ready: bool = False
    terminating: bool = False
    became_ready: threading.Event = field(default_factory=threading.Event)


class KubeService:
    """The Service, its endpoints controller, and a kubelet prober per pod.

    It stands where HAProxy stands in the other networks: the deployment adds each pod once
    it started, tells it when a pod is deleted, and forgets it once it exited.
    """

    def __init__(
        self,
        *,
        readiness: ProbeSpec = DEFAULT_READINESS,
        startup: ProbeSpec | None = DEFAULT_STARTUP,
        propagation: float = 1.5,
        spread: float = 0.0,
        seed: int = 0,
        ready_timeout: float = 60.0,
        event: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.readiness, self.startup = readiness, startup
        self.propagation, self.spread = propagation, spread
        self._random = random.Random(seed)
        self._ready_timeout = ready_timeout
        self._event = event
        self._pods: dict[str, _Pod] = {}
        self._lock = threading.Lock()
        self._sequence = 0
        self._applied_sequence = -1
        self._applied: tuple[str, ...] = ()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        #: Told each set of endpoints as it reaches the node (an ingress in front).
        self.on_sync: Callable[[dict[str, int]], None] | None = None
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)
        self._restore(service_rules([], {}), noflush=False)
        _install_jumps()

    # -- what the deployment calls ---------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{SERVICE_IP}:{SERVICE_PORT}"

    @property
    def trusted_certificate(self) -> None:
        return None

    @property
    def timelines(self) -> list[PodTimeline]:
        return [pod.timeline for pod in self._pods.values()]

    def add_server(self, backend: str, name: str, port: int, weight: int = 100) -> None:
        """A new pod: probe it as the kubelet does; return once it is Ready (the
        Deployment controller goes on then, whether or not its endpoint has propagated)."""
        pod = _Pod(PodTimeline(name, port))
        with self._lock:
            self._pods[name] = pod
        self._spawn(self._probe, pod)
        if not pod.became_ready.wait(self._ready_timeout):
            raise TimeoutError(
                f"{name}: its readiness probe did not pass within {self._ready_timeout:g}s"
            )

    def wait_for_endpoints(self, names: Sequence[str], timeout: float) -> None:
        """Until every pod of ``names`` is in the node's rules: the Service the running
        release serves through exists before the load starts."""
        deadline = time.monotonic() + timeout
        while not set(names) <= set(self._applied):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{', '.join(names)} not in the Service's endpoints after {timeout:g}s"
                )
            time.sleep(0.05)

    def deleting(self, name: str) -> None:
        """The pod is deleted: the endpoint goes (after the propagation), and its
        listening socket is watched until it closes."""
        pod = self._pods[name]
        with self._lock:
            pod.timeline.deleted_at = time.time()
            pod.terminating = True
        self._changed()
        self._spawn(self._watch_listener, pod)

    def exited(self, name: str) -> None:
        self._pods[name].timeline.exited_at = time.time()

    def forget(self, backend: str, name: str) -> None:
        """Nothing to wait for: the endpoint went at the deletion, not at the exit."""
        self.exited(name)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    # -- the kubelet's prober ---------------------------------------------------------

    def _probe(self, pod: _Pod) -> None:
        base = f"http://{LOOPBACK}:{pod.timeline.port}"
        if self.startup is not None and not self._startup(pod, base):
            return
        spec = self.readiness
        if self._stop.wait(spec.initial_delay):
            return
        successes = failures = 0
        while not self._stop.is_set():
            status, _ = http_get(base + spec.path, timeout=spec.timeout)
            passed = status is not None and 200 <= status < 400
            successes, failures = (successes + 1, 0) if passed else (0, failures + 1)
            if not pod.ready and successes >= spec.success_threshold:
                self._readiness(pod, True)
            elif pod.ready and failures >= spec.failure_threshold:
                self._readiness(pod, False)
            if self._stop.wait(spec.period):
                return

    def _startup(self, pod: _Pod, base: str) -> bool:
        spec = self.startup
        assert spec is not None
        if self._stop.wait(spec.initial_delay):
            return False
        for _ in range(spec.failure_threshold):
            status, _ = http_get(base + spec.path, timeout=spec.timeout)
            if status is not None and 200 <= status < 400:
                return True
            if self._stop.wait(spec.period):
                return False
        self._event(f"{pod.timeline.name}: its startup probe failed {spec.failure_threshold} times")
        return False

    def _readiness(self, pod: _Pod, ready: bool) -> None:
        with self._lock:
            pod.ready = ready
            if ready and pod.timeline.ready_at is None:
                pod.timeline.ready_at = time.time()
        if ready:
            pod.became_ready.set()
        self._event(f"{pod.timeline.name} {'Ready' if ready else 'not Ready'} (kubelet)")
        self._changed()

    # -- the endpoints controller and kube-proxy --------------------------------------

    def _changed(self) -> None:
        """An endpoint change: the node's rules follow after the propagation delay."""
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
            endpoints = {
                name: pod.timeline.port
                for name, pod in self._pods.items()
                if pod.ready and not pod.terminating
            }
        delay = self.propagation + (self._random.uniform(0, self.spread) if self.spread else 0)
        timer = threading.Timer(delay, self._sync, args=(sequence, endpoints))
        timer.daemon = True
        timer.start()

    def _sync(self, sequence: int, endpoints: dict[str, int]) -> None:
        with self._lock:
            if sequence <= self._applied_sequence or self._stop.is_set():
                return  # a later change reached the node first
            self._applied_sequence = sequence
            previous = set(self._applied)
            self._applied = tuple(sorted(endpoints))
            stale = sorted(previous - set(endpoints))
            self._restore(service_rules(self._applied, endpoints, stale), noflush=True)
            now = time.time()
            for name in set(endpoints) - previous:
                self._pods[name].timeline.in_endpoints_at = now
            for name in previous - set(endpoints):
                self._pods[name].timeline.endpoint_removed_at = now
            if self.on_sync is not None:
                self.on_sync(endpoints)
        added, removed = sorted(set(endpoints) - previous), sorted(previous - set(endpoints))
        if added or removed:
            self._event(
                "kube-proxy: "
                + "; ".join(
                    part
                    for part in (
                        f"endpoint added {', '.join(added)}" if added else "",
                        f"endpoint removed {', '.join(removed)}" if removed else "",
                    )
                    if part
                )
            )

    def _restore(self, rules: str, *, noflush: bool) -> None:
        command = ["iptables-restore", "--wait"] + (["--noflush"] if noflush else [])
        done = subprocess.run(command, input=rules, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"iptables-restore refused the Service's rules: {done.stderr}\n{rules}"
            )

    # -- the pod's socket ---------------------------------------------------------------

    def _watch_listener(self, pod: _Pod) -> None:
        port = pod.timeline.port
        while not self._stop.is_set():
            if not _listening(port):
                pod.timeline.listener_closed_at = time.time()
                self._event(f"{pod.timeline.name} closed its listener")
                return
            time.sleep(_LISTENER_POLL)

    def _spawn(self, target: Callable[[_Pod], None], pod: _Pod) -> None:
        thread = threading.Thread(target=target, args=(pod,), daemon=True)
        self._threads.append(thread)
        thread.start()


def _endpoint_chain(name: str) -> str:
    return f"KUBE-SEP-{name.upper()}"[:28]


def service_rules(names: Sequence[str], ports: Mapping[str, int], stale: Sequence[str] = ()) -> str:
    """The nat and filter tables' rules for the Service with ``names`` as its endpoints,
    as kube-proxy's iptables mode writes them; with none, connections are rejected. The
    chains of ``stale`` endpoints are flushed and deleted, as kube-proxy deletes them."""
    lines = ["*filter", ":ZERODOWN-SERVICES - [0:0]"]
    if not names:
        lines.append(
            f"-A ZERODOWN-SERVICES -d {SERVICE_IP}/32 -p tcp --dport {SERVICE_PORT} "
            "-j REJECT --reject-with tcp-reset"
        )
    lines += ["COMMIT", "*nat", f":{_SERVICE_CHAIN} - [0:0]"]
    lines += [f":{_endpoint_chain(name)} - [0:0]" for name in (*names, *stale)]
    for index, name in enumerate(names):
        left = len(names) - index
        pick = f"-m statistic --mode random --probability {1 / left:.10f} " if left > 1 else ""
        lines.append(f"-A {_SERVICE_CHAIN} {pick}-j {_endpoint_chain(name)}")
    for name in names:
        lines.append(
            f"-A {_endpoint_chain(name)} -p tcp -j DNAT --to-destination {LOOPBACK}:{ports[name]}"
        )
    lines += [f"-X {_endpoint_chain(name)}" for name in stale]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _install_jumps() -> None:
    """The jumps into the Service's chains from OUTPUT, once (locally sent connections: the
    load, k6, runs on this "node")."""
    for table, target in (("nat", _SERVICE_CHAIN), ("filter", "ZERODOWN-SERVICES")):
        match = ["-d", f"{SERVICE_IP}/32", "-p", "tcp", "--dport", str(SERVICE_PORT)]
        subprocess.run(
            ["iptables", "-w", "-t", table, "-A", "OUTPUT", *match, "-j", target],
            check=True,
            capture_output=True,
        )


def _listening(port: int) -> bool:
    """Something listens on ``port`` in this namespace (from /proc/net/tcp, without a
    connection the server would have to serve)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    if fields[1].endswith(wanted) and fields[3] == "0A":
                        return True
        except OSError:
            continue
    return False


@dataclass(frozen=True, slots=True)
class FromManifest:
    """What a Deployment manifest gives a rehearsal: each is None when it does not say."""

    instances: int | None
    max_surge: int | None
    max_unavailable: int | None
    grace: float | None
    env: dict[str, str]
    readiness: ProbeSpec
    startup: ProbeSpec | None
    pre_stop: PreStop | None
    #: The container's command as an instance template, its port moved to {port}.
    command: str | None
    not_modeled: tuple[str, ...]


def from_manifest(path: Any) -> FromManifest:
    """Read ``path`` (a Deployment) for the rehearsal; what it cannot model, listed."""
    import shlex

    from ..doctor.manifest import pre_stop_hook, read_manifest, rollout_pods

    manifest = read_manifest(path)
    d, c = manifest.deployment, manifest.container
    pod = manifest.pod
    replicas = int(d.get("spec", "replicas", default=1))
    rolling = d.get("spec", "strategy", "rollingUpdate", default={}) or {}

    def count(key: str, up: bool) -> int | None:
        value = rolling.get(key)
        return None if value is None else rollout_pods(value, replicas, up=up)

    readiness = d.get(*c, "readinessProbe")
    startup = d.get(*c, "startupProbe")
    hook = pre_stop_hook(manifest)
    ports = [
        p.get("containerPort") for p in d.get(*c, "ports", default=[]) or [] if isinstance(p, dict)
    ]
    words = [str(part) for part in (d.get(*c, "command") or []) + (d.get(*c, "args") or [])]
    command = None
    if words:
        moved = [word.replace("0.0.0.0", LOOPBACK) for word in words]
        for port in ports:
            moved = [word.replace(str(port), "{port}") for word in moved]
        # Quoted for the shell, but {port} left for the rehearsal to fill in.
        command = " ".join(word if "{port}" in word else shlex.quote(word) for word in moved)
    containers = d.get(*pod, "containers", default=[]) or []
    unmodeled = [
        f"{key} (not modeled)"
        for key, present in (
            ("livenessProbe: restarts", d.get(*c, "livenessProbe") is not None),
            ("more than one container", len(containers) > 1),
            ("initContainers", d.get(*pod, "initContainers") is not None),
            ("resources: CPU and memory limits", d.get(*c, "resources") is not None),
            ("volumes", d.get(*pod, "volumes") is not None),
            ("affinity and topology spread", d.get(*pod, "affinity") is not None
             or d.get(*pod, "topologySpreadConstraints") is not None),
            ("minReadySeconds", d.get("spec", "minReadySeconds") is not None),
            ("the image: the command runs from this checkout", True),
        )
        if present
    ]  # fmt: skip
    grace = d.get(*pod, "terminationGracePeriodSeconds")
    return FromManifest(
        instances=replicas,
        max_surge=count("maxSurge", up=True),
        max_unavailable=count("maxUnavailable", up=False),
        grace=None if grace is None else float(grace),
        env=manifest.env(),
        readiness=ProbeSpec.from_manifest(readiness, "/readyz") if readiness else DEFAULT_READINESS,
        startup=ProbeSpec.from_manifest(startup, "/startupz") if startup else None,
        pre_stop=None if hook is None else PreStop(hook.sleep, hook.http_path),
        command=command,
        not_modeled=tuple(unmodeled),
    )
