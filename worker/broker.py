"""Kombu's Redis transport with one synchronous Redis client per channel.

Kombu makes a new `redis.Redis` for every synchronous command it sends outside its event loop: the
publish of each task, the bookkeeping of each delivered message and each late ack. Making one
copies redis-py's table of response callbacks, about 60 µs here, three times for every
generation. The client is thread-safe (each command takes a connection from the channel's pool),
so one per channel serves every thread.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        if self._sync_client is None:
            self._sync_client = super()._create_client()  # type: ignore[misc]
        return self._sync_client


class Transport(kombu_redis.Transport):
    Channel = Channel
