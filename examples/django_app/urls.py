"""``/`` answers at once, ``/slow?ms=N`` after N milliseconds (as the other examples)."""

from __future__ import annotations

import time

from django.http import HttpRequest, JsonResponse
from django.urls import path

from examples._common import RELEASE, sleep_ms


def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"hello": "world"}, headers={"X-Release": RELEASE})


def slow(request: HttpRequest) -> JsonResponse:
    try:
        ms = sleep_ms(request.GET.get("ms"))
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    time.sleep(ms / 1000)
    return JsonResponse({"slept_ms": ms}, headers={"X-Release": RELEASE})


urlpatterns = [path("", index), path("slow", slow)]
