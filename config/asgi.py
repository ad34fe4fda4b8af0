"""ASGI entry: HTTP through Django's WSGI handler (one thread hop per request, see
config.wsgi_bridge); websockets through Channels (authenticated through the session)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_wsgi_app = get_wsgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from config.process import settle  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402
from config.staticfiles import StaticFilesApp  # noqa: E402
from config.wsgi_bridge import WsgiBridge  # noqa: E402
from modelhub.wsauth import LazyAuthMiddlewareStack  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": StaticFilesApp(WsgiBridge(django_wsgi_app, threads=settings.WEB_THREADS)),
        "websocket": AllowedHostsOriginValidator(
            LazyAuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
settle()
