"""Feature flags through OpenFeature, with zerodown's deploy context: a new checkout that
only the canary cohort gets while the canary runs.

    uvicorn examples.flags_app:app

The provider here is the SDK's in-memory one with one targeting rule, standing for your
vendor's (flagd, LaunchDarkly, Unleash...), whose rule would be the same: ``zerodown.cohort``
is ``canary``. ``zerodown rehearse --strategy canary`` sets the cohort, so the canary's
instances take the new path under the deploy and the stable ones keep the old one.
"""

from __future__ import annotations

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import zerodown
import zerodown.openfeature
from examples._common import RELEASE

FLAG = "new-checkout"


def canary_only(
    flag: InMemoryFlag[bool], context: EvaluationContext
) -> FlagResolutionDetails[bool]:
    variant = "on" if context.attributes.get("zerodown.cohort") == "canary" else "off"
    return FlagResolutionDetails(
        value=flag.variants[variant], variant=variant, reason=Reason.TARGETING_MATCH
    )


api.set_provider(
    InMemoryProvider(
        {
            FLAG: InMemoryFlag(
                default_variant="off",
                variants={"on": True, "off": False},
                context_evaluator=canary_only,
            )
        }
    )
)
zerodown.openfeature.instrument()
flags = api.get_client()


async def checkout(request: Request) -> JSONResponse:
    new = flags.get_boolean_value(FLAG, False)
    return JSONResponse(
        {"checkout": "new" if new else "classic"},
        headers={"X-Release": RELEASE, "X-Checkout": "new" if new else "classic"},
    )


app = zerodown.ASGIMiddleware(Starlette(routes=[Route("/", checkout)]))
