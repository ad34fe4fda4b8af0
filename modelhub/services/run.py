"""Running generations: a worker's task streams its generations (a battle's answers side by side)
from the first endpoint of each that answers, on the process's stream runner, and stores how each
ended. The process's heartbeat keeps what it streams alive in PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis
from django.conf import settings
from django.db import close_old_connections, connection

from modelhub import client as oai
from modelhub import metrics, slots, tools
from modelhub.models import Endpoint, Generation, GenerationStatus
from modelhub.pool import Flusher, Outbox, flusher, runner
from modelhub.selectors import endpoint_api_key
from modelhub.services.dispatch import generations_claim
from modelhub.services.endpoints import endpoint_mark_failure, endpoint_mark_success
from modelhub.services.lifecycle import generation_fail, generation_finish, generations_heartbeat

log = logging.getLogger(__name__)


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
        for generation, endpoints in generations_claim(generation_ids=generation_ids):
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
                    generation_fail(
                        generation=run.generation,
                        seq=run.box.seq + 1,
                        error="The model is unavailable right now.",
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


@dataclass
class _Read:
    """What one upstream read produced; `error` is set when it failed, `tool_error` when the tool
    loop ended the answer (too many calls)."""

    parts: list[str] = field(default_factory=list)
    ttft_ms: float | None = None
    finish: oai.Finish | None = None
    error: oai.UpstreamError | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_error: str = ""


@dataclass(frozen=True)
class _ToolLoop:
    """The tools one generation offers, and its limits (settings.TOOL_*)."""

    offered: list[str]
    calls_per_turn: int
    time_limit_s: float


async def _read_upstream(
    http: aiohttp.ClientSession,
    endpoint_url: str,
    payload: dict[str, Any],
    api_key: str | None,
    timeouts: oai.Timeouts,
    box: Outbox,
    started: float,
    deadline: float,
    loop: _ToolLoop | None = None,
) -> _Read:
    """Read one upstream stream on the runner's loop, pushing deltas to the outbox as they come.

    With tools offered, this is the tool loop: while the model answers with tool calls, each is
    run (in a thread, see modelhub.tools) and its result sent back as a `tool` message in a new
    request, up to `loop.calls_per_turn` calls; the generation's deadline bounds it all."""
    read = _Read()
    if box.cancelled:
        return read
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            await _tool_loop(
                http, endpoint_url, payload, api_key, timeouts, box, started, read, loop
            )
    except TimeoutError:
        read.finish = oai.Finish(reason="time_limit")  # the connection is closed: upstream stops
    except oai.UpstreamError as exc:
        read.error = exc
    except asyncio.CancelledError:
        if not box.cancelled:
            raise
        # The flusher saw the stop flag and cancelled this read, which closed the connection.
    return read


async def _tool_loop(
    http: aiohttp.ClientSession,
    endpoint_url: str,
    payload: dict[str, Any],
    api_key: str | None,
    timeouts: oai.Timeouts,
    box: Outbox,
    started: float,
    read: _Read,
    loop: _ToolLoop | None,
) -> None:
    messages = list(payload["messages"])
    while True:
        round_start = len(read.parts)
        request = {**payload, "messages": messages}
        read.finish = await _stream_once(
            http, endpoint_url, request, api_key, timeouts, box, started, read
        )
        calls = read.finish.tool_calls
        if loop is None or not calls:
            return
        if len(read.tool_calls) + len(calls) > loop.calls_per_turn:
            for call in calls:
                read.tool_calls.append(
                    _call_record(len(read.tool_calls) + 1, call, error="over the call limit")
                )
            read.tool_error = (
                f"The model asked for more than {loop.calls_per_turn} tool calls in one answer."
            )
            return
        first = len(read.tool_calls) + 1
        ids = [call.id or f"call_{first + i}" for i, call in enumerate(calls)]
        messages.append(
            {
                "role": "assistant",
                "content": "".join(read.parts[round_start:]) or None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for call_id, call in zip(ids, calls, strict=True)
                ],
            }
        )
        images = []
        for call_id, call in zip(ids, calls, strict=True):
            record, outcome = await asyncio.get_running_loop().run_in_executor(
                None, _tool_call, box, len(read.tool_calls) + 1, call, loop, messages
            )
            read.tool_calls.append(record)
            messages.append({"role": "tool", "tool_call_id": call_id, "content": outcome.message()})
            if outcome.image_url:
                images.append(oai.image_part(outcome.image_url))
        if images:  # a tool message holds text only: the crops follow as the user's
            messages.append({"role": "user", "content": images})


