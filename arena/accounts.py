"""Sign-up (Django's auth views handle log in, log out and password reset)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

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
