"""Sessions against a real redis-server: the examples, and a rolling restart whose users
keep their sessions."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_py

from tests.bed import ProcessGroup, Service, wait_for_port
from tests.sessions.harness import (
    OLD_SECRET,
    SECRET,
    Gates,
    calls_between,
    client,
    commands,
    flask_client,
    make_app,
    run,
    stored,
    with_cookie,
)
from zerodown._cli.procs import LOOPBACK, free_port
from zerodown._cli.rehearse.plan import RehearsalPlan
from zerodown._cli.rehearse.progress import Progress
from zerodown._cli.rehearse.run import rehearse
from zerodown.sessions import (
    MemoryStore,
    RedisStore,
    SessionMiddleware,
)


def example_env(server: Service) -> dict[str, str]:
    return {
        "REDIS_URL": server.url,
        "ZERODOWN_SESSION_SECRETS": f"{SECRET},{OLD_SECRET}",
        "SESSION_COOKIE_SECURE": "0",  # the test bed speaks plain http
    }


@pytest.mark.parametrize("example", ["starlette_app", "fastapi_app", "flask_app"])
def test_the_examples_keep_a_cart_that_their_instances_share(
    procs: ProcessGroup, redis_server: Service, example: str
) -> None:
    app, env = f"examples.{example}:app", example_env(redis_server)
    if example == "flask_app":
        instances = [procs.gunicorn(app, env=env, args=["-k", "gthread"]) for _ in range(2)]
    else:
        instances = [procs.uvicorn(app, env=env) for _ in range(2)]
    with httpx.Client() as http:
        assert http.post(f"{instances[0].url}/cart/add?item=book").json() == {"items": ["book"]}
        cookie = http.cookies["session"]
        added = http.post(f"{instances[1].url}/cart/add?item=pen")
        assert added.json() == {"items": ["book", "pen"]}
        assert http.get(f"{instances[0].url}/cart").json() == {"items": ["book", "pen"]}
        assert http.post(f"{instances[1].url}/cart/add?item=").status_code in (400, 422)
        assert http.cookies["session"] == cookie


@pytest.mark.e2e
def test_a_rolling_restart_loses_no_request_no_session_and_no_write(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    """Two Starlette examples replaced in turn while 30 users call the rehearsal's session
    endpoint, each call one more write to their session, over TLS with Secure cookies."""
    env = {**example_env(procs.redis()), "SESSION_COOKIE_SECURE": "1"}
    plan = RehearsalPlan(
        "examples.starlette_app:app", rate=100, duration=22, session_users=30, env=env
    )
    report = rehearse(plan, tmp_path, Progress(None))
    result = report.result
    assert result.failed == [], report.render()
    assert result.session_losses() == [], report.render()
    calls = result.session_calls
    assert len(calls) >= 300, report.render()
    # Users whose count grew from before the deploy to after it: their session moved.
    spanning = {
        call.visitor
        for call in calls
        if call.started > report.deploy_ended and (call.session_count or 0) > 1
    } & {call.visitor for call in calls if call.ended < report.deploy_started}
    assert spanning, report.render()


def test_lazy_sessions_cost_nothing_until_used(redis_server: Service) -> None:
    async def main() -> None:
        store = RedisStore(redis_server.url)
        async with client(store) as eager:
            await eager.post("/set?key=warm&value=up")
            cookie = with_cookie(eager.cookies["session"])
        async with client(store, lazy=True) as http:
            before = commands(redis_server)
            assert (await http.get("/noop", headers=cookie)).status_code == 200
            assert calls_between(before, commands(redis_server)) == {}
            assert (await http.get("/loaded", headers=cookie)).json() == {"warm": "up"}
            with pytest.raises(RuntimeError, match=r"await request.session.load\(\)"):
                await http.get("/get", headers=cookie)

    run(main)


def test_a_flask_route_that_never_touches_the_session_costs_nothing(
    redis_server: Service,
) -> None:
    with flask_client(RedisStore(redis_server.url)) as http:
        http.post("/set?key=user&value=ada")
        before = commands(redis_server)
        assert http.get("/noop").text == "ok"
        assert calls_between(before, commands(redis_server)) == {}


def test_websockets_read_and_change_the_session() -> None:
    store = MemoryStore()
    app = SessionMiddleware(make_app(Gates()), store=store, secrets=[SECRET])

    async def websocket(cookie: str) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        inbox = [{"type": "websocket.connect"}]

        async def receive() -> dict[str, Any]:
            if inbox:
                return inbox.pop()
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

        async def send(message: Any) -> None:
            sent.append(dict(message))

        scope = {
            "type": "websocket",
            "path": "/ws",
            "raw_path": b"/ws",
            "query_string": b"",
            "root_path": "",
            "scheme": "wss",
            "headers": [(b"cookie", f"session={cookie}".encode())],
            "client": ("127.0.0.1", 5000),
            "server": ("testserver", 443),
            "subprotocols": [],
        }
        await app(scope, receive, send)
        return sent

    async def main() -> None:
        async with client(store) as http:
            await http.post("/set?key=user&value=ada")
            sent = await websocket(http.cookies["session"])
            assert json.loads(sent[1]["text"]) == {"user": "ada", "seen": "ada"}
            assert (await http.get("/get")).json() == {"user": "ada", "seen": "ada"}

    run(main)


def test_a_sentinel_managed_client_is_a_store_like_any_other(
    procs: ProcessGroup, redis_server: Service, tmp_path: Path
) -> None:
    import redis.asyncio.sentinel as redis_sentinel

    port = free_port()
    config = tmp_path / "sentinel.conf"  # sentinel rewrites its config, so a file of its own
    config.write_text(
        f"port {port}\nbind {LOOPBACK}\nsentinel monitor main {LOOPBACK} {redis_server.port} 1\n"
    )
    binary = shutil.which("redis-server")
    assert binary is not None
    procs.start("sentinel", [binary, str(config), "--sentinel"])

    async def main() -> dict[str, str]:
        sentinel = redis_sentinel.Sentinel([(LOOPBACK, port)], socket_timeout=0.5)
        for _ in range(100):  # until the sentinel listens
            try:
                await sentinel.discover_master("main")
                break
            except (redis_py.ConnectionError, redis_sentinel.MasterNotFoundError):
                await asyncio.sleep(0.05)
        async with client(RedisStore(sentinel.master_for("main"))) as http:
            await http.post("/set?key=user&value=ada")
            return dict((await http.get("/get")).json())

    assert run(main) == {"user": "ada"}
    assert len(stored(redis_server)) == 1


def test_a_cluster_client_is_a_store_like_any_other(procs: ProcessGroup, tmp_path: Path) -> None:
    import redis.asyncio.cluster as redis_cluster

    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    assert binary is not None
    assert cli is not None
    ports = [free_port() for _ in range(3)]
    for port in ports:
        node = tmp_path / f"node-{port}"
        node.mkdir()
        argv = [binary, "--port", str(port), "--bind", LOOPBACK, "--cluster-enabled", "yes"]
        # The bus port defaults to port + 10000, past 65535 for a high free port.
        argv += ["--cluster-port", str(free_port())]
        argv += ["--dir", str(node), "--save", "", "--appendonly", "no"]
        wait_for_port(procs.start(f"cluster-{port}", argv), port)
    nodes = [f"{LOOPBACK}:{port}" for port in ports]
    subprocess.run(
        [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    # Every node must agree before the first call: until a node knows the slots, it answers
    # CLUSTERDOWN and the client backs off past the store's 250 ms bound.
    probes = [redis_py.Redis(host=LOOPBACK, port=port) for port in ports]
    for _ in range(200):
        infos = [probe.execute_command("CLUSTER", "INFO") for probe in probes]
        if all(b"cluster_state:ok" in info for info in infos):
            break
        time.sleep(0.05)

    async def main() -> dict[str, str]:
        cluster = redis_cluster.RedisCluster(host=LOOPBACK, port=ports[0])
        try:
            async with client(RedisStore(cluster)) as http:
                await http.post("/set?key=theme&value=dark")
                await http.post("/login?user=ada")  # moves the session to another key
                seen = dict((await http.get("/get")).json())
                await http.post("/logout")
                assert (await http.get("/get")).json() == {}
                return seen
        finally:
            await cluster.aclose()

    assert run(main) == {"theme": "dark", "user": "ada"}
