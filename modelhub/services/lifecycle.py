"""A generation's life in PostgreSQL and its stream: created (queued, enqueued on commit),
stopped, finished (done, error, cancelled), heartbeated while it streams, reaped when its worker
went silent.

Enqueueing names the task (RUN_GENERATION_TASK) instead of importing it: the tasks call these
services, and these services do not import the tasks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import kombu.exceptions
import redis
from celery import current_app
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from modelhub import slots, streams
from modelhub.models import Generation, GenerationStatus, Model
from modelhub.redis_clients import client as redis_client
from modelhub.signals import generation_finishing

log = logging.getLogger(__name__)

# The task that streams generations (modelhub.tasks.run_generation registers under this name).
RUN_GENERATION_TASK = "modelhub.tasks.run_generation"


class GenerationRejected(ValueError):
    pass


def generation_params(*, model: Model, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model's defaults with overrides applied; max_tokens capped by the operator's limit."""
    params: dict[str, Any] = {
        "temperature": model.temperature,
        "top_p": model.top_p,
        "max_tokens": model.max_tokens,
    }
    params.update({k: v for k, v in (overrides or {}).items() if v is not None})
    params["max_tokens"] = max(1, min(int(params["max_tokens"]), settings.MAX_NEW_TOKENS_CAP))
    return params


def generation_create(
    *,
    model: Model,
    messages: Sequence[dict[str, Any]],
    params: dict[str, Any] | None = None,
    user_id: int | None = None,
    session_key: str = "",
) -> Generation:
    """Store a queued generation and enqueue it on its model's queue once the transaction commits.

    `messages` are OpenAI chat messages without the system prompt; the model's system prompt, if
    any, is put first here.
    """
    return generations_create(
        requests=[(model, messages)], params=params, user_id=user_id, session_key=session_key
    )[0]


def generations_create(
    *,
    requests: Sequence[tuple[Model, Sequence[dict[str, Any]]]],
    params: dict[str, Any] | None = None,
    user_id: int | None = None,
    session_key: str = "",
    tools: Sequence[str] = (),
) -> list[Generation]:
    """`generation_create` for generations started together, `(model, messages)` each (a battle's
    answers): one INSERT, and one task per queue that runs them side by side in one worker thread.
    `tools`: the names of the tools every one of them offers its model (modelhub.tools).

    Celery's envelope (publish, delivery, late ack) cost about as much CPU as the rest of starting
    a generation; a battle pays it once for both answers. `params` None: each model's defaults."""
    for model, _ in requests:
        if not model.enabled:
            raise GenerationRejected(f"model {model.name} is disabled")
    generations = []
    for model, messages in requests:
        full = list(messages)
        if model.system_prompt:
            full.insert(0, {"role": "system", "content": model.system_prompt})
        generations.append(
            Generation(
                model=model,
                messages=full,
                params=params if params is not None else generation_params(model=model),
                user_id=user_id,
                session_key=session_key or "",
                tools=list(tools),
            )
        )
    Generation.objects.bulk_create(generations)
    transaction.on_commit(lambda: _enqueue_created(generations))
    return generations


QUEUE_UNREACHABLE = "The serving queue could not be reached; please try again."


def _enqueue_created(generations: Sequence[Generation]) -> None:
    """Enqueue new generations once their rows are committed. When the broker cannot be reached
    (Redis restarting), the request that made them still succeeds and the answers end at once in a
    visible error, stored in PostgreSQL, where a watching socket finds it (modelhub.consumers reads
    the row when its stream stays quiet): not a server error for a battle that was stored, nor
    answers left queued until the reaper gives up on them."""
    try:
        generations_enqueue(generations=generations)
    except (kombu.exceptions.OperationalError, redis.RedisError, OSError) as exc:
        log.warning("could not enqueue generations %s: %s", [g.id for g in generations], exc)
        Generation.objects.filter(
            id__in=[g.id for g in generations], status=GenerationStatus.QUEUED
        ).update(
            status=GenerationStatus.ERROR,
            error=QUEUE_UNREACHABLE,
            finish_reason="error",
            finished_at=timezone.now(),
            last_seq=1,
        )


