"""Sign-up and API tokens (Django's auth views handle log in, log out and password reset)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from arena import apitokens
from arena.models import ApiToken
from arena.services import battles_adopt


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
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
            )
        except apitokens.TokenError as exc:
            error = str(exc)
    tokens = ApiToken.objects.filter(user=request.user.pk)
    context = {"tokens": tokens, "created": created, "error": error}
    return render(request, "registration/api_tokens.html", context, status=400 if error else 200)


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    if not apitokens.token_revoke(user=request.user, token_id=token_id):  # type: ignore[arg-type]
        raise Http404("No such token.")
    return redirect("api-tokens")
