"""The Celery app's wiring: its broker transport."""

from __future__ import annotations

from typing import Any

from kombu import Queue
from kombu.transport import redis as kombu_redis

from worker.celery import app


def test_it_delivers_through_kombu_s_own_redis_transport_in_order_with_acks() -> None:
    with app.connection_for_write() as conn:
        assert type(conn.transport) is kombu_redis.Transport
        channel: Any = conn.default_channel
        queue = Queue("ludus.test.broker", channel=channel)
        queue.declare()
        queue.purge()
        with conn.Producer(channel) as producer:
            for i in range(3):
                producer.publish({"n": i}, routing_key=queue.name, serializer="json")
        got = []
        for _ in range(3):
            message = queue.get(no_ack=False)
            assert message is not None
            got.append(message.payload["n"])
            message.ack()
        assert got == [0, 1, 2] and queue.get() is None
        queue.delete()