def generations_enqueue(
    *, generations: Sequence[Generation], countdown: float | None = None
) -> None:
    """Enqueue the generations, one task per queue (a battle's answers run side by side)."""
    by_queue: dict[str, list[str]] = {}
    for generation in generations:
        by_queue.setdefault(generation.model.generation_queue, []).append(str(generation.id))
    for queue, ids in by_queue.items():
        # argsrepr given, so Celery skips its safe repr of the arguments (a fifth of a publish's
        # CPU). declare=[]: a message for a queue goes straight onto that queue's list, which
        # needs no declaration on Redis; declaring it on every publish was a sixth of a creation's
        # CPU.
        args = tuple(ids)
        current_app.send_task(
            RUN_GENERATION_TASK,
            args=args,
            queue=queue,
            countdown=countdown,
            ignore_result=True,
            argsrepr=repr(args),
            kwargsrepr="{}",
            declare=[],
        )
    # The task is out: failing to mark it only lets the reaper publish a harmless duplicate.
    with contextlib.suppress(redis.RedisError):
        pipe = redis_client().pipeline(transaction=False)
        for generation in generations:
            pipe.set(_published_key(generation.id), 1, ex=_published_ttl_s())
        pipe.execute()


def generation_stop(*, generation: Generation) -> None:
    """Ask for a generation to stop. A queued one is cancelled at once; a streaming one is cancelled
    by its worker within one flush interval, which closes the upstream request."""
    redis_client().set(streams.stop_key(str(generation.id)), 1, ex=600)
    with transaction.atomic():
        locked = Generation.objects.select_for_update().get(id=generation.id)
        if locked.status == GenerationStatus.QUEUED:
            generation_finish(
                generation=locked,
                status=GenerationStatus.CANCELLED,
                finish_reason="cancelled",
                seq=1,
            )


# What generation_finish writes besides `text` and its `fields`; `endpoint` is set on the instance
# by the read that ended (also when it failed).
_FINISH_FIELDS = (
    "status",
    "finish_reason",
    "error",
    "finished_at",
    "last_seq",
    "duration_ms",
    "endpoint",
)


def generation_finish(
    *,
    generation: Generation,
    status: str,
    seq: int,
    text: str | None = None,
    finish_reason: str = "",
    error: str = "",
    fields: dict[str, Any] | None = None,
    last_delta: tuple[int, str] | None = None,
    counters: tuple[str, Sequence[tuple[str, float]]] | None = None,
) -> bool:
    """Store the terminal state in PostgreSQL, after generation_finishing's receivers have written
    what goes with it (stored all the same when a receiver fails), then publish the terminal frame
    at `seq`, in one Redis call with the text still unwritten (`last_delta`) and the endpoint's
    figures (`counters`).

    A terminal state is final: the UPDATE applies only to a row still queued or streaming, so a
    worker that finishes an answer the reaper already ended (its heartbeats were late, not lost)
    changes nothing, in PostgreSQL or on the stream. Returns whether this call ended it."""
    now = timezone.now()
    generation.status = status
    generation.finish_reason = finish_reason
    generation.error = error
    generation.finished_at = now
    generation.last_seq = seq
    changed = [*_FINISH_FIELDS, *(fields or {})]
    if text is not None:
        generation.text = text
        changed.append("text")
    if generation.started_at:
        generation.duration_ms = (now - generation.started_at).total_seconds() * 1000
    for key, value in (fields or {}).items():
        setattr(generation, key, value)
    _send_finishing(generation)
    # Only what finishing changes: rewriting the prompt's JSON on every finish cost CPU on both
    # ends for nothing.
    try:
        ended = _store_terminal(generation, changed)
    except IntegrityError:
        # The endpoint it streamed from was deleted meanwhile (an operator's edit): the answer is
        # stored without it rather than left streaming until the reaper.
        if connection.in_atomic_block or generation.endpoint_id is None:
            raise
        generation.endpoint = None
        ended = _store_terminal(generation, changed)
    client = redis_client()
    if ended:
        # Token counts and timings stay in PostgreSQL: before the vote they would fingerprint
        # the tokenizer and serving stack of an anonymous answer.
        frame: dict[str, Any] = {"type": status if status != GenerationStatus.DONE else "done"}
        frame["finish_reason"] = finish_reason
        if error:
            frame["message"] = error
        streams.add_terminal(
            client, str(generation.id), seq, frame, last_delta=last_delta, counters=counters
        )
    else:
        log.warning("generation %s had already ended; its late finish is dropped", generation.id)
    slots.free(client, generation.model_id, str(generation.id))
    return ended


def _store_terminal(generation: Generation, changed: Sequence[str]) -> bool:
    """One conditional UPDATE of the `changed` fields; False when the row had already ended."""
    values = {name: getattr(generation, name) for name in dict.fromkeys(changed)}
    updated = Generation.objects.filter(
        id=generation.id, status__in=(GenerationStatus.QUEUED, GenerationStatus.STREAMING)
    ).update(**values)
    return updated > 0


