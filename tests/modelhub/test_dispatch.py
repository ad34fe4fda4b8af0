"""Starting a generation: the claim, and the order in which it tries a model's endpoints (enabled
ones only, healthy before unhealthy, least loaded (fewest generations streaming) first)."""

from __future__ import annotations

import uuid

import pytest

from modelhub.models import Generation, GenerationStatus
from modelhub.selectors import endpoints_for_dispatch
from tests.factories import EndpointFactory, ModelFactory

pytestmark = pytest.mark.django_db


def _streaming(endpoint, n: int, status: str = GenerationStatus.STREAMING) -> None:  # type: ignore[no-untyped-def]
    for _ in range(n):
        Generation.objects.create(
            model=endpoint.model, endpoint=endpoint, messages=[], params={}, status=status
        )


def test_it_orders_endpoints_healthy_first_then_least_loaded() -> None:
    model = ModelFactory.create()
    busy = EndpointFactory.create(model=model, base_url="http://busy/v1")
    idle = EndpointFactory.create(model=model, base_url="http://idle/v1")
    down = EndpointFactory.create(model=model, base_url="http://down/v1", healthy=False)
    EndpointFactory.create(model=model, base_url="http://off/v1", enabled=False)
    EndpointFactory.create(model=ModelFactory.create(), base_url="http://other/v1")
    _streaming(busy, 3)
    _streaming(idle, 1)
    _streaming(idle, 5, status=GenerationStatus.DONE)  # finished ones are no load

    order = endpoints_for_dispatch(model=model)

    assert [e.base_url for e in order] == [idle.base_url, busy.base_url, down.base_url]
    assert [e.inflight for e in order] == [1, 3, 0]  # type: ignore[attr-defined]


def test_it_claims_a_queued_generation_once_with_its_model_and_endpoints() -> None:
    from modelhub.services import generations_claim

    model = ModelFactory.create(name="claimed-model", identity_patterns=["claimy"])
    busy = EndpointFactory.create(model=model, base_url="http://busy/v1")
    idle = EndpointFactory.create(model=model, base_url="http://idle/v1")
    EndpointFactory.create(model=model, base_url="http://off/v1", enabled=False)
    _streaming(busy, 2)
    generation = Generation.objects.create(
        model=model, messages=[{"role": "user", "content": "hi"}], params={"max_tokens": 5}
    )

    [(started, endpoints)] = generations_claim(generation_ids=[str(generation.id)])

    # The endpoint to try first is recorded with the claim: the answer counts as in flight there.
    assert started.endpoint_id == idle.id
    assert started.id == generation.id and started.model_id == model.id
    # Loaded as the ORM loads them: JSON decoded, arrays as lists, the model attached.
    assert started.messages == [{"role": "user", "content": "hi"}]
    assert started.params == {"max_tokens": 5}
    assert started.model.name == "claimed-model"
    assert started.model.identity_patterns == ["claimy"]
    assert [(e.base_url, e.inflight) for e in endpoints] == [(idle.base_url, 0), (busy.base_url, 2)]  # type: ignore[attr-defined]
    assert endpoints == endpoints_for_dispatch(model=model)
    generation.refresh_from_db()
    assert (generation.status, generation.attempts) == (GenerationStatus.STREAMING, 1)
    assert generation.started_at is not None and generation.heartbeat_at == generation.started_at
    assert started.started_at == generation.started_at
    Generation.objects.filter(id=generation.id).update(status=GenerationStatus.DONE)
    assert (
        generations_claim(generation_ids=[str(generation.id)]) == []
    )  # finished: nothing left to do


def test_it_claims_a_battle_s_answers_in_one_statement_in_the_order_asked() -> None:
    from modelhub.services import generations_claim

    first, second = ModelFactory.create(), ModelFactory.create()
    one = EndpointFactory.create(model=first, base_url="http://one/v1")
    two = EndpointFactory.create(model=second, base_url="http://two/v1")
    three = EndpointFactory.create(model=second, base_url="http://three/v1")
    _streaming(three, 1)
    a, b, done = (
        Generation.objects.create(model=model, messages=[], params={})
        for model in (first, second, first)
    )
    Generation.objects.filter(id=done.id).update(status=GenerationStatus.DONE)

    claimed = generations_claim(
        generation_ids=[str(b.id), str(done.id), str(uuid.uuid4()), str(a.id)]
    )

    # The finished and the missing generation are left out; the others come in the order asked.
    assert [(g.id, g.model_id) for g, _ in claimed] == [(b.id, second.id), (a.id, first.id)]
    assert [[e.id for e in endpoints] for _, endpoints in claimed] == [
        [two.id, three.id],
        [one.id],
    ]
    assert set(
        Generation.objects.filter(id__in=[a.id, b.id]).values_list("status", "attempts")
    ) == {(GenerationStatus.STREAMING, 1)}


