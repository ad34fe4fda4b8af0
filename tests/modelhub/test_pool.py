"""Generations through the real pool: Celery worker, Redis streams, Channels websockets, PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application
from modelhub import metrics, services, slots, streams
from modelhub.models import Generation, GenerationStatus
from modelhub.pool import redis_client
from tests.factories import EndpointFactory, ModelFactory
from tests.helpers import receive_frame, run_async, wait_for
from tests.prometheus import metric_value
from tests.streaming import assert_gapless, collect_frames, frames_text, new_session_key

pytestmark = [pytest.mark.django_db(transaction=True)]


def _start(
    upstream,
    session_key: str,
    served_name: str = "fake-r400",
    max_tokens: int = 40,
    endpoints: list[str] | None = None,
    queue: str = "",
) -> Generation:  # type: ignore[no-untyped-def]
    model = _model(served_name, *(endpoints or [upstream.base_url]), queue=queue)
    return _pair(upstream, session_key, model, max_tokens=max_tokens)[0]


def test_it_streams_a_generation_to_a_websocket_and_stores_it(celery_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    key = new_session_key()
    generation = _start(upstream, key, max_tokens=40)
    endpoint_id = generation.model.endpoints.get().id
    frames = run_async(collect_frames(key, str(generation.id)))
    assert_gapless(frames)
    assert frames[-1]["type"] == "done"
    assert frames[-1]["finish_reason"] == "length"
    expected = "".join(f"t{i} " for i in range(40))
    assert frames_text(frames) == expected
    # Coalescing: 40 tokens at 400/s take ~100 ms, so far fewer frames than tokens.
    assert len(frames) < 40
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.DONE
    assert generation.text == expected
    assert generation.completion_tokens == 40
    assert generation.endpoint_id == endpoint_id
    figures = metrics.endpoint_figures([endpoint_id])[endpoint_id]
    assert {f: figures[f] for f in ("requests", "errors", "tokens", "ttft_count")} == {
        "requests": 1,
        "errors": 0,
        "tokens": 40,
        "ttft_count": 1,
    }
    assert generation.finished_at is not None and generation.messages[-1]["role"] == "user"
    assert generation.ttft_ms is not None and generation.ttft_ms > 0
    assert generation.duration_ms is not None and generation.duration_ms >= generation.ttft_ms
    assert generation.last_seq == frames[-1]["seq"]
    assert "fake" not in str(frames).replace("fake-r400", "")  # frames carry no model identity
    assert all(
        set(f)
        <= {
            "type",
            "id",
            "seq",
            "text",
            "finish_reason",
            "completion_tokens",
            "ttft_ms",
            "duration_ms",
            "message",
        }
        for f in frames
    )


def test_it_replays_to_late_and_reconnecting_sockets_without_gaps_or_duplicates(
    celery_worker, upstream
) -> None:  # type: ignore[no-untyped-def]
    key = new_session_key()
    generation = _start(upstream, key, served_name="fake-r200", max_tokens=60)
    first = run_async(collect_frames(key, str(generation.id)))
    # A socket arriving after the end gets the same frames from the start.
    late = run_async(collect_frames(key, str(generation.id)))
    assert late == first
    # A reconnect after frame k gets exactly k+1..end.
    k = len(first) // 2
    resumed = run_async(collect_frames(key, str(generation.id), after=first[k - 1]["seq"]))
    assert resumed == first[k:]
    assert_gapless(resumed, start=first[k]["seq"])


def test_it_serves_many_tabs_of_one_generation_at_once(celery_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    key = new_session_key()
    generation = _start(upstream, key, served_name="fake-r200", max_tokens=80)

    async def tabs() -> list[list[dict[str, Any]]]:
        return list(
            await asyncio.gather(*[collect_frames(key, str(generation.id)) for _ in range(5)])
        )

    results = run_async(tabs())
    for frames in results:
        assert_gapless(frames)
        assert frames_text(frames) == "".join(f"t{i} " for i in range(80))


def test_one_subscribe_replays_an_expired_stream_from_the_database_and_a_live_one() -> None:
    key = new_session_key()
    model = ModelFactory.create()
    expired = Generation.objects.create(
        model=model, messages=[], params={}, session_key=key, text="all of it",
        status=GenerationStatus.DONE, finish_reason="stop", last_seq=4,
    )  # fmt: skip
    live = Generation.objects.create(
        model=model, messages=[], params={}, session_key=key, status=GenerationStatus.STREAMING
    )
    streams.add_many(redis_client(), [(str(live.id), 1, "so far")])

    async def subscribe() -> Any:
        comm = WebsocketCommunicator(
            application, "/ws/generations/",
            headers=[(b"origin", b"http://testserver"), (b"cookie", f"sessionid={key}".encode())],
        )  # fmt: skip
        assert (await comm.connect())[0]
        both = [{"id": str(expired.id)}, {"id": str(live.id)}]  # no tokens: the session owns them
        await comm.send_json_to({"type": "subscribe", "generations": both})
        message = await comm.receive_json_from(timeout=10)
        await comm.disconnect()
        return message

    replay = run_async(subscribe())
    assert [(f["id"], f["seq"], f["type"], f.get("text")) for f in replay] == [
        (str(expired.id), 3, "snapshot", "all of it"),
        (str(expired.id), 4, "done", None),
        (str(live.id), 1, "delta", "so far"),
    ]


def test_it_refuses_other_peoples_generations(celery_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    owner, stranger = new_session_key(), new_session_key()
    generation = _start(upstream, owner, max_tokens=5)
    frames = run_async(collect_frames(stranger, str(generation.id)))
    assert frames == [{"type": "denied", "id": str(generation.id)}]
    garbage = run_async(collect_frames(stranger, "not-a-uuid"))
    assert garbage[0]["type"] == "denied"


def test_it_stops_a_generation_and_aborts_the_upstream_request(celery_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    stats = upstream.base_url.removesuffix("/v1") + "/stats"
    before = httpx.get(stats).json()["disconnected"]
    key = new_session_key()
    generation = _start(upstream, key, served_name="fake-r40", max_tokens=1000)
    frames = run_async(collect_frames(key, str(generation.id), stop_after=2))
    assert frames[-1]["type"] == "cancelled"
    assert_gapless(frames)
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.CANCELLED
    assert 0 < len(generation.text.split()) < 1000
    wait_for(lambda: httpx.get(stats).json()["disconnected"] > before, timeout=5)


def test_it_stops_a_generation_whose_upstream_sends_nothing(celery_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    # The read is parked waiting for the upstream's first byte when the stop comes: cancelling
    # the read there must end the generation as cancelled, not in an error and not in a hang.
    key = new_session_key()
    generation = _start(upstream, key, served_name="fake-hang", max_tokens=10)
    wait_for(
        lambda: Generation.objects.get(id=generation.id).status == GenerationStatus.STREAMING,
        timeout=10,
    )
    services.generation_stop(generation=generation)
    frames = run_async(collect_frames(key, str(generation.id), timeout=10))
    assert frames[-1]["type"] == "cancelled"
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.CANCELLED
    assert generation.error == ""


def test_it_retries_on_another_endpoint_before_the_first_token(celery_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    key = new_session_key()
    generation = _start(
        upstream, key, max_tokens=10, endpoints=["http://127.0.0.1:9/v1", upstream.base_url]
    )
    frames = run_async(collect_frames(key, str(generation.id)))
    assert frames[-1]["type"] == "done"
    generation.refresh_from_db()
    assert generation.endpoint is not None and generation.endpoint.base_url == upstream.base_url
    dead = generation.model.endpoints.get(base_url="http://127.0.0.1:9/v1")
    assert dead.healthy is False and dead.last_error
    figures = metrics.endpoint_figures([dead.id, generation.endpoint.id])
    assert (figures[dead.id]["requests"], figures[dead.id]["errors"]) == (1, 1)
    assert (
        figures[generation.endpoint.id]["requests"],
        figures[generation.endpoint.id]["errors"],
    ) == (1, 0)


@pytest.mark.parametrize(
    ("served_name", "message"),
    [
        ("fake-500", "unavailable"),
        ("fake-hang", "unavailable"),
        ("fake-die", "cut off"),
        ("fake-400", "rejected"),
    ],
)
def test_it_ends_failures_in_a_visible_error_state(
    celery_worker, upstream, served_name: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    key = new_session_key()
    generation = _start(upstream, key, served_name=served_name, max_tokens=10)
    frames = run_async(collect_frames(key, str(generation.id), timeout=20))
    assert frames[-1]["type"] == "error"
    assert message in frames[-1]["message"]
    # Error frames reach anonymous battles: no model name, served name or endpoint in them.
    for secret in (generation.model.name, served_name, "127.0.0.1", upstream.base_url):
        assert secret not in frames[-1]["message"]
    assert_gapless(frames)
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.ERROR
    assert message in generation.error


def test_a_failure_mid_answer_stores_the_text_the_page_saw_with_the_error(
    celery_worker, upstream
) -> None:  # type: ignore[no-untyped-def]
    key = new_session_key()
    generation = _start(upstream, key, served_name="fake-die", max_tokens=10)
    frames = run_async(collect_frames(key, str(generation.id), timeout=20))
    assert_gapless(frames)
    shown = "".join(f["text"] for f in frames if f["type"] == "delta")
    assert shown and frames[-1]["type"] == "error"
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.ERROR
    assert generation.text == shown and generation.last_seq == frames[-1]["seq"]
    assert generation.ttft_ms is not None and "ttft_ms" not in frames[-1]  # stored, not sent
    assert generation.endpoint is not None
    figures = metrics.endpoint_figures([generation.endpoint.id])[generation.endpoint.id]
    assert (figures["requests"], figures["errors"], figures["tokens"]) == (1, 1, 0)


def test_it_never_duplicates_output_when_a_task_is_delivered_twice(celery_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    key = new_session_key()
    generation = _start(upstream, key, max_tokens=20)
    frames = run_async(collect_frames(key, str(generation.id)))
    services.generation_run(generation_id=str(generation.id))  # a second delivery after the end
    assert streams.read_all(redis_client(), str(generation.id)) == frames
    generation.refresh_from_db()
    assert generation.text.count("t19") == 1


def test_it_fails_a_redelivered_generation_whose_worker_died_mid_stream(transactional_db) -> None:  # type: ignore[no-untyped-def]
    model = ModelFactory.create()
    generation = Generation.objects.create(
        model=model, messages=[], status=GenerationStatus.STREAMING
    )
    streams.add_many(redis_client(), [(str(generation.id), 1, "half an ans")])
    services.generation_run(generation_id=str(generation.id))
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.ERROR
    frames = streams.read_all(redis_client(), str(generation.id))
    assert [f["type"] for f in frames] == ["delta", "error"]
    assert [f["seq"] for f in frames] == [1, 2]


def test_it_reaps_generations_whose_worker_stopped_heartbeating(transactional_db) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from django.utils import timezone

    from modelhub.tasks import reap_stale_generations

    model = ModelFactory.create()
    stale = Generation.objects.create(
        model=model,
        messages=[],
        status=GenerationStatus.STREAMING,
        heartbeat_at=timezone.now() - timedelta(seconds=60),
    )
    fresh = Generation.objects.create(
        model=model, messages=[], status=GenerationStatus.STREAMING, heartbeat_at=timezone.now()
    )
    assert reap_stale_generations() == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == GenerationStatus.ERROR and "stopped responding" in stale.error
    assert fresh.status == GenerationStatus.STREAMING
    assert streams.read_all(redis_client(), str(stale.id))[-1]["type"] == "error"


def test_it_cancels_a_queued_generation_at_once(transactional_db) -> None:  # type: ignore[no-untyped-def]
    model = ModelFactory.create()
    generation = Generation.objects.create(model=model, messages=[], status=GenerationStatus.QUEUED)
    services.generation_stop(generation=generation)
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.CANCELLED
    services.generation_run(generation_id=str(generation.id))  # the queued task arrives later
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.CANCELLED


def test_it_caps_max_tokens_and_keeps_model_defaults(transactional_db, settings) -> None:  # type: ignore[no-untyped-def]
    settings.MAX_NEW_TOKENS_CAP = 100
    model = ModelFactory.create(max_tokens=50, temperature=0.3)
    assert services.generation_params(model=model) == {
        "temperature": 0.3,
        "top_p": 1.0,
        "max_tokens": 50,
    }
    assert (
        services.generation_params(model=model, overrides={"max_tokens": 10_000})["max_tokens"]
        == 100
    )


def test_it_lets_a_stream_token_stand_in_for_the_session(celery_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    owner, stranger = new_session_key(), new_session_key()
    generation = _start(upstream, owner, max_tokens=12)
    token = streams.stream_token(str(generation.id))
    frames = run_async(collect_frames(stranger, str(generation.id), token=token))
    assert frames[-1]["type"] == "done"
    assert frames_text(frames) == "".join(f"t{i} " for i in range(12))
    other = _start(upstream, owner, max_tokens=3)
    # A token is valid for its own generation only; a forged one falls back to the session check.
    assert run_async(collect_frames(stranger, str(other.id), token=token)) == [
        {"type": "denied", "id": str(other.id)}
    ]
    assert (
        run_async(collect_frames(stranger, str(other.id), token=token[:-2] + "xx"))[0]["type"]
        == "denied"
    )
    assert streams.token_age(token, str(generation.id)) is not None
    assert streams.token_age(token, str(other.id)) is None


def test_it_ends_a_generation_in_error_when_its_worker_is_killed_mid_stream(upstream) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal

    from modelhub.tasks import reap_stale_generations
    from tests.helpers import start_worker

    proc, _ = start_worker(queues="gen.doomed", concurrency=2)
    try:
        key = new_session_key()
        generation = _start(upstream, key, "fake-r20", max_tokens=1000, queue="gen.doomed")

        async def watch() -> list[dict[str, Any]]:
            frames: list[dict[str, Any]] = []
            comm = WebsocketCommunicator(
                application, "/ws/generations/",
                headers=[(b"origin", b"http://testserver"), (b"cookie", f"sessionid={key}".encode())],
            )  # fmt: skip
            await comm.connect()
            await comm.send_json_to(
                {"type": "subscribe", "generations": [{"id": str(generation.id)}]}
            )
            while len(frames) < 3:
                frames.append(await receive_frame(comm, timeout=15))
            os.kill(proc.pid, signal.SIGKILL)  # the worker dies mid-answer, acks nothing
            await asyncio.sleep(3)
            from asgiref.sync import sync_to_async

            reaped = await sync_to_async(services.generation_reap_stale)(older_than_s=2)
            assert reaped == 1
            while frames[-1]["type"] not in {"done", "error", "cancelled"}:
                frames.append(await receive_frame(comm, timeout=5))
            await comm.disconnect()
            return frames

        frames = run_async(watch())
    finally:
        proc.kill()
        proc.wait()
    assert frames[-1]["type"] == "error"
    assert "stopped responding" in frames[-1]["message"]
    assert_gapless(frames)
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.ERROR
    assert reap_stale_generations() == 0  # nothing left to reap


def test_a_worker_heartbeats_the_generations_it_streams(transactional_db) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from django.utils import timezone

    from modelhub import pool

    old = timezone.now() - timedelta(seconds=60)
    model = ModelFactory.create()
    streaming, finished = (
        Generation.objects.create(model=model, messages=[], status=status, heartbeat_at=old)
        for status in (GenerationStatus.STREAMING, GenerationStatus.DONE)
    )
    client = redis_client()
    client.delete(slots.key(model.id))
    client.zadd(slots.key(model.id), {str(streaming.id): 1.0})  # a lease about to end
    flusher = pool.Flusher(client, interval_s=3600)
    boxes = [flusher.open(str(g.id), model_id=model.id) for g in (streaming, finished)]
    heartbeat = services.Heartbeat(flusher, every_s=0.05)
    heartbeat.start()
    try:
        wait_for(
            lambda: (Generation.objects.get(id=streaming.id).heartbeat_at or old) > old, timeout=5
        )
    finally:
        heartbeat.stopped.set()
        for box in boxes:
            flusher.close(box)
    finished.refresh_from_db()
    assert finished.heartbeat_at == old  # only streaming generations are refreshed
    # The slot's lease was renewed (the finished answer, holding none, got none).
    assert (client.zscore(slots.key(model.id), str(streaming.id)) or 0) > 1.0
    assert client.zscore(slots.key(model.id), str(finished.id)) is None
    client.delete(slots.key(model.id))


def test_it_ends_a_generation_at_its_time_limit_and_closes_the_upstream(  # type: ignore[no-untyped-def]
    upstream, transactional_db, settings
) -> None:
    # Run in this process (the limit is this process's setting), from a queue no worker reads.
    settings.GENERATION_TIME_LIMIT = 0.6
    stats = upstream.base_url.removesuffix("/v1") + "/stats"
    before = httpx.get(stats).json()["disconnected"]
    generation = _start(upstream, "", "fake-r20", max_tokens=500, queue="gen.time-limit-test")

    services.generation_run(generation_id=str(generation.id))

    generation.refresh_from_db()
    assert (generation.status, generation.finish_reason) == (GenerationStatus.DONE, "time_limit")
    assert 3 <= len(generation.text.split()) <= 20  # about 0.6 s of 20 tokens/s
    frames = streams.read_all(redis_client(), str(generation.id))
    assert frames[-1]["type"] == "done" and frames[-1]["finish_reason"] == "time_limit"
    wait_for(lambda: httpx.get(stats).json()["disconnected"] > before, timeout=5)


def _pair(upstream, key: str, *models: Any, max_tokens: int = 10) -> list[Generation]:  # type: ignore[no-untyped-def]
    """Start generations of `models` together, as a battle starts its answers."""
    params = services.generation_params(model=models[0], overrides={"max_tokens": max_tokens})
    return services.generations_create(
        requests=[(model, [{"role": "user", "content": "hello"}]) for model in models],
        params=params,
        session_key=key,
    )


def _model(served_name: str, *base_urls: str, queue: str = "") -> Any:
    model = ModelFactory.create(served_name=served_name, queue=queue)
    for base_url in base_urls:
        EndpointFactory.create(model=model, base_url=base_url)
    return model


def test_answers_started_together_go_out_as_one_task_per_queue(transactional_db) -> None:  # type: ignore[no-untyped-def]
    import base64
    import json

    client = redis_client()
    queues = ["gen.pair-test-a", "gen.pair-test-a", "gen.pair-test-b"]  # no worker reads them
    client.delete(*queues)
    models = [_model("fake", queue=queue) for queue in queues]
    try:
        generations = _pair(None, "", *models)
        messages = {queue: client.lrange(queue, 0, -1) for queue in set(queues)}
    finally:
        client.delete(*queues)

    def task(raw: bytes | str) -> tuple[str, list[str]]:
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        return message["headers"]["task"], args

    ids = [str(g.id) for g in generations]
    assert [task(raw) for raw in messages["gen.pair-test-a"]] == [
        ("modelhub.tasks.run_generation", ids[:2])
    ]
    assert [task(raw) for raw in messages["gen.pair-test-b"]] == [
        ("modelhub.tasks.run_generation", ids[2:])
    ]
    stored = Generation.objects.filter(id__in=ids).order_by("created_at")
    assert {g.status for g in stored} == {GenerationStatus.QUEUED} and len(stored) == 3


def test_a_worker_s_threads_share_one_result_backend() -> None:
    """A generation worker runs each task on a thread of its pool, a new one for each answer of a
    burst: none of them builds a result backend of its own on its first task."""
    import threading

    from modelhub.tasks import run_generation

    seen: list[object] = []
    for _ in range(2):
        thread = threading.Thread(target=lambda: seen.append(run_generation.backend))
        thread.start()
        thread.join()

    assert len(seen) == 2 and seen[0] is seen[1]


def test_a_battle_s_answers_stream_side_by_side_from_one_task(celery_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    key = new_session_key()
    models = [_model("fake-r20", upstream.base_url) for _ in range(2)]
    # 20 tokens at 20/s: each answer streams for a second, so their streams overlap only if they
    # run side by side.
    a, b = _pair(upstream, key, *models, max_tokens=20)

    async def both() -> list[list[dict[str, Any]]]:
        return list(
            await asyncio.gather(collect_frames(key, str(a.id)), collect_frames(key, str(b.id)))
        )

    for frames in run_async(both()):
        assert frames[-1]["type"] == "done"
        assert_gapless(frames)
        assert frames_text(frames) == "".join(f"t{i} " for i in range(20))
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.status == b.status == GenerationStatus.DONE
    assert a.started_at and b.started_at and a.finished_at and b.finished_at
    assert a.started_at < b.finished_at and b.started_at < a.finished_at  # the streams overlapped


def test_one_answer_s_failure_and_retry_leave_the_other_answer_whole(
    celery_worker, upstream
) -> None:  # type: ignore[no-untyped-def]
    key = new_session_key()
    retried = _model("fake-r400", "http://127.0.0.1:9/v1", upstream.base_url)
    dying = _model("fake-die", upstream.base_url)
    a, b, c = _pair(upstream, key, retried, dying, _model("fake-r400", upstream.base_url))

    wait_for(
        lambda: (
            Generation.objects.filter(id__in=[a.id, b.id, c.id], finished_at__isnull=False).count()
            == 3
        ),
        timeout=15,
    )
    for generation in (a, b, c):
        generation.refresh_from_db()
        frames = streams.read_all(redis_client(), str(generation.id))
        assert_gapless(frames)
        assert generation.last_seq == frames[-1]["seq"]
    assert a.status == GenerationStatus.DONE and a.text == "".join(f"t{i} " for i in range(10))
    assert a.endpoint is not None and a.endpoint.base_url == upstream.base_url
    assert b.status == GenerationStatus.ERROR and "cut off" in b.error and b.text
    assert c.status == GenerationStatus.DONE and c.text == a.text


def test_a_redelivered_pair_fails_the_answer_seen_in_part_and_runs_the_other(
    upstream, transactional_db
) -> None:  # type: ignore[no-untyped-def]
    # Run in this process, from a queue no worker reads: the task's second delivery, after its
    # worker died having streamed part of the first answer and not yet claimed the second.
    seen, waiting = _pair(
        upstream,
        "",
        _model("fake-r400", upstream.base_url, queue="gen.redelivery-test"),
        _model("fake-r400", upstream.base_url, queue="gen.redelivery-test"),
    )
    Generation.objects.filter(id=seen.id).update(status=GenerationStatus.STREAMING)
    streams.add_many(redis_client(), [(str(seen.id), 1, "t0 t1 ")])

    services.generations_run(generation_ids=[str(seen.id), str(waiting.id)])

    seen.refresh_from_db()
    waiting.refresh_from_db()
    assert seen.status == GenerationStatus.ERROR and "stopped mid-answer" in seen.error
    assert [f["type"] for f in streams.read_all(redis_client(), str(seen.id))] == ["delta", "error"]
    assert waiting.status == GenerationStatus.DONE and waiting.attempts == 1
    frames = streams.read_all(redis_client(), str(waiting.id))
    assert_gapless(frames)
    assert frames_text(frames) == waiting.text == "".join(f"t{i} " for i in range(10))
    redis_client().delete("gen.redelivery-test")


def test_an_answer_whose_endpoint_was_deleted_mid_stream_is_still_stored(transactional_db) -> None:  # type: ignore[no-untyped-def]
    model = _model("fake", "http://gone/v1", queue="gen.endpoint-deleted-test")  # no worker's
    endpoint = model.endpoints.get()
    [(generation, _)] = services.generations_claim(
        generation_ids=[str(_pair(None, "", model)[0].id)]
    )
    generation.endpoint = endpoint
    # An operator removes it (in the admin: another process, another instance) while it streams.
    type(endpoint).objects.filter(id=endpoint.id).delete()

    services.generation_finish(
        generation=generation,
        status=GenerationStatus.DONE,
        seq=2,
        text="the answer",
        finish_reason="stop",
    )

    generation.refresh_from_db()
    assert (generation.status, generation.text, generation.endpoint_id) == (
        GenerationStatus.DONE,
        "the answer",
        None,
    )
    assert streams.read_all(redis_client(), str(generation.id))[-1]["type"] == "done"
    redis_client().delete("gen.endpoint-deleted-test")


def test_an_answer_with_nul_characters_is_stored_as_it_streamed(celery_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    # PostgreSQL's text refuses NUL: a model that emits one must not leave its answer streaming,
    # nor cut off the other answer of its battle.
    key = new_session_key()
    nul, fine = _pair(
        upstream, key, _model("fake-nul", upstream.base_url), _model("fake-r400", upstream.base_url)
    )

    frames = run_async(collect_frames(key, str(nul.id)))

    assert frames[-1]["type"] == "done"
    assert_gapless(frames)
    nul.refresh_from_db()
    assert nul.status == GenerationStatus.DONE
    assert nul.text == frames_text(frames) == "".join(f"t{i}\ufffd " for i in range(10))
    wait_for(lambda: Generation.objects.get(id=fine.id).status == GenerationStatus.DONE)


def test_an_answer_counts_in_flight_on_its_endpoint_and_the_next_goes_to_the_idle_one(
    celery_worker, upstream
) -> None:  # type: ignore[no-untyped-def]
    from django.test import Client

    from modelhub.selectors import endpoints_for_dispatch

    port = upstream.base_url.split(":")[2].split("/")[0]
    first_url, second_url = upstream.base_url, f"http://localhost:{port}/v1"
    model = _model("fake-r20", first_url, second_url)
    key = new_session_key()
    # 40 tokens at 20/s: two seconds of streaming.
    [first] = _pair(upstream, key, model, max_tokens=40)

    def streaming_on() -> dict[str, int]:
        return {e.base_url: e.inflight for e in endpoints_for_dispatch(model=model)}  # type: ignore[attr-defined]

    wait_for(lambda: streaming_on() == {first_url: 1, second_url: 0}, timeout=5)
    body = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    assert metric_value(body, "ludus_endpoint_inflight", model=model.name, endpoint=first_url) == 1

    [second] = _pair(upstream, key, model, max_tokens=1)  # while the first still streams
    wait_for(lambda: Generation.objects.get(id=second.id).is_finished, timeout=10)
    second.refresh_from_db()
    assert second.status == GenerationStatus.DONE
    assert second.endpoint is not None and second.endpoint.base_url == second_url
    wait_for(lambda: Generation.objects.get(id=first.id).is_finished, timeout=10)
    assert streaming_on() == {first_url: 0, second_url: 0}


def _limited_model(upstream, max_concurrency: int) -> Any:  # type: ignore[no-untyped-def]
    model = _model("fake-r20", upstream.base_url)
    model.max_concurrency = max_concurrency
    model.save(update_fields=["max_concurrency"])
    return model


def test_a_model_streams_at_most_its_max_concurrency_and_the_rest_wait_their_turn(
    celery_worker, upstream
) -> None:  # type: ignore[no-untyped-def]
    model = _limited_model(upstream, 2)
    key = new_session_key()
    # A battle on a model limited to two answers at once (20 tokens at 20/s: a second each), then
    # another answer while those stream: it waits its turn.
    pair = _pair(upstream, key, model, model, max_tokens=20)
    wait_for(lambda: Generation.objects.filter(model=model, status="streaming").count() == 2)
    [third] = _pair(upstream, key, model, max_tokens=20)
    time.sleep(0.3)  # its first claim found the model busy
    assert Generation.objects.get(id=third.id).status == GenerationStatus.QUEUED
    wait_for(lambda: all(g.is_finished for g in Generation.objects.filter(model=model)), timeout=15)
    generations = [*pair, third]
    for generation in generations:
        generation.refresh_from_db()
        assert generation.status == GenerationStatus.DONE and generation.attempts == 1
    first_end = min(g.finished_at for g in pair)  # type: ignore[type-var]
    assert third.started_at is not None and third.started_at >= first_end  # type: ignore[operator]


def test_a_burst_of_battles_on_a_limited_model_never_streams_more_than_its_limit(
    celery_worker, upstream
) -> None:  # type: ignore[no-untyped-def]
    from ludus_dev.fake_upstream import STATS

    model = _limited_model(upstream, 3)
    key = new_session_key()
    # Streams of earlier tests' upstreams (stopped, never counted down) are no part of this one.
    before = STATS["peak_streaming"] = STATS["streaming"]
    # Eight battles at once, each its own task: the worker's threads claim them side by side,
    # and the model lets three answers stream at a time whatever order the claims land in.
    generations = [g for _ in range(8) for g in _pair(upstream, key, model, model, max_tokens=4)]
    wait_for(lambda: all(g.is_finished for g in Generation.objects.filter(model=model)), 30)

    assert STATS["peak_streaming"] - before == 3  # as the upstream saw them
    for generation in generations:
        generation.refresh_from_db()
        assert generation.status == GenerationStatus.DONE, generation.error
    assert redis_client().zcard(slots.key(model.id)) == 0  # every slot given back


def test_a_slot_whose_worker_died_comes_back_when_its_lease_ends(transactional_db) -> None:  # type: ignore[no-untyped-def]
    client = redis_client()
    client.delete(slots.key(1), slots.key(2))
    wants = [(1, 2, "a"), (1, 2, "b"), (1, 2, "c"), (2, 1, "d")]
    assert slots.take(client, wants) == [True, True, False, True]
    assert slots.take(client, [(1, 2, "a"), (1, 2, "c")]) == [True, False]  # "a" holds one
    slots.free(client, 1, "a")
    assert slots.take(client, [(1, 2, "c")]) == [True]
    # "b"'s worker died: nobody renews or frees its slot, which comes back once the lease ends.
    client.zadd(slots.key(1), {"b": 1.0})  # a lease that ended long ago
    slots.renew(client, [(1, "c"), (1, "gone")])  # renewing adds no slot for a finished answer
    assert slots.take(client, [(1, 2, "e"), (1, 2, "f")]) == [True, False]
    assert set(client.zrange(slots.key(1), 0, -1)) == {b"c", b"e"}
    client.delete(slots.key(1), slots.key(2))
