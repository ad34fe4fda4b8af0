"""What the arena's services share: the refusals they raise (which the apps above the arena
raise too) and the requester's IP hash."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings


class ServiceError(Exception):
    """A request a service refuses; `status` is the HTTP status and the message is for the user.
    The subclasses below name the usual refusals; collection's services raise them too."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


# The arena's name for a refusal of its own.
ArenaError = ServiceError


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class TooEarly(ServiceError):
    status = 425


class RateLimited(ServiceError):
    status = 429


class Blocked(ServiceError):
    status = 422


@lru_cache(maxsize=4)
def _ip_key(secret: str) -> bytes:
    return hashlib.sha256(("arena.ip:" + secret).encode()).digest()


def ip_identity(ip: str) -> str:
    """What one visitor's address is counted as: an IPv4 address itself (an IPv4-mapped IPv6
    address too), and an IPv6 address's /64 network, since one subscriber is usually given a
    whole /64 and could otherwise take a new address, and a new per-IP budget, at will."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip.strip()
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def ip_hash(ip: str) -> str:
    """A salted, keyed hash of an IP address's identity (ip_identity): enough to group abuse and
    apply per-IP limits, never the address itself."""
    identity = ip_identity(ip) if ip else ""
    if not identity:
        return ""
    return hmac.new(_ip_key(settings.SECRET_KEY), identity.encode(), hashlib.sha256).hexdigest()[
        :32
    ]
