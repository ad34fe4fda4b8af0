"""The local engine's HTTP API: an OpenAI-compatible Starlette app.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions`` (SSE streaming or one JSON body),
``GET /health``, ``GET /metrics``. Errors use OpenAI's ``{"error": {...}}`` shape: 404 for an
unknown model, 400 for a malformed request, 500 when decoding fails.

Request handlers never touch torch: they parse, hand a Sequence to the model's Scheduler thread,
and relay its events from an asyncio queue. A client that disconnects cancels its Sequence, which
the scheduler drops at its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from modelhub.engine import protocol, toolcalls
from modelhub.engine.metrics import Metrics
from modelhub.engine.protocol import RequestError
from modelhub.engine.runtime import Event, ModelRegistry, Sequence

log = logging.getLogger(__name__)


def _error(exc: RequestError, metrics: Metrics) -> JSONResponse:
    metrics.error(exc.status)
    return JSONResponse(exc.body(), status_code=exc.status)


def create_app(models_dir: Path, registry: ModelRegistry | None = None) -> Starlette:
    """Build the app serving every model under ``models_dir`` (see ModelRegistry)."""
    metrics = registry.metrics if registry else Metrics()
    reg = registry or ModelRegistry(models_dir, metrics)
    # This app's own registry, not prometheus_client's global one: several apps (tests, a
    # process serving two) each expose only their own counters.
    exposition = CollectorRegistry(auto_describe=False)
    exposition.register(metrics)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "loaded": reg.loaded(), "device": str(reg.device)})

    async def metrics_view(request: Request) -> Response:
        return Response(generate_latest(exposition), media_type=CONTENT_TYPE_LATEST)

    async def list_models(request: Request) -> Response:
        reg.refresh()
        data = [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": entry.get("organization", "ludus"),
                "root": entry.get("path", name),
                "modalities": entry.get("modalities", ["text"]),
            }
            for name, entry in sorted(reg.entries.items())
        ]
        return JSONResponse({"object": "list", "data": data})

    async def chat_completions(request: Request) -> Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(RequestError("request body is not valid JSON"), metrics)
        try:
            req = protocol.parse_chat_request(body)
            scheduler = await run_in_threadpool(reg.get, req.model)
            lm = scheduler.lm
            prompt_ids, pixels = await run_in_threadpool(
                lm.encode,
                toolcalls.normalise_messages(req.messages),
                req.images,
                req.tools.tools if req.tools else None,
                toolcalls.prefix(req.tools) if req.tools else "",
            )
        except RequestError as exc:
            return _error(exc, metrics)
        room = lm.max_len - len(prompt_ids)
        if room < 1:
            return _error(
                RequestError(
                    f"prompt is {len(prompt_ids)} tokens; this model's context is {lm.max_len}",
                    param="messages",
                    code="context_length_exceeded",
                ),
                metrics,
            )
        max_tokens = min(req.sampling.max_tokens or lm.default_max_tokens, room)

        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()

        def emit(event: Event) -> None:
            # Called on the scheduler thread; the loop may be gone at shutdown.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(events.put_nowait, event)

        seq = Sequence(
            prompt_ids=prompt_ids,
            sampling=req.sampling,
            max_tokens=max_tokens,
            emit=emit,
            pixel_values=pixels,
        )
        metrics.started(req.model)
        scheduler.submit(seq)
        cid, created = protocol.completion_id(), protocol.now()
        if req.stream:
            return StreamingResponse(
                _stream(request, req, seq, events, cid, created),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await _complete(request, req, seq, events, cid, created, metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(reg.shutdown)

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/metrics", metrics_view),
            Route("/v1/models", list_models),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.registry = reg
    return app


def _finish_reason(finish: str, parser: toolcalls.ToolCallParser | None) -> str:
    """OpenAI's "tool_calls" when the reply ended on its calls (a cut-off one stays "length")."""
    return "tool_calls" if parser is not None and parser.calls and finish == "stop" else finish


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


async def _watch_disconnect(request: Request, seq: Sequence) -> None:
    """Cancel ``seq`` once the client goes away (polls the ASGI receive channel)."""
    while not seq.finished and not seq.cancelled.is_set():
        if await request.is_disconnected():
            seq.cancel()
            return
        await asyncio.sleep(0.05)


async def _stream(
    request: Request,
    req: protocol.ChatRequest,
    seq: Sequence,
    events: asyncio.Queue[Event],
    cid: str,
    created: int,
) -> AsyncIterator[str]:
    """SSE exactly as OpenAI sends it: role chunk, content chunks, finish chunk, usage, [DONE]."""
    watcher = asyncio.create_task(_watch_disconnect(request, seq))
    with_usage = req.include_usage
    parser = toolcalls.ToolCallParser(req.tools) if req.tools else None

    def deltas(delta: toolcalls.Delta) -> Iterator[str]:
        if delta.content:
            yield _sse(
                protocol.chunk(
                    cid, req.model, created, {"content": delta.content}, None, with_usage
                )
            )
        for call in delta.calls:
            yield _sse(
                protocol.chunk(cid, req.model, created, {"tool_calls": [call]}, None, with_usage)
            )

    try:
        yield _sse(
            protocol.chunk(
                cid, req.model, created, {"role": "assistant", "content": ""}, None, with_usage
            )
        )
        while True:
            event = await events.get()
            if parser is None:
                delta = toolcalls.Delta(content=event.text)
            else:
                delta = parser.feed(event.text)
                if event.finish is not None:
                    end = parser.finish()
                    delta.content += end.content
                    delta.calls += end.calls
            for line in deltas(delta):
                yield line
            if event.finish is None:
                continue
            if event.finish in ("error", "cancelled"):
                message = event.error or "generation was cancelled"
                yield _sse(
                    {
                        "error": {
                            "message": message,
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                )
                return
            finish = _finish_reason(event.finish, parser)
            yield _sse(protocol.chunk(cid, req.model, created, {}, finish, with_usage))
            if with_usage:
                yield _sse(
                    {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": req.model,
                        "system_fingerprint": "ludus-local",
                        "choices": [],
                        "usage": protocol.usage(event.prompt_tokens, event.completion_tokens),
                    }
                )
            yield _sse("[DONE]")
            return
    finally:
        # Runs when the stream ends, and when Starlette abandons it because the client left.
        seq.cancel()
        watcher.cancel()


async def _complete(
    request: Request,
    req: protocol.ChatRequest,
    seq: Sequence,
    events: asyncio.Queue[Event],
    cid: str,
    created: int,
    metrics: Metrics,
) -> Response:
    """Non-streaming: gather the whole reply, cancelling decoding if the client leaves first."""
    watcher = asyncio.create_task(_watch_disconnect(request, seq))
    parts: list[str] = []
    try:
        while True:
            event = await events.get()
            parts.append(event.text)
            if event.finish is not None:
                break
    finally:
        watcher.cancel()
        seq.cancel()
    text, calls = "".join(parts), []
    if req.tools:
        parser = toolcalls.ToolCallParser(req.tools)
        first, end = parser.feed(text), parser.finish()
        text, calls = first.content + end.content, parser.calls
    else:
        parser = None
    if event.finish in ("error", "cancelled"):
        return _error(
            RequestError(
                event.error or "generation was cancelled", status=500, type_="server_error"
            ),
            metrics,
        )
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
    else:
        message["content"] = text
    return JSONResponse(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": req.model,
            "system_fingerprint": "ludus-local",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _finish_reason(event.finish, parser),
                }
            ],
            "usage": protocol.usage(event.prompt_tokens, event.completion_tokens),
        }
    )
