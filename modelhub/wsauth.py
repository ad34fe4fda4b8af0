"""Websocket authentication that costs nothing until a consumer asks who the user is.

Channels' AuthMiddleware loads the session and the user for every socket as it connects, on
Django's single sync thread. Sockets that subscribe with a stream token never need either, so
here the session is attached lazily (as channels' SessionMiddleware does) and the user is resolved
on first use by `resolve_user`, then cached in the scope.
"""

from __future__ import annotations

from typing import Any

from channels.auth import get_user
from channels.sessions import SessionMiddlewareStack
from django.contrib.auth.models import AnonymousUser

_USER = "ludus.user"


async def resolve_user(scope: dict[str, Any]) -> Any:
    if _USER not in scope:
        if "session" not in scope:
            scope[_USER] = AnonymousUser()
        else:
            scope[_USER] = await get_user(scope)
            scope["user"] = scope[_USER]
    return scope[_USER]


def LazyAuthMiddlewareStack(inner: Any) -> Any:
    return SessionMiddlewareStack(inner)
