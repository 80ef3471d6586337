"""``--network ingress-nginx``: nginx as ingress-nginx configures it, in front of the same
Kubernetes model (``kube.py``).

ingress-nginx sends straight to the pods' endpoints, not through kube-proxy; it keeps
upstream connections alive, retries a request that failed to connect or timed out on the
next endpoint when the method is idempotent (``proxy_next_upstream error timeout``), and
learns of endpoint changes from the API, which here means after the same propagation delay.
One difference is listed in the report: Debian's nginx changes its upstreams by a reload
(graceful: old workers finish their requests), where ingress-nginx's Lua balancer swaps
them in place.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from pathlib import Path

from ..procs import LOOPBACK, ManagedProcess, find_tool, free_port, start_process, wait_for_port

DIFFERENCE = (
    "ingress-nginx: Debian's nginx takes each endpoint change by a graceful reload, where "
    "ingress-nginx's Lua balancer swaps the upstreams without one"
)
_CONFIG = """\
worker_processes 1;
pid nginx.pid;
{user}
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    upstream pods {{
        include upstream.inc;
        keepalive 320;
        keepalive_timeout 60s;
    }}
    server {{
        listen {address};
        location / {{
            proxy_pass http://pods;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_connect_timeout 5s;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
        }}
    }}
}}
"""


class IngressNginx:
    """nginx with an upstream of the Service's endpoints, rewritten and reloaded on every
    change that reaches the node."""

    def __init__(self, workdir: Path) -> None:
        self.prefix = workdir
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # As root, nginx's workers would run as nobody, who cannot read the rehearsal's files.
        user = "user root;" if os.geteuid() == 0 else ""
        (workdir / "nginx.conf").write_text(
            _CONFIG.format(user=user, address=f"{LOOPBACK}:{self.port}")
        )
        self._write({})
        binary = find_tool("nginx", "nginx is missing: run `bash scripts/zd setup`")
        self.process: ManagedProcess = start_process(
            "nginx",
            [binary, "-p", str(workdir), "-c", str(workdir / "nginx.conf"), "-g", "daemon off;"],
            log_path=workdir / "nginx.log",
        )
        wait_for_port(self.process, self.port)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def update(self, endpoints: Mapping[str, int]) -> None:
        """The endpoints as they reached the node: rewrite the upstream, reload."""
        self._write(endpoints)
        self.process.send_signal(signal.SIGHUP)

    def _write(self, endpoints: Mapping[str, int]) -> None:
        # An upstream needs a server: with none, one that refuses, as a Service without
        # endpoints rejects.
        servers = [f"server {LOOPBACK}:{port};" for _, port in sorted(endpoints.items())]
        lines = servers or [f"server {LOOPBACK}:1;"]
        (self.prefix / "upstream.inc").write_text("\n".join(lines) + "\n")

    def stop(self) -> None:
        # SIGQUIT: nginx's graceful stop.
        self.process.stop(signal.SIGQUIT, timeout=10)