def test_a_battle_s_answers_are_stored_queued_and_enqueued_once_it_commits(
    django_capture_on_commit_callbacks,
) -> None:  # type: ignore[no-untyped-def]
    from modelhub import services

    first = ModelFactory.create(system_prompt="Be brief.", max_tokens=64)
    second = ModelFactory.create()
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi \u00e9 <b>"}]}]

    with django_capture_on_commit_callbacks() as callbacks:
        a, b = services.generations_create(
            requests=[(first, messages), (second, messages)], session_key="s1"
        )

    assert len(callbacks) == 1  # the enqueueing waits for the commit
    stored = {g.id: g for g in Generation.objects.filter(id__in=[a.id, b.id])}
    assert stored[a.id].messages == [{"role": "system", "content": "Be brief."}, *messages]
    assert stored[b.id].messages == messages
    assert stored[a.id].params["max_tokens"] == 64 and stored[a.id].session_key == "s1"
    assert {(g.status, g.attempts, g.endpoint_id) for g in stored.values()} == {("queued", 0, None)}
    assert not a._state.adding and a.created_at == stored[a.id].created_at


def test_a_model_without_enabled_endpoints_is_claimed_with_none() -> None:
    from modelhub.services import generations_claim

    model = ModelFactory.create()
    EndpointFactory.create(model=model, base_url="http://off/v1", enabled=False)
    generation = Generation.objects.create(model=model, messages=[], params={})

    [(claimed, endpoints)] = generations_claim(generation_ids=[str(generation.id)])

    assert claimed.id == generation.id and endpoints == []


def test_a_claim_belongs_to_the_caller_s_transaction() -> None:
    from django.db import transaction

    from modelhub import services

    generation = Generation.objects.create(model=ModelFactory.create(), messages=[], params={})

    with pytest.raises(RuntimeError), transaction.atomic():
        assert services.generations_claim(generation_ids=[str(generation.id)])
        raise RuntimeError("the caller fails")

    generation.refresh_from_db()
    assert (generation.status, generation.attempts) == (GenerationStatus.QUEUED, 0)


def test_answers_past_their_model_s_max_concurrency_go_back_to_the_queue() -> None:
    from modelhub import services, slots
    from modelhub.pool import redis_client

    model = ModelFactory.create(max_concurrency=1)
    endpoint = EndpointFactory.create(model=model)
    redis_client().delete(slots.key(model.id))
    first, second = (
        Generation.objects.create(model=model, messages=[], params={}) for _ in range(2)
    )

    claimed = services.generations_claim(generation_ids=[str(first.id), str(second.id)])

    assert [g.id for g, _ in claimed] == [first.id]  # one slot: the first asked takes it
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.attempts, first.endpoint_id) == ("streaming", 1, endpoint.id)
    # Back as it was before the claim: queued, no attempt counted, on no endpoint.
    assert (second.status, second.attempts, second.endpoint_id) == ("queued", 0, None)
    assert second.started_at is None and second.heartbeat_at is None
    assert redis_client().zrange(slots.key(model.id), 0, -1) == [str(first.id).encode()]
    slots.free(redis_client(), model.id, str(first.id))


def test_a_redelivered_answer_starts_again_unless_part_of_it_reached_the_stream() -> None:
    from modelhub import services, slots, streams
    from modelhub.pool import redis_client

    model = ModelFactory.create()
    EndpointFactory.create(model=model)
    fresh, begun = (
        Generation.objects.create(
            model=model, messages=[], params={}, status=GenerationStatus.STREAMING, attempts=1
        )
        for _ in range(2)
    )
    streams.add_terminal(redis_client(), str(begun.id), 1, {"type": "delta", "text": "half"})

    claimed = services.generations_claim(generation_ids=[str(fresh.id), str(begun.id)])

    assert [g.id for g, _ in claimed] == [fresh.id]
    fresh.refresh_from_db()
    begun.refresh_from_db()
    assert (fresh.status, fresh.attempts) == (GenerationStatus.STREAMING, 2)
    # Browsers saw half an answer: starting over would show it twice.
    assert begun.status == GenerationStatus.ERROR and "regenerate" in begun.error
    assert streams.last_seq(redis_client(), str(begun.id)) == 2  # its error frame
    slots.free(redis_client(), model.id, str(fresh.id))


def test_finishing_receivers_run_before_the_answer_is_stored_a_failing_one_loses_nothing() -> None:
    from modelhub import services, streams
    from modelhub.pool import redis_client
    from modelhub.signals import generation_finishing

    seen: list[tuple[str, str]] = []  # (stored status, text handed over) when each receiver ran

    def watcher(sender, generation, **kwargs):  # type: ignore[no-untyped-def]
        stored = Generation.objects.get(id=generation.id)
        seen.append((stored.status, generation.text))

    def failing(sender, generation, **kwargs):  # type: ignore[no-untyped-def]
        Generation.objects.filter(id=generation.id).update(prompt_tokens=7)
        raise RuntimeError("receiver bug")

    generation = Generation.objects.create(model=ModelFactory.create(), messages=[], params={})
    [claimed] = services.generations_claim(generation_ids=[str(generation.id)])
    generation_finishing.connect(watcher, dispatch_uid="test-watcher")
    generation_finishing.connect(failing, dispatch_uid="test-failing-receiver")
    try:
        services.generation_finish(
            generation=claimed[0],
            status=GenerationStatus.DONE,
            seq=3,
            text="the answer",
            finish_reason="stop",
        )
    finally:
        generation_finishing.disconnect(dispatch_uid="test-watcher")
        generation_finishing.disconnect(dispatch_uid="test-failing-receiver")

    assert seen == [("streaming", "the answer")]  # the text in hand, not yet stored as finished
    generation.refresh_from_db()
    assert (generation.status, generation.text, generation.last_seq) == ("done", "the answer", 3)
    # Inside a caller's transaction (this test's), the failing receiver's write rolled back alone.
    assert generation.prompt_tokens is None
    assert streams.last_seq(redis_client(), str(generation.id)) == 3  # the terminal frame


