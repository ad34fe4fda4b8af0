"""Log in and sign-up (throttled), and API tokens. Django's auth views do the rest (log out,
password reset) and the log in itself."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from arena import apitokens, ratelimit
from arena.models import API_SCOPES, ApiToken
from arena.services import battles_adopt, ip_hash

TOO_MANY_ATTEMPTS = "Too many attempts. Please wait a minute."


def auth_attempt_allowed(request: HttpRequest, *, username: str) -> bool:
    """Count one log-in or sign-up attempt against the client's IP and the username tried: a
    password guesser meets the limit whether it tries many names from one address or one name
    from many."""
    return ratelimit.hit(
        "auth",
        [
            (
                ip_hash(request.META.get("REMOTE_ADDR", "")),
                settings.AUTH_ATTEMPTS_PER_MINUTE_PER_IP,
            ),
            (
                f"name:{username.strip().lower()[:150]}",
                settings.AUTH_ATTEMPTS_PER_MINUTE_PER_USERNAME,
            ),
        ],
    )


def _too_many() -> HttpResponse:
    return HttpResponse(TOO_MANY_ATTEMPTS, status=429, content_type="text/plain")


_login = LoginView.as_view()


@require_http_methods(["GET", "POST"])
def login_throttled(request: HttpRequest) -> HttpResponseBase:
    """Django's LoginView, each attempt counted first (429 past the limits)."""
    if request.method == "POST" and not auth_attempt_allowed(
        request, username=str(request.POST.get("username", ""))
    ):
        return _too_many()
    return _login(request)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and not auth_attempt_allowed(
        request, username=str(request.POST.get("username", ""))
    ):
        return _too_many()
    form: UserCreationForm[Any] = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        session_key = request.session.session_key or ""
        battles_adopt(session_key=session_key, user_id=user.pk)  # keep the history of this browser
        login(request, user)
        return redirect("arena-home")
    return render(request, "registration/signup.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    """List the account's API tokens and create one; a new token is shown once, on this reply."""
    created = None
    error = ""
    if request.method == "POST":
        try:
            _, created = apitokens.token_create(
                user=request.user,  # type: ignore[arg-type]
                name=request.POST.get("name", "")[:100],
                # The page's form always says which scopes it offered; a post without the
                # scope choice (an older form, a script) asks for every scope as before.
                scopes=request.POST.getlist("scopes") if "scopes_offered" in request.POST else None,
            )
        except apitokens.TokenError as exc:
            error = str(exc)
    tokens = ApiToken.objects.filter(user=request.user.pk)
    chosen = request.POST.getlist("scopes") if error else API_SCOPES
    context = {
        "tokens": tokens,
        "created": created,
        "error": error,
        "scopes": [(scope, apitokens.SCOPE_LABELS[scope], scope in chosen) for scope in API_SCOPES],
    }
    return render(request, "registration/api_tokens.html", context, status=400 if error else 200)


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    if not apitokens.token_revoke(user=request.user, token_id=token_id):  # type: ignore[arg-type]
        raise Http404("No such token.")
    return redirect("api-tokens")
