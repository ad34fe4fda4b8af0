"""The Celery app's wiring: its broker transport."""

from __future__ import annotations

from typing import Any

import pytest
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


@pytest.mark.django_db(transaction=True)
def test_it_announces_a_worker_s_queues_while_it_runs_and_withdraws_them_on_shutdown() -> None:
    from modelhub import presence
    from tests.helpers import start_worker, stop_worker

    proc, hostname = start_worker(queues="ludus.test.presence", concurrency=1)
    try:
        (announced,) = [w for w in presence.presence_list() if w["hostname"] == hostname]
        assert announced["queues"] == ["ludus.test.presence"]
    finally:
        stop_worker(proc)
    assert hostname not in {w["hostname"] for w in presence.presence_list()}
    assert presence.presence_expires_in(hostname=hostname) is None
