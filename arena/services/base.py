"""What the arena's services share: the refusals they raise and the requester's IP hash."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from django.conf import settings


class ArenaError(Exception):
    """A request the arena refuses; `status` is the HTTP status and the message is for the user."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class NotFound(ArenaError):
    status = 404


class Conflict(ArenaError):
    status = 409


class TooEarly(ArenaError):
    status = 425


class RateLimited(ArenaError):
    status = 429


class Blocked(ArenaError):
    status = 422


@lru_cache(maxsize=4)
def _ip_key(secret: str) -> bytes:
    return hashlib.sha256(("arena.ip:" + secret).encode()).digest()


def ip_hash(ip: str) -> str:
    """A salted, keyed hash of an IP address: enough to group abuse, never the address itself."""
    if not ip:
        return ""
    return hmac.new(_ip_key(settings.SECRET_KEY), ip.encode(), hashlib.sha256).hexdigest()[:32]
