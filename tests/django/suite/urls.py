"""Views of the behaviour tests: the user in the session, a logout, a visit."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path


def user(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.session.get("user", "nobody"))


def visit(request: HttpRequest) -> HttpResponse:
    request.session["visited"] = True
    return HttpResponse(request.session.get("user", "nobody"))


def logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return HttpResponse("logged out")


urlpatterns = [path("user", user), path("visit", visit), path("logout", logout)]
