"""An app with a new pricing path behind the flag ``new-pricing``, which has a bug: it fails
every request. ``zerodown rehearse --new-flag new-pricing=true`` turns it on in the new
release only, and the rehearsal shows whose requests fail."""

from __future__ import annotations

from openfeature import api
from openfeature.provider.in_memory_provider import InMemoryProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import zerodown
import zerodown.openfeature

api.set_provider(InMemoryProvider({}))  # the vendor's; the rehearsal's flags replace it
zerodown.openfeature.instrument()
flags = api.get_client()


async def price(request: Request) -> JSONResponse:
    if flags.get_boolean_value("new-pricing", False):
        raise RuntimeError("the new pricing divides by the basket's size, which can be 0")
    return JSONResponse({"price": 10})


app = zerodown.ASGIMiddleware(Starlette(routes=[Route("/", price)]))
