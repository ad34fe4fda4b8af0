"""Websocket authentication that costs nothing until a consumer asks who the user is.

Channels' AuthMiddleware loads the session and the user for every socket as it connects, on
Django's single sync thread, and its SessionMiddleware wraps every message a socket sends to save
a modified session (which it only ever does for HTTP responses). Sockets that subscribe with a
stream token need neither, so here the session is made on first use, send goes unwrapped, and the
user is resolved on first use by `resolve_user`, then cached in the scope.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.auth import get_user
from channels.sessions import CookieMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.utils.functional import SimpleLazyObject

_USER = "ludus.user"


async def resolve_user(scope: dict[str, Any]) -> Any:
    if _USER not in scope:
        if "session" not in scope:
            scope[_USER] = AnonymousUser()
        else:
            scope[_USER] = await get_user(scope)
            scope["user"] = scope[_USER]
    return scope[_USER]


class LazySessionMiddleware:
    """Puts the session named by the session cookie in the scope, read when first used. Sockets
    never change the session, so nothing is saved."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.store = import_module(settings.SESSION_ENGINE).SessionStore

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = scope["cookies"].get(settings.SESSION_COOKIE_NAME)
        session = SimpleLazyObject(lambda: self.store(key))
        return await self.inner(dict(scope, session=session), receive, send)


def LazyAuthMiddlewareStack(inner: Any) -> Any:
    return CookieMiddleware(LazySessionMiddleware(inner))