def _send_finishing(generation: Generation) -> None:
    """Run generation_finishing's receivers before the finished state is stored: whoever sees the
    answer finished sees what they wrote (a battle flagged for naming its models). Their writes
    commit on their own, so finishing is one UPDATE rather than BEGIN, UPDATE, the receivers'
    statements and COMMIT: two round trips fewer on every generation. Inside a caller's
    transaction they run in a savepoint, which a failing receiver rolls back alone."""
    savepoint = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    try:
        with savepoint:
            generation_finishing.send(Generation, generation=generation)
    except Exception:
        log.exception("a generation_finishing receiver failed for %s", generation.id)


def generation_fail(*, generation: Generation, error: str, seq: int | None = None) -> bool:
    """End a generation in error, its error frame at `seq` (None: after the last frame written).

    What its stream holds is kept: a worker that died mid-answer wrote its text only there (it
    reaches PostgreSQL when the answer ends), and the text is stored with the error, so the
    leak check reads it and the answer the browser showed is not lost. Returns whether this call
    ended it (see generation_finish)."""
    streamed, streamed_seq = streams.streamed_text(redis_client(), str(generation.id))
    if seq is None:
        seq = max(generation.last_seq, streamed_seq) + 1
    return generation_finish(
        generation=generation,
        status=GenerationStatus.ERROR,
        seq=seq,
        text=streamed if len(streamed) > len(generation.text or "") else None,
        error=error,
        finish_reason="error",
    )


def generations_heartbeat(*, generation_ids: Sequence[str]) -> None:
    """Refresh the heartbeat of these generations, those of them still streaming. No index holds
    heartbeat_at (see Generation.Meta), so PostgreSQL rewrites each row in place (HOT)."""
    # The ids as one array parameter: with `id IN (%s, ...)` the query conversion of hundreds of
    # placeholders was a tenth of a busy worker's Python time.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Generation._meta.db_table} SET heartbeat_at = %s"
            " WHERE id = ANY(%s::uuid[]) AND status = %s",
            [timezone.now(), list(generation_ids), GenerationStatus.STREAMING],
        )


def _published_key(generation_id: object) -> str:
    return f"ludus:published:{generation_id}"


def _published_ttl_s() -> int:
    """How long a published task vouches for its queued answers: three stale windows."""
    return max(1, int(3 * settings.GENERATION_STALE_AFTER))


def generations_requeue_lost() -> int:
    """Publish again the task of queued answers that no task has vouched for in the last
    _published_ttl_s(): every publish (a new answer, the requeue of one waiting for a free slot)
    marks its answers in Redis for that long, so an answer queued past it has lost its task, with
    the broker (Redis restarted from a snapshot a second old) or with a worker that died holding
    it unacknowledged. A duplicate task is harmless: an answer is claimed once
    (generations_claim takes only queued rows). Returns how many answers were queued again."""
    cutoff = timezone.now() - timedelta(seconds=_published_ttl_s())
    waiting = list(
        Generation.objects.filter(status=GenerationStatus.QUEUED, created_at__lt=cutoff)
        .select_related("model")
        .order_by("created_at")[:500]
    )
    if not waiting:
        return 0
    vouched = redis_client().mget([_published_key(g.id) for g in waiting])
    lost = [g for g, mark in zip(waiting, vouched, strict=True) if mark is None]
    if lost:
        log.warning("queued again, their task presumed lost: %s", [str(g.id) for g in lost])
        generations_enqueue(generations=lost)
    return len(lost)


def generation_reap_stale(*, older_than_s: float | None = None) -> int:
    """End generations whose worker stopped sending heartbeats, or that waited too long in a queue."""
    stale_after = older_than_s if older_than_s is not None else settings.GENERATION_STALE_AFTER
    now = timezone.now()
    stale = Generation.objects.filter(
        status=GenerationStatus.STREAMING, heartbeat_at__lt=now - timedelta(seconds=stale_after)
    ) | Generation.objects.filter(
        status=GenerationStatus.QUEUED,
        created_at__lt=now - timedelta(seconds=max(stale_after * 6, 120)),
    )
    count = 0
    for generation_id in stale.values_list("id", flat=True):
        with transaction.atomic():
            generation = Generation.objects.select_for_update().get(id=generation_id)
            if generation.is_finished:
                continue
            message = (
                "The worker serving this answer stopped responding."
                if generation.status == GenerationStatus.STREAMING
                else "No worker picked up this request in time."
            )
            generation_fail(generation=generation, error=message)
            count += 1
    return count
