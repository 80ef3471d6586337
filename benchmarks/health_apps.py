"""The same readiness endpoint with one in-memory check, by zerodown and by fastapi-health."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi_health import health as fastapi_health_endpoint
from starlette.applications import Starlette

import zerodown
from zerodown.health import Check


async def database_online() -> bool:
    return True


registry = zerodown.Health(process_checks=False)
# Served from the cache in the benchmark: the check runs once, the probes read its result.
registry.add(Check("database_online", database_online, cache_ttl=3600))
zerodown_app = zerodown.ASGIMiddleware(
    Starlette(), health=registry, probe_access=zerodown.ProbeAccess(version="1.0.0")
)

fastapi_health_app = FastAPI()
fastapi_health_app.add_api_route("/readyz", fastapi_health_endpoint([database_online]))