async def _stream_once(
    http: aiohttp.ClientSession,
    endpoint_url: str,
    payload: dict[str, Any],
    api_key: str | None,
    timeouts: oai.Timeouts,
    box: Outbox,
    started: float,
    read: _Read,
) -> oai.Finish:
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
    return await stream.run(on_deltas)


def _call_record(number: int, call: oai.ToolCall, **outcome: Any) -> dict[str, Any]:
    """A call as the generation stores it (`id`: the upstream's, kept out of frames)."""
    return {
        "call": f"call_{number}",
        "id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "result": outcome.get("result", ""),
        "error": outcome.get("error", ""),
        "duration_ms": outcome.get("duration_ms"),
    }


def _tool_call(
    box: Outbox,
    number: int,
    call: oai.ToolCall,
    loop: _ToolLoop,
    messages: list[dict[str, Any]],
) -> tuple[dict[str, Any], tools.Outcome]:
    """Run one call in a thread of the runner's pool: its frame, the tool, its result frame."""
    label = f"call_{number}"
    boxes = flusher()
    frame = {"type": "tool_call", "call": label, "name": call.name[:100]}
    boxes.push_frame(box, frame | {"arguments": tools.arguments_shown(call.arguments)})
    outcome = tools.tool_call_run(
        name=call.name,
        arguments=call.arguments,
        offered=loop.offered,
        context=tools.ToolContext(messages=list(messages)),
        timeout_s=loop.time_limit_s,
    )
    boxes.push_frame(
        box,
        {"type": "tool_result", "call": label, "result": outcome.result, "error": outcome.error},
    )
    record = _call_record(
        number, call, result=outcome.result, error=outcome.error, duration_ms=outcome.duration_ms
    )
    return record, outcome


def _start_read(
    generation: Generation, endpoint: Endpoint, box: Outbox, started: float
) -> concurrent.futures.Future[_Read]:
    """Start reading one endpoint's answer on the stream runner."""
    model = generation.model
    offered = list(generation.tools or [])
    payload = oai.build_payload(
        model.upstream_name,
        generation.messages,
        generation.params,
        tools=tools.tool_specs(offered) if offered else None,
    )
    loop = (
        _ToolLoop(offered, settings.TOOL_CALLS_PER_TURN, settings.TOOL_TIME_LIMIT)
        if offered
        else None
    )
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
            loop,
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
    calls = {"tool_calls": read.tool_calls} if read.tool_calls else {}
    if read.tool_error and exc is None and not box.cancelled:
        generation_finish(
            generation=generation,
            status=GenerationStatus.ERROR,
            seq=box.seq + 1,
            text="".join(parts),
            error=read.tool_error,
            finish_reason="tool_calls",
            fields={"ttft_ms": ttft_ms, **calls},
            last_delta=flusher().take(box),
        )
        return None
    if exc is not None and not box.cancelled:
        # (With the stop flag set, a failed read is the stop closing the stream.)
        if not parts and not read.tool_calls and exc.retryable:
            metrics.request_failed(endpoint.id)
            endpoint_mark_failure(endpoint=endpoint, error=str(exc))
            log.warning("endpoint %s failed before the first token: %s", endpoint, exc)
            return str(exc)
        if not isinstance(exc, oai.UpstreamClientError):
            endpoint_mark_failure(endpoint=endpoint, error=str(exc))
        # The text so far is stored with the error, in one UPDATE; what is pending goes out with
        # the error frame and the endpoint's figures, in one Redis call.
        last_delta = flusher().take(box)
        generation_finish(
            generation=generation,
            status=GenerationStatus.ERROR,
            seq=box.seq + 1,
            text="".join(parts),
            error=_user_error(exc),
            finish_reason="error",
            fields={"ttft_ms": ttft_ms, **calls},
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
        **calls,
    }
    if box.cancelled:
        status, reason = GenerationStatus.CANCELLED, "cancelled"
    else:
        status, reason = (
            GenerationStatus.DONE,
            (finish.reason if finish and finish.reason else "stop"),
        )
    generation_finish(
        generation=generation,
        status=status,
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
