"""ASGI entry: one process serves HTTP and websockets on one port.

HTTP takes Django's ordinary WSGI path on a2wsgi's thread pool (settings.WEB_THREADS threads):
under Django's ASGI handler every synchronous middleware hook and view hops to a thread and back,
about 2.5x the CPU per request measured on the vote endpoint. Websockets go through Channels on the
event loop, authenticated through the session. Static files are answered on the event loop by
ServeStatic from STATIC_ROOT (what collectstatic wrote): a content-hashed name is cached for good
(immutable), and a client that accepts gzip gets the compressed copy. Static answers carry the
security headers Django's middleware gives its own (static_headers).

How slow clients are bounded: a request body is read by its pool thread as Django asks for it,
within settings.REQUEST_BODY_MAX (config.request_body); a streamed response (an export) holds its
thread while a slow reader drains it, so config.streaming caps how many stream at once per process
(settings.STREAMING_RESPONSES_MAX, below WEB_THREADS) and the rest of the pool keeps serving.
"""

import os
from wsgiref.headers import Headers

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_wsgi_app = get_wsgi_application()

from a2wsgi import WSGIMiddleware  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from csp.utils import build_policy  # noqa: E402
from django.conf import settings  # noqa: E402
from servestatic.asgi import ServeStaticASGI  # noqa: E402
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware  # noqa: E402

from config.process import settle  # noqa: E402
from config.request_body import RequestBodyLimit  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402
from modelhub.wsauth import LazyAuthMiddlewareStack  # noqa: E402

# ServeStatic answers before Django's middleware would run: the same policy (a file opened by
# itself, an SVG for one, runs no script and is framed by no one) and no content sniffing.
STATIC_SECURITY_HEADERS = {
    "Content-Security-Policy": build_policy(),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": settings.X_FRAME_OPTIONS,
    "Referrer-Policy": settings.SECURE_REFERRER_POLICY,
}
if settings.SECURE_HSTS_SECONDS:
    # Browsers heed it only over TLS (RFC 6797), where SecurityMiddleware sends it on pages.
    STATIC_SECURITY_HEADERS["Strict-Transport-Security"] = f"max-age={settings.SECURE_HSTS_SECONDS}"


def static_headers(headers: Headers, path: str, url: str) -> None:
    for name, value in STATIC_SECURITY_HEADERS.items():
        headers[name] = value


application = ProtocolTypeRouter(
    {
        "http": ServeStaticASGI(
            # (django-stubs types the handler's response as HttpResponseBase, an iterable of bytes)
            RequestBodyLimit(WSGIMiddleware(django_wsgi_app, workers=settings.WEB_THREADS)),  # type: ignore[arg-type]
            root=settings.STATIC_ROOT,
            prefix=settings.STATIC_URL,
            autorefresh=settings.DEBUG,  # a collectstatic while serving shows without a restart
            add_headers_function=static_headers,
        ),
        "websocket": AllowedHostsOriginValidator(
            LazyAuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
if settings.BEHIND_PROXY:
    # The client's address and scheme from X-Forwarded-For/-Proto, believed only when the peer
    # is one of the configured proxies (uvicorn's own middleware; the Procfile runs uvicorn with
    # --no-proxy-headers so that it trusts nobody by itself, not even loopback).
    application = ProxyHeadersMiddleware(application, trusted_hosts=settings.TRUSTED_PROXIES)
settle()
