"""The vote endpoint on the event loop, in front of Django: the arena's hottest request.

Through Django, a vote costs about 1.5 ms of CPU in the web process, most of it in machinery around
three round trips (the session in Redis, the rate limits in Redis, the statement in PostgreSQL).
Here the same request is answered on the event loop, with async Redis and an async psycopg pool.

It answers only what it can answer exactly as `views.battle_vote_view` behind Django's middleware
would, and hands everything else to Django untouched (before anything is counted or stored):
a signed-in user, a session not in the session cache, a plain (non-htmx) form post, a host not
allowed, a failed CSRF check, a form that does not validate. What it answers goes through the same
code as the view: Django's CSRF middleware decides, `services.vote_cast_async` runs the same
limits, statement and refusals as `services.vote_cast`, `views.vote_verdict` / `vote_refused` build
the response, and Django's response middleware adds the same headers. It switches itself off when
the settings differ from those it was written for (middleware list, session engine).
"""

from __future__ import annotations

import io
import logging
import re
import uuid
import weakref
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.core.cache import caches
from django.core.exceptions import DisallowedHost, PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.log import log_response

from arena import ratelimit, services, views
from arena.forms import VoteForm
from arena.selectors import Requester

logger = logging.getLogger("django.request")

# The middleware this module stands in for, in order. Another list switches the fast path off.
EXPECTED_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
MAX_BODY = 16 * 1024  # a vote is well under 1 KB; larger bodies go to Django
UUID_RE = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # Django's <uuid:>


def enabled() -> bool:
    """Whether the settings are those the fast path reproduces."""
    return (
        list(settings.MIDDLEWARE) == EXPECTED_MIDDLEWARE
        and settings.SESSION_ENGINE == SESSION_ENGINE
        and not settings.SESSION_SAVE_EVERY_REQUEST
        and not settings.CSRF_USE_SESSIONS
        and settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    )


def _no_response(request: Any) -> HttpResponse:  # the middleware's get_response, never called
    raise AssertionError("unreachable")


class _CsrfProbe(CsrfViewMiddleware):
    """Django's CSRF checks without the rejection's page and log line: a rejected request goes to
    Django, which rejects it again, the usual way."""

    def _reject(self, request: Any, reason: str) -> HttpResponse:
        return HttpResponse(status=403)


_pools: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


async def _pool() -> Any:
    """The psycopg AsyncConnectionPool of the running loop (autocommit: the vote statement is its
    own transaction; client-side binding: it runs as EXECUTE of a prepared statement, which takes
    no server-side parameters)."""
    import asyncio

    import psycopg
    from django.db import connections
    from psycopg_pool import AsyncConnectionPool

    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        params = connections["default"].get_connection_params()
        params |= {"cursor_factory": psycopg.AsyncClientCursor, "autocommit": True}
        pool = AsyncConnectionPool(
            "",
            kwargs=params,
            min_size=1,
            max_size=settings.DB_POOL_MAX,
            timeout=20,
            open=False,
            configure=_prepare,
        )
        _pools[loop] = pool
        await pool.open()
    return pool


async def _prepare(conn: Any) -> None:
    """Each pool connection holds the vote statement prepared, with a generic plan (its lookups
    are by primary key: one plan fits every vote)."""
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    await conn.execute(services.vote_prepare_sql())


async def close() -> None:
    """Close the running loop's pool and Redis client (tests; a server process just exits)."""
    import asyncio

    loop = asyncio.get_running_loop()
    pool = _pools.pop(loop, None)
    if pool is not None:
        await pool.close()
    await ratelimit.async_client_close()


