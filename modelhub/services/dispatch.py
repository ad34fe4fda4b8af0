"""Claiming generations for a worker: the one statement that marks them streaming and reads their
models and endpoints, each model's `max_concurrency` slots (modelhub.slots), putting back what
must wait its turn, and redeliveries."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, TypeVar

from django.db import connection, transaction
from django.db.models import F, Field
from django.db.models import Model as DjangoModel
from django.utils import timezone

from modelhub import slots, streams
from modelhub.models import Endpoint, Generation, GenerationStatus, Model
from modelhub.redis_clients import client as redis_client
from modelhub.selectors import dispatch_order, endpoints_for_dispatch, inflight_sql
from modelhub.services.lifecycle import generation_fail, generation_finish, generations_enqueue

M = TypeVar("M", bound=DjangoModel)


def generations_claim(*, generation_ids: Sequence[str]) -> list[tuple[Generation, list[Endpoint]]]:
    """Mark the generations as streaming and return each (in the order asked) with its model's
    endpoints in dispatch order, leaving out those with nothing (left) to do.

    The common case, queued generations, is one statement (the UPDATE, their models and their
    endpoints with their load): with PostgreSQL across a network, every round trip before the
    upstream request is time to first token. Anything else (a redelivery, a missing or finished
    generation) takes the locked path."""
    now = timezone.now()
    streaming = str(GenerationStatus.STREAMING)
    ids = list(generation_ids)
    with connection.cursor() as cursor:
        cursor.execute(
            _claim_sql(), [streaming, ids, streaming, now, now, ids, str(GenerationStatus.QUEUED)]
        )
        found = cursor.fetchall()
    g, m = len(_fields(Generation)), len(_fields(Model))
    claimed: dict[str, tuple[Generation, list[Endpoint]]] = {}
    for row in found:
        gid = str(row[_PK])
        if gid not in claimed:
            generation = _loaded(Generation, row[:g])
            generation.model = _loaded(Model, row[g : g + m])
            claimed[gid] = (generation, [])
        if row[g + m] is not None:  # a model without enabled endpoints has one row of NULLs
            endpoint = _loaded(Endpoint, row[g + m : -1])
            endpoint.inflight = row[-1]  # type: ignore[attr-defined]
            claimed[gid][1].append(endpoint)
    # Each claimed answer takes one of its model's max_concurrency slots, or waits its turn.
    asked = [claimed[gid][0] for gid in dict.fromkeys(generation_ids) if gid in claimed]
    wants = [(g.model_id, g.model.max_concurrency, str(g.id)) for g in asked]
    waiting = [g for g, ok in zip(asked, slots.take(redis_client(), wants), strict=True) if not ok]
    put_back = {str(g.id) for g in waiting}
    started = []
    for gid in dict.fromkeys(generation_ids):
        if gid in claimed:
            if gid not in put_back:
                generation, endpoints = claimed[gid]
                started.append((generation, dispatch_order(endpoints)))
        elif (locked := _claim_locked(gid)) is not None:
            started.append((locked, endpoints_for_dispatch(model=locked.model)))
    if waiting:
        generations_requeue(generations=waiting)
    # No look at the stop flags here: a stop that came first finished the generation (the UPDATE
    # found nothing to claim), and one that comes later is seen by the flusher's next tick.
    return started


REQUEUE_AFTER_S = 0.5


def generations_requeue(*, generations: list[Generation]) -> None:
    """Put back generations whose model streams its `max_concurrency` answers already (no slot
    left): queued again as they were, each tried again in REQUEUE_AFTER_S (until the reaper's
    limit for a queued answer)."""
    Generation.objects.filter(
        id__in=[g.id for g in generations], status=GenerationStatus.STREAMING
    ).update(
        status=GenerationStatus.QUEUED,
        attempts=F("attempts") - 1,
        started_at=None,
        heartbeat_at=None,
        endpoint=None,
    )
    generations_enqueue(generations=generations, countdown=REQUEUE_AFTER_S)


def _fields(model: type[DjangoModel]) -> list[Field]:  # type: ignore[type-arg]
    return list(model._meta.concrete_fields)


def _columns(model: type[DjangoModel], alias: str) -> str:
    """`alias.column, ...` of every concrete field, in the order `_loaded` reads them."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(str(f.column))}" for f in _fields(model))


