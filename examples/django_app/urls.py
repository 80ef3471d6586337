"""``/`` answers at once and ``/slow?ms=N`` after N milliseconds (as the other examples);
``/login?user=NAME``, ``/me``, ``/cart/add?item=X`` and ``/logout`` use the session."""

from __future__ import annotations

import time

from django.http import HttpRequest, JsonResponse
from django.urls import path

from examples._common import RELEASE, add_to_cart, sleep_ms


def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"hello": "world"}, headers={"X-Release": RELEASE})


def slow(request: HttpRequest) -> JsonResponse:
    try:
        ms = sleep_ms(request.GET.get("ms"))
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    time.sleep(ms / 1000)
    return JsonResponse({"slept_ms": ms}, headers={"X-Release": RELEASE})


def login(request: HttpRequest) -> JsonResponse:
    user = request.GET.get("user", "")
    if not user.isalnum() or len(user) > 50:
        return JsonResponse({"error": "user must be 1 to 50 letters or digits"}, status=400)
    request.session.cycle_key()  # a new key at login, against session fixation
    request.session["user"] = user
    return JsonResponse({"user": user})


def me(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {"user": request.session.get("user"), "cart": request.session.get("cart", [])},
        headers={"X-Release": RELEASE},
    )


def cart_add(request: HttpRequest) -> JsonResponse:
    try:
        items = add_to_cart(request.session, request.GET.get("item"))
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse({"cart": items})


def logout(request: HttpRequest) -> JsonResponse:
    request.session.flush()
    return JsonResponse({"user": None})


urlpatterns = [
    path("", index),
    path("slow", slow),
    path("login", login),
    path("me", me),
    path("cart/add", cart_add),
    path("logout", logout),
]
