"""API tokens for researchers: scripts fetch leaderboard and battle-log exports with
``Authorization: Bearer <token>``; a browser with a logged-in session needs none.

The services (create, revoke, touch) are the only writers of ApiToken rows; ``token_find`` reads;
``researcher_access`` gates the export views with both."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils import timezone

from arena import ratelimit
from arena.models import API_SCOPES, ApiToken
from arena.services import ip_hash

# What each scope lets a token read, in the words of the tokens page.
SCOPE_LABELS = {
    "leaderboard:read": "Leaderboards: the current one and every snapshot",
    "battles:read": "Battles: votes in the public battle-log format",
    "datasets:read": "Datasets: frozen versions, their manifests and files",
}
PREFIX = "ludus_"
MAX_PER_USER = 20
# last_used_at is written at most this often per token, so that a script polling an export does
# not turn every read into a write.
TOUCH_EVERY = timedelta(minutes=1)


class TokenError(Exception):
    """A token request that cannot be granted (the message is shown to the user)."""


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


# -- services ---------------------------------------------------------------------------------


def token_create(
    *, user: User, name: str, scopes: Sequence[str] | None = None
) -> tuple[ApiToken, str]:
    """A new token for ``user``: the row, and the token itself (not stored; shown once). It may
    read everything the API serves unless ``scopes`` (among API_SCOPES) narrows it."""
    name = name.strip()
    if not name:
        raise TokenError("Give the token a name.")
    scopes = list(API_SCOPES if scopes is None else scopes)
    if unknown := sorted(set(scopes) - set(API_SCOPES)):
        raise TokenError(f"Unknown scope(s) {', '.join(unknown)}.")
    if not scopes:
        raise TokenError("Choose at least one scope.")
    scopes = [scope for scope in API_SCOPES if scope in scopes]  # once each, in a fixed order
    if ApiToken.objects.filter(user=user).count() >= MAX_PER_USER:
        raise TokenError(f"You have {MAX_PER_USER} tokens already. Revoke one first.")
    raw = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=raw[: len(PREFIX) + 6], digest=_digest(raw), scopes=scopes
    )
    return token, raw


def token_revoke(*, user: User, token_id: int) -> bool:
    """Delete one of ``user``'s tokens; False when there is no such token of theirs."""
    deleted, _ = ApiToken.objects.filter(user=user, id=token_id).delete()
    return deleted > 0


def token_touch(*, token: ApiToken) -> None:
    """Record that ``token`` was used (at most once per TOUCH_EVERY)."""
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(id=token.id).update(last_used_at=now)
        token.last_used_at = now


# -- selectors --------------------------------------------------------------------------------


def token_find(*, raw: str) -> ApiToken | None:
    """The token ``raw`` names, with its user, if that user is active; None otherwise."""
    if not raw.startswith(PREFIX) or len(raw) > 100:
        return None
    token = ApiToken.objects.select_related("user").filter(digest=_digest(raw)).first()
    if token is None or not token.user.is_active:
        return None
    return token


# -- the views' gate --------------------------------------------------------------------------


def _unauthorized(message: str) -> HttpResponse:
    response = JsonResponse({"error": message}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="ludus"'
    return response


def _too_many() -> HttpResponse:
    return HttpResponse(
        "Too many export requests. Please wait a minute.", status=429, content_type="text/plain"
    )


def researcher_access(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Let a view through for a logged-in session or a valid bearer token, within the export rate
    limits (per account and per IP). A token request that fails gets 401 with a JSON error; a
    browser without a session (a request that accepts HTML) is sent to the login page, and a
    script without a token gets 401 too: a login page is no CSV for pandas to read.

    The per-IP limit counts every request, before any token is looked up: a client trying tokens
    (bad ones included) meets it as an exporter does."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        address = ip_hash(request.META.get("REMOTE_ADDR", ""))
        if not ratelimit.hit("export-ip", [(address, settings.ARENA_EXPORTS_PER_MINUTE_PER_IP)]):
            return _too_many()
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, raw = header.partition(" ")
            if scheme.lower() != "bearer" or not raw.strip():
                return _unauthorized("Send the token as 'Authorization: Bearer <token>'.")
            token = token_find(raw=raw.strip())
            if token is None:
                return _unauthorized("Unknown or revoked API token.")
            token_touch(token=token)
            request.user = token.user
        elif not request.user.is_authenticated:
            if "text/html" in request.headers.get("Accept", ""):
                return redirect_to_login(request.get_full_path())
            return _unauthorized(
                "Log in, or send an API token as 'Authorization: Bearer <token>'"
                f" (create one at {reverse('api-tokens')})."
            )
        if not ratelimit.hit(
            "export", [(f"user:{request.user.pk}", settings.ARENA_EXPORTS_PER_MINUTE)]
        ):
            return _too_many()
        return view(request, *args, **kwargs)

    return wrapped