def test_one_flush_writes_every_stream_refuses_duplicates_and_sees_stop_flags() -> None:
    import uuid

    from modelhub import streams
    from modelhub.pool import Flusher, redis_client

    client = redis_client()
    flusher = Flusher(client, interval_s=3600)  # ticks only when told to
    taken, fresh, stopped = (str(uuid.uuid4()) for _ in range(3))
    # A redelivered generation: seq 1 of this stream is already written.
    streams.add_terminal(client, taken, 1, {"type": "delta", "text": "first"})
    boxes = {gid: flusher.open(gid) for gid in (taken, fresh, stopped)}
    cancelled: list[str] = []
    boxes[stopped].on_cancel = lambda: cancelled.append(stopped)
    client.set(streams.stop_key(stopped), 1, ex=60)
    for gid, box in boxes.items():
        flusher.push(box, f"hello {gid[:4]}")

    flusher.flush_once()
    for box in boxes.values():
        flusher.close(box)

    assert [f["text"] for f in streams.read_all(client, taken)] == ["first"]
    assert [(f["seq"], f["text"]) for f in streams.read_all(client, fresh)] == [
        (1, f"hello {fresh[:4]}")
    ]
    assert cancelled == [stopped] and boxes[stopped].cancelled
    assert not boxes[fresh].cancelled


def test_taking_a_box_hands_back_its_pending_text_numbered_and_stops_flushing_it() -> None:
    from modelhub import streams
    from modelhub.pool import Flusher, redis_client

    client = redis_client()
    flusher = Flusher(client, interval_s=3600)  # ticks only when told to
    gid = str(uuid.uuid4())
    box = flusher.open(gid)
    flusher.push(box, "hello ")
    flusher.flush_once()
    flusher.push(box, "wor")
    flusher.push(box, "ld")

    assert flusher.take(box) == (2, "world")
    flusher.push(box, "late")  # a box taken is no longer flushed...
    flusher.flush_once()
    assert [f["text"] for f in streams.read_all(client, gid)] == ["hello "]
    assert flusher.take(box) == (3, "late")  # ...but what it holds is still handed back
    assert flusher.take(box) is None and box.seq == 3


def test_a_flush_that_cannot_reach_redis_is_written_by_the_next_one_without_a_gap() -> None:
    import uuid

    import redis

    from modelhub import streams
    from modelhub.pool import Flusher, redis_client

    flusher = Flusher(redis.Redis(port=1, socket_connect_timeout=0.2), interval_s=3600)
    gid = str(uuid.uuid4())
    box = flusher.open(gid)
    flusher.push(box, "hello ")
    flusher.flush_once()  # nothing listens on port 1
    flusher.push(box, "world")
    flusher.client = redis_client()  # Redis is back
    flusher.flush_once()
    flusher.close(box)

    assert [(f["seq"], f["text"]) for f in streams.read_all(redis_client(), gid)] == [
        (1, "hello world")
    ]


def test_a_heartbeat_rewrites_its_row_in_place_without_touching_an_index() -> None:
    """Every streaming answer's row is rewritten every HEARTBEAT_EVERY_S, hundreds at a time: a
    heartbeat must be a HOT update (no index holds a column it changes, and the table's pages keep
    room for the new version), not a new entry in each of the table's indexes."""
    from django.db import connection

    from modelhub import services

    table = Generation._meta.db_table
    model = ModelFactory.create()
    streaming = [
        Generation.objects.create(
            model=model, messages=[], params={}, status=GenerationStatus.STREAMING
        )
        for _ in range(3)
    ]
    finished = Generation.objects.create(
        model=model, messages=[], params={}, status=GenerationStatus.DONE
    )

    def updates() -> tuple[int, int]:
        """Rows this transaction updated in the table, and how many of those updates were HOT."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_stat_get_xact_tuples_updated(%s::regclass),"
                " pg_stat_get_xact_tuples_hot_updated(%s::regclass)",
                [table, table],
            )
            updated, hot = cursor.fetchone()
        return updated, hot

    before = updates()
    services.generations_heartbeat(generation_ids=[str(g.id) for g in [*streaming, finished]])
    after = updates()

    assert (after[0] - before[0], after[1] - before[1]) == (3, 3)  # the finished one untouched
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [table])
        assert "fillfactor=80" in cursor.fetchone()[0]