def _loaded(model: type[M], values: Sequence[Any]) -> M:
    """The instance for a row of `_columns(model, ...)`, as the ORM loads it (JSON decoded)."""
    fields = _fields(model)
    converted = list(values)
    for i, field_ in enumerate(fields):
        for converter in field_.get_db_converters(connection):
            converted[i] = converter(converted[i], None, connection)
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


_PK = [f.primary_key for f in _fields(Generation)].index(True)


@lru_cache(maxsize=1)
def _claim_sql() -> str:
    generation, model, endpoint = (
        Generation._meta.db_table,
        Model._meta.db_table,
        Endpoint._meta.db_table,
    )
    # The endpoints of the answers' models with their load, counted once (a count reads every
    # answer streaming from the endpoint: with hundreds streaming, counting it for each claimed
    # answer and again for each row returned was most of the statement's time).
    load = (
        f"SELECT e.*, {inflight_sql('e')} FROM {endpoint} e WHERE e.enabled AND e.model_id IN"
        f" (SELECT q.model_id FROM {generation} q WHERE q.id = ANY(%s::uuid[]))"
    )
    # The endpoint to try first is recorded with the claim, chosen as dispatch_order chooses: the
    # in-flight counts (least-loaded dispatch, /metrics, the status page) count the generations
    # streaming from each endpoint, which they could not while it was written only at the end.
    first_endpoint = (
        "(SELECT l.id FROM load l WHERE l.model_id = g.model_id"
        " ORDER BY NOT l.healthy, l.inflight, l.id LIMIT 1)"
    )
    return (
        f"WITH load AS MATERIALIZED ({load}),"
        f" c AS (UPDATE {generation} g SET status = %s, attempts = attempts + 1,"
        f" started_at = %s, heartbeat_at = %s, endpoint_id = {first_endpoint}"
        # IS NOT DISTINCT FROM (status is never null) is no index condition: the answers are
        # found by primary key. With `=`, statistics that see queued answers as rare had the
        # planner scan every queued answer through the status index, hundreds in a burst.
        " WHERE g.id = ANY(%s::uuid[]) AND g.status IS NOT DISTINCT FROM %s"
        f" RETURNING {_columns(Generation, 'g')})"
        f" SELECT c.*, {_columns(Model, 'm')}, {_columns(Endpoint, 'l')}, l.inflight"
        f" FROM c JOIN {model} m ON m.id = c.model_id LEFT JOIN load l ON l.model_id = m.id"
    )


def _claim_locked(generation_id: str) -> Generation | None:
    with transaction.atomic():
        generation = (
            Generation.objects.select_for_update()
            .select_related("model")
            .filter(id=generation_id)
            .first()
        )
        if generation is None or generation.is_finished:
            return None
        # Redelivered after its worker died. If any delta reached the stream, browsers have seen
        # part of an answer: starting over would duplicate output, so it ends in error.
        if (
            generation.status == GenerationStatus.STREAMING
            and streams.last_seq(redis_client(), generation_id) > 0
        ):
            generation_fail(
                generation=generation, error="The worker stopped mid-answer. Please regenerate."
            )
            return None
        if redis_client().exists(streams.stop_key(generation_id)):
            generation_finish(
                generation=generation,
                status=GenerationStatus.CANCELLED,
                seq=1,
                finish_reason="cancelled",
            )
            return None
        generation.status = GenerationStatus.STREAMING
        generation.attempts += 1
        generation.started_at = timezone.now()
        generation.heartbeat_at = generation.started_at
        generation.save(update_fields=["status", "attempts", "started_at", "heartbeat_at"])
    return generation