async def _session(session_key: str) -> dict[str, Any] | None:
    """The session's data from the session cache (what cached_db's load reads first), or None when
    it is not there (Django then reads the database)."""
    from django.contrib.sessions.backends.cached_db import SessionStore

    if len(session_key) < 8:  # what SessionBase accepts as a key
        return None
    cache = caches[settings.SESSION_CACHE_ALIAS]
    raw = await ratelimit.async_client().get(
        cache.make_key(SessionStore.cache_key_prefix + session_key)
    )
    if raw is None:
        return None
    data = cache._cache._serializer.loads(raw)  # type: ignore[attr-defined]
    return data if isinstance(data, dict) else None


class VoteFastPath:
    """ASGI app: POST /b/<uuid>/vote/ answered here when it can be, everything else to `app`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.on = enabled()
        zero = str(uuid.UUID(int=0))
        path = reverse("battle-vote", kwargs={"battle_id": uuid.UUID(int=0)})
        self.path = re.compile(re.escape(path).replace(re.escape(zero), f"({UUID_RE})"))
        self.middleware = (
            SecurityMiddleware(_no_response),
            CommonMiddleware(_no_response),
            XFrameOptionsMiddleware(_no_response),
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        match = (
            self.path.fullmatch(scope.get("path", ""))
            if self.on
            and scope["type"] == "http"
            and scope.get("method") == "POST"
            and not scope.get("root_path")
            else None
        )
        if match is None:
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more and len(body) <= MAX_BODY:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        response = None if more else await self._answer(scope, body, uuid.UUID(match.group(1)))
        if response is None:
            await self.app(scope, _replay(body, more, receive), send)
            return
        headers = [(k.encode("latin1"), v.encode("latin1")) for k, v in response.items()]
        headers += [
            (b"set-cookie", c.output(header="").strip().encode("latin1"))
            for c in response.cookies.values()
        ]
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": response.content})

    async def _answer(self, scope: dict[str, Any], body: bytes, battle_id: uuid.UUID) -> Any:
        """The response, or None to hand the request to Django."""
        request = ASGIRequest(scope, io.BytesIO(body))
        security, common, xframe = self.middleware
        try:
            if security.process_request(request) or common.process_request(request):
                return None  # a redirect (SSL, www) is Django's to send
            request.get_host()
        except (DisallowedHost, PermissionDenied):
            return None
        if request.headers.get("HX-Request") != "true":
            return None
        csrf = _CsrfProbe(_no_response)
        csrf.process_request(request)
        if request.META.get("CSRF_COOKIE_NEEDS_UPDATE") or csrf.process_view(
            request, views.battle_vote_view, (), {"battle_id": battle_id}
        ):
            return None
        session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME, "")
        data = await _session(session_key) if session_key else None
        if not data or SESSION_KEY in data:
            return None  # no session in the cache, an empty one, or a signed-in user
        form = VoteForm(request.POST)
        if not form.is_valid():
            return None
        requester = Requester(
            user_id=None,
            session_key=session_key,
            ip_hash=services.ip_hash(request.META.get("REMOTE_ADDR", "")),
        )
        response: HttpResponse
        try:
            result = await services.vote_cast_async(
                battle_id=battle_id,
                turn_id=form.cleaned_data["turn"],
                requester=requester,
                choice=form.cleaned_data["choice"],
                pool=await _pool(),
                prepared=True,
            )
            response = views.vote_verdict(request, result)
        except services.ArenaError as exc:
            response = views.vote_refused(exc)
        # What the response middleware would add, in Django's order: the session was read (Vary:
        # Cookie), never changed; CSRF, auth, messages and htmx add nothing here. These three add
        # headers to the response they are given (Common's redirect is for paths without the
        # trailing slash, which this path has).
        xframe.process_response(request, response)
        common.process_response(request, response)
        patch_vary_headers(response, ("Cookie",))
        security.process_response(request, response)
        if response.status_code >= 400:
            log_response(
                "%s: %s", response.reason_phrase, request.path, response=response, request=request
            )
        return response


def _replay(body: bytes, more: bool, receive: Any) -> Any:
    """A receive() that gives back the body already read, then reads on."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay
