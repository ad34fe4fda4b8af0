"""Writes for the model hub: generations (create, run, stop, reap) and endpoint health."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any, TypeVar

import aiohttp
import httpx
import redis
from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F, Field
from django.db.models import Model as DjangoModel
from django.utils import timezone

from modelhub import client as oai
from modelhub import metrics, slots, streams
from modelhub.models import Endpoint, Generation, GenerationStatus, Model
from modelhub.pool import Flusher, Outbox, flusher, redis_client, runner
from modelhub.selectors import (
    dispatch_order,
    endpoint_api_key,
    endpoints_for_dispatch,
    inflight_sql,
)
from modelhub.signals import generation_finishing

log = logging.getLogger(__name__)
M = TypeVar("M", bound=DjangoModel)

_http = httpx.Client(limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200))


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
) -> list[Generation]:
    """`generation_create` for generations started together, `(model, messages)` each (a battle's
    answers): one INSERT, and one task per queue that runs them side by side in one worker thread.

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
            )
        )
    Generation.objects.bulk_create(generations)
    transaction.on_commit(lambda: _publish(generations))
    return generations


def _publish(generations: Sequence[Generation], countdown: float | None = None) -> None:
    """Enqueue the generations, one task per queue."""
    from modelhub.tasks import run_generation

    by_queue: dict[str, list[str]] = {}
    for generation in generations:
        by_queue.setdefault(generation.model.generation_queue, []).append(str(generation.id))
    for queue, ids in by_queue.items():
        # argsrepr given, so Celery skips its safe repr of the arguments (a fifth of a publish's
        # CPU). declare=[]: a message for a queue goes straight onto that queue's list, which
        # needs no declaration on Redis; declaring it on every publish was a sixth of a creation's
        # CPU.
        args = tuple(ids)
        options: dict[str, Any] = {"argsrepr": repr(args), "kwargsrepr": "{}", "declare": []}
        if countdown is not None:
            options["countdown"] = countdown
        run_generation.apply_async(args=args, queue=queue, **options)


def generation_stop(*, generation: Generation) -> None:
    """Ask for a generation to stop. A queued one is cancelled at once; a streaming one is cancelled
    by its worker within one flush interval, which closes the upstream request."""
    redis_client().set(streams.stop_key(str(generation.id)), 1, ex=600)
    with transaction.atomic():
        locked = Generation.objects.select_for_update().get(id=generation.id)
        if locked.status == GenerationStatus.QUEUED:
            _finish(locked, GenerationStatus.CANCELLED, finish_reason="cancelled", seq=1)


# What _finish writes besides `text` and its `fields`; `endpoint` is set on the instance by the
# read that ended (also when it failed).
_FINISH_FIELDS = (
    "status",
    "finish_reason",
    "error",
    "finished_at",
    "last_seq",
    "duration_ms",
    "endpoint",
)


def _finish(
    generation: Generation,
    status: str,
    *,
    seq: int,
    text: str | None = None,
    finish_reason: str = "",
    error: str = "",
    fields: dict[str, Any] | None = None,
    last_delta: tuple[int, str] | None = None,
    counters: tuple[str, Sequence[tuple[str, float]]] | None = None,
) -> None:
    """Store the terminal state in PostgreSQL, after generation_finishing's receivers have written
    what goes with it (stored all the same when a receiver fails), then publish the terminal frame
    at `seq`, in one Redis call with the text still unwritten (`last_delta`) and the endpoint's
    figures (`counters`)."""
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
        generation.save(update_fields=changed)
    except IntegrityError:
        # The endpoint it streamed from was deleted meanwhile (an operator's edit): the answer is
        # stored without it rather than left streaming until the reaper.
        if connection.in_atomic_block or generation.endpoint_id is None:
            raise
        generation.endpoint = None
        generation.save(update_fields=changed)
    frame: dict[str, Any] = {"type": status if status != GenerationStatus.DONE else "done"}
    frame["finish_reason"] = finish_reason
    if error:
        frame["message"] = error
    if generation.completion_tokens is not None:
        frame["completion_tokens"] = generation.completion_tokens
    if generation.ttft_ms is not None:
        frame["ttft_ms"] = round(generation.ttft_ms, 1)
    if generation.duration_ms is not None:
        frame["duration_ms"] = round(generation.duration_ms, 1)
    client = redis_client()
    streams.add_terminal(
        client, str(generation.id), seq, frame, last_delta=last_delta, counters=counters
    )
    slots.free(client, generation.model_id, str(generation.id))


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


def generation_fail(*, generation: Generation, error: str) -> None:
    seq = max(generation.last_seq, streams.last_seq(redis_client(), str(generation.id))) + 1
    _finish(generation, GenerationStatus.ERROR, seq=seq, error=error, finish_reason="error")


def _claim(generation_ids: Sequence[str]) -> list[tuple[Generation, list[Endpoint]]]:
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
            _start_sql(), [streaming, ids, streaming, now, now, ids, str(GenerationStatus.QUEUED)]
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
        _requeue(waiting)
    # No look at the stop flags here: a stop that came first finished the generation (the UPDATE
    # found nothing to claim), and one that comes later is seen by the flusher's next tick.
    return started


REQUEUE_AFTER_S = 0.5


def _requeue(generations: list[Generation]) -> None:
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
    _publish(generations, countdown=REQUEUE_AFTER_S)


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
def _start_sql() -> str:
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
            _finish(generation, GenerationStatus.CANCELLED, seq=1, finish_reason="cancelled")
            return None
        generation.status = GenerationStatus.STREAMING
        generation.attempts += 1
        generation.started_at = timezone.now()
        generation.heartbeat_at = generation.started_at
        generation.save(update_fields=["status", "attempts", "started_at", "heartbeat_at"])
    return generation


def generation_run(*, generation_id: str) -> None:
    """Stream one generation from the first endpoint that answers; idempotent on redelivery."""
    generations_run(generation_ids=[generation_id])


@dataclass
class _Run:
    """One generation of a task: its endpoints still to try, its outbox, the endpoint being read."""

    generation: Generation
    endpoints: Iterator[Endpoint]
    box: Outbox
    endpoint: Endpoint | None = None
    started: float = 0.0


def generations_run(*, generation_ids: Sequence[str]) -> None:
    """Stream the generations of one task (a battle's answers) side by side, each from the first
    of its endpoints that answers; idempotent on redelivery.

    The reads run on the process's stream runner; this thread finishes each one as it ends (or
    starts its next endpoint), while the others stream on."""
    runs: list[_Run] = []
    pending: dict[concurrent.futures.Future[_Read], _Run] = {}

    def start_next(run: _Run) -> bool:
        endpoint = next(run.endpoints, None)
        if endpoint is None:
            return False
        if run.generation.endpoint_id != endpoint.id:  # a retry, or a claim after a redelivery
            run.generation.endpoint = endpoint
            run.generation.save(update_fields=["endpoint"])  # so it counts as in flight there
        run.endpoint, run.started = endpoint, time.monotonic()
        pending[_start_read(run.generation, endpoint, run.box, run.started)] = run
        return True

    _ensure_heartbeat()
    try:
        for generation, endpoints in _claim(generation_ids):
            if not endpoints:
                error = "No endpoint is configured for this model."
                generation_fail(generation=generation, error=error)
                continue
            box = flusher().open(str(generation.id), model_id=generation.model_id)
            run = _Run(generation, iter(endpoints), box)
            runs.append(run)
            start_next(run)
        release_db_connection()  # streaming takes seconds: no pooled connection held meanwhile
        while pending:
            done, _ = concurrent.futures.wait(
                pending, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                run = pending.pop(future)
                assert run.endpoint is not None
                try:
                    outcome = _complete(
                        run.generation, run.endpoint, run.box, future.result(), run.started
                    )
                except Exception:
                    # One answer's failure must not cut off the others: this one ends in error
                    # now if the database takes it, or by the reaper.
                    log.exception("generation %s failed unexpectedly", run.generation.id)
                    with contextlib.suppress(Exception):
                        flusher().close(run.box)
                        generation_fail(
                            generation=run.generation, error="The model failed while answering."
                        )
                    continue
                if outcome is None:
                    continue
                if not start_next(run):
                    flusher().close(run.box)
                    # Error frames reach anonymous battles: no model or endpoint named in them.
                    log.warning(
                        "generation %s failed on every endpoint: %s", run.generation.id, outcome
                    )
                    generation_fail_at(
                        run.generation, run.box.seq + 1, "The model is unavailable right now."
                    )
            release_db_connection()
    finally:
        for future in pending:  # an exception outside any one answer: the reaper ends the rest
            future.cancel()
        for run in runs:
            flusher().close(run.box)  # idempotent


HEARTBEAT_EVERY_S = 2.0


class Heartbeat(threading.Thread):
    """The process's heartbeat: every HEARTBEAT_EVERY_S, the generations it streams (its flusher's
    open outboxes) get their heartbeat refreshed in PostgreSQL, in one UPDATE, and the leases of
    their model slots renewed in Redis, in one call. A thread of its own: a slow UPDATE must not
    hold up the flusher's next tick (a first token waiting in an outbox is time to first token)."""

    def __init__(self, boxes: Flusher, every_s: float | None = None) -> None:
        super().__init__(name="ludus-heartbeat", daemon=True)
        self.boxes = boxes
        self.every_s = every_s if every_s is not None else HEARTBEAT_EVERY_S
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            self.beat()

    def beat(self) -> None:
        boxes = self.boxes.open_boxes()
        if not boxes:
            return
        try:
            slots.renew(
                self.boxes.client, [(b.model_id, b.generation_id) for b in boxes if b.model_id]
            )
        except redis.RedisError:  # Redis is down: the next beat tries again
            log.exception("renewing slots failed")
        try:
            close_old_connections()
            generations_heartbeat(generation_ids=[box.generation_id for box in boxes])
        except Exception:  # the database is down: the next beat tries again
            log.exception("heartbeat failed")
        finally:
            release_db_connection()


_heartbeat: Heartbeat | None = None
_heartbeat_lock = threading.Lock()


def _ensure_heartbeat() -> None:
    """Start the process's heartbeat with its first generation."""
    global _heartbeat
    with _heartbeat_lock:
        if _heartbeat is None:
            _heartbeat = Heartbeat(flusher())
            _heartbeat.start()


def release_db_connection() -> None:
    """Return this thread's connection to the pool (no-op without pooling: reconnecting costs)."""
    if settings.DB_POOL and not connection.in_atomic_block:
        connection.close()


def generation_fail_at(generation: Generation, seq: int, error: str) -> None:
    _finish(generation, GenerationStatus.ERROR, seq=seq, error=error, finish_reason="error")


@dataclass
class _Read:
    """What one upstream read produced; `error` is set when it failed."""

    parts: list[str] = field(default_factory=list)
    ttft_ms: float | None = None
    finish: oai.Finish | None = None
    error: oai.UpstreamError | None = None


async def _read_upstream(
    http: aiohttp.ClientSession,
    endpoint_url: str,
    payload: dict[str, Any],
    api_key: str | None,
    timeouts: oai.Timeouts,
    box: Outbox,
    started: float,
    deadline: float,
) -> _Read:
    """Read one upstream stream on the runner's loop, pushing deltas to the outbox as they come."""
    read = _Read()
    if box.cancelled:
        return read
    push = flusher().push

    def on_deltas(deltas: list[oai.Delta]) -> None:
        if read.ttft_ms is None:
            read.ttft_ms = (time.monotonic() - started) * 1000
        # NUL becomes U+FFFD: PostgreSQL's text cannot hold it, and the stream must show what is
        # stored.
        texts = [delta.text.replace("\x00", "\ufffd") for delta in deltas]
        push(box, "".join(texts), urgent=not read.parts)
        read.parts.extend(texts)

    stream = oai.AsyncChatStream(http, endpoint_url, payload, api_key, timeouts)
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            read.finish = await stream.run(on_deltas)
    except TimeoutError:
        read.finish = oai.Finish(reason="time_limit")  # the connection is closed: upstream stops
    except oai.UpstreamError as exc:
        read.error = exc
    except asyncio.CancelledError:
        if not box.cancelled:
            raise
        # The flusher saw the stop flag and cancelled this read, which closed the connection.
    return read


def _start_read(
    generation: Generation, endpoint: Endpoint, box: Outbox, started: float
) -> concurrent.futures.Future[_Read]:
    """Start reading one endpoint's answer on the stream runner."""
    model = generation.model
    payload = oai.build_payload(model.upstream_name, generation.messages, generation.params)
    timeouts = oai.Timeouts(settings.GENERATION_CONNECT_TIMEOUT, settings.GENERATION_READ_TIMEOUT)
    deadline = started + settings.GENERATION_TIME_LIMIT
    api_key = endpoint_api_key(endpoint)
    streams_runner = runner()
    return streams_runner.submit(
        box,
        lambda: _read_upstream(
            streams_runner.http,
            endpoint.base_url,
            payload,
            api_key,
            timeouts,
            box,
            started,
            deadline,
        ),
    )


def _complete(
    generation: Generation, endpoint: Endpoint, box: Outbox, read: _Read, started: float
) -> str | None:
    """Store what one endpoint's read produced. Returns None when the generation reached a terminal
    state, or the error text when this endpoint failed before any token reached the stream (try
    the next one)."""
    generation.endpoint = endpoint
    parts, ttft_ms, finish, exc = read.parts, read.ttft_ms, read.finish, read.error
    if exc is not None and not box.cancelled:
        # (With the stop flag set, a failed read is the stop closing the stream.)
        if not parts and exc.retryable:
            metrics.request_failed(endpoint.id)
            endpoint_mark_failure(endpoint=endpoint, error=str(exc))
            log.warning("endpoint %s failed before the first token: %s", endpoint, exc)
            return str(exc)
        if not isinstance(exc, oai.UpstreamClientError):
            endpoint_mark_failure(endpoint=endpoint, error=str(exc))
        # The text so far is stored with the error, in one UPDATE; what is pending goes out with
        # the error frame and the endpoint's figures, in one Redis call.
        last_delta = flusher().take(box)
        _finish(
            generation,
            GenerationStatus.ERROR,
            seq=box.seq + 1,
            text="".join(parts),
            error=_user_error(exc),
            finish_reason="error",
            fields={"ttft_ms": ttft_ms},
            last_delta=last_delta,
            counters=metrics.failed_counters(endpoint.id),
        )
        return None
    # The text still pending is written with the terminal frame, in one round trip.
    last_delta = flusher().take(box)
    text = "".join(parts)
    elapsed = time.monotonic() - started
    tokens = finish.completion_tokens if finish and finish.completion_tokens is not None else None
    counters = metrics.finished_counters(
        endpoint.id, ttft_ms=ttft_ms, tokens=tokens or len(parts), seconds=elapsed
    )
    fields = {
        "endpoint": endpoint,
        "ttft_ms": ttft_ms,
        "prompt_tokens": finish.prompt_tokens if finish else None,
        "completion_tokens": tokens if tokens is not None else len(parts),
    }
    if box.cancelled:
        status, reason = GenerationStatus.CANCELLED, "cancelled"
    else:
        status, reason = (
            GenerationStatus.DONE,
            (finish.reason if finish and finish.reason else "stop"),
        )
    _finish(
        generation,
        status,
        seq=box.seq + 1,
        text=text,
        finish_reason=reason,
        fields=fields,
        last_delta=last_delta,
        counters=counters,
    )
    endpoint_mark_success(endpoint=endpoint)
    return None


def _user_error(exc: oai.UpstreamError) -> str:
    if isinstance(exc, oai.UpstreamTimeout):
        return "The model stopped responding (timeout)."
    if isinstance(exc, oai.UpstreamClientError):
        return f"The model rejected the request (HTTP {exc.status})."
    if isinstance(exc, oai.MalformedStream):
        return "The model's answer was cut off (broken stream)."
    return "The model failed while answering."


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


# -- endpoint health --------------------------------------------------------------------------


def endpoint_mark_failure(*, endpoint: Endpoint, error: str) -> None:
    now = timezone.now()
    Endpoint.objects.filter(id=endpoint.id).update(
        healthy=False,
        last_error=error[:1000],
        last_checked_at=now,
        consecutive_failures=F("consecutive_failures") + 1,
    )


def endpoint_mark_success(*, endpoint: Endpoint) -> None:
    if endpoint.healthy and endpoint.consecutive_failures == 0:
        return
    now = timezone.now()
    Endpoint.objects.filter(id=endpoint.id).update(
        healthy=True, consecutive_failures=0, last_ok_at=now, last_checked_at=now, last_error=""
    )


def endpoint_probe(*, endpoint: Endpoint, timeout_s: float = 3.0) -> tuple[bool, str]:
    """Probe an endpoint: its model list (the health route every OpenAI-compatible server has) and a
    one-token completion. Updates the endpoint's health and returns (healthy, error)."""
    error = ""
    api_key = endpoint_api_key(endpoint)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = _http.get(
            endpoint.base_url.rstrip("/") + "/models", headers=headers, timeout=timeout_s
        )
        if response.status_code >= 400:
            error = f"GET /models answered HTTP {response.status_code}"
        else:
            oai.complete(
                _http,
                endpoint.base_url,
                endpoint.model.upstream_name,
                [{"role": "user", "content": "ping"}],
                {"max_tokens": 1, "temperature": 0},
                api_key,
                oai.Timeouts(connect=timeout_s, read=timeout_s),
            )
    except (httpx.HTTPError, oai.UpstreamError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
    now = timezone.now()
    if error:
        Endpoint.objects.filter(id=endpoint.id).update(
            healthy=False,
            last_error=error,
            last_checked_at=now,
            consecutive_failures=F("consecutive_failures") + 1,
        )
    else:
        Endpoint.objects.filter(id=endpoint.id).update(
            healthy=True, consecutive_failures=0, last_error="", last_checked_at=now, last_ok_at=now
        )
    return (not error, error)


# -- model registry ---------------------------------------------------------------------------

MODEL_FIELDS = {
    "display_name", "organization", "license", "modalities", "engine", "served_name", "queue",
    "sampling_weight", "max_concurrency", "arena_eligible", "enabled", "deprecated", "temperature",
    "top_p", "max_tokens", "system_prompt", "path", "tensor_parallel_size", "max_model_len",
    "limit_images_per_prompt", "identity_patterns", "heldout_loss",
}  # fmt: skip


class ModelConfigError(ValueError):
    pass


def models_load(*, entries: list[dict[str, Any]]) -> list[Model]:
    """Create or update models (and their endpoints) from configuration entries, all or nothing.

    Each entry: {"name": ..., <model fields>, "endpoints": [{"base_url": ..., "api_key_env": ...}]}.
    Endpoints not listed for a model are disabled, not deleted (generations keep their history).
    An entry carrying an API key itself is refused: keys come from the environment only.
    """
    from django.core.exceptions import ValidationError

    if not isinstance(entries, list):
        raise ModelConfigError("the file must hold a list of models (or {'models': [...]})")
    loaded: list[Model] = []
    with transaction.atomic():
        for index, entry in enumerate(entries, start=1):
            if not isinstance(entry, dict) or not entry.get("name"):
                raise ModelConfigError(f"model #{index}: each model needs a name")
            unknown = set(entry) - MODEL_FIELDS - {"name", "endpoints"}
            if unknown:
                raise ModelConfigError(f"model {entry['name']}: unknown fields {sorted(unknown)}")
            model, _ = Model.objects.get_or_create(name=entry["name"])
            for key in MODEL_FIELDS & set(entry):
                setattr(model, key, entry[key])
            try:
                model.full_clean()
            except ValidationError as exc:
                raise ModelConfigError(f"model {entry['name']}: {exc.message_dict}") from None
            model.save()
            seen: list[int] = []
            for ep in entry.get("endpoints") or []:
                if not isinstance(ep, dict) or not ep.get("base_url"):
                    raise ModelConfigError(f"model {entry['name']}: each endpoint needs a base_url")
                if "api_key" in ep:
                    raise ModelConfigError(
                        f"model {entry['name']}: put the API key in an environment variable and name it with api_key_env"
                    )
                endpoint, _ = Endpoint.objects.update_or_create(
                    model=model,
                    base_url=ep["base_url"],
                    defaults={
                        "api_key_env": ep.get("api_key_env", ""),
                        "enabled": ep.get("enabled", True),
                    },
                )
                try:
                    endpoint.full_clean()
                except ValidationError as exc:
                    raise ModelConfigError(
                        f"model {entry['name']}: endpoint {exc.message_dict}"
                    ) from None
                seen.append(endpoint.id)
            if "endpoints" in entry:
                model.endpoints.exclude(id__in=seen).update(enabled=False)
            loaded.append(model)
    return loaded


def model_set_enabled(*, name: str, enabled: bool) -> Model:
    updated = Model.objects.filter(name=name).update(enabled=enabled)
    if not updated:
        raise Model.DoesNotExist(f"no model named {name!r}")
    return Model.objects.get(name=name)
