"""A small OpenAI-compatible server for tests and benchmarks: tokens at a fixed rate, and failures
on demand. The model name picks the behaviour:

  fake[-r<rate>]          streams max_tokens tokens "t0 t1 ..." at <rate> tokens/s (default 200)
  fake-500                answers HTTP 500          fake-400   answers HTTP 400
  fake-hang               sends headers, then nothing
  fake-malformed          sends one good delta, then a line that is not JSON
  fake-die                sends a few deltas, then drops the connection without [DONE]
  fake-echo               streams back the kinds of the last message's content parts
  fake-say                streams back the last message's text, word by word

GET /stats reports how many streams finished and how many clients went away mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

STATS: dict[str, int] = {"started": 0, "finished": 0, "disconnected": 0}
DOWN = {"value": False}


def _rate(model: str) -> float:
    match = re.search(r"-r(\d+)", model)
    return float(match.group(1)) if match else 200.0


def _chunk(
    model: str,
    content: str | None = None,
    finish: str | None = None,
    usage: dict[str, int] | None = None,
) -> str:
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [],
    }
    if content is not None or finish is not None:
        body["choices"] = [
            {"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}
        ]
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n"


async def models(request: Request) -> Response:
    if DOWN["value"]:
        return JSONResponse({"error": {"message": "down"}}, status_code=503)
    return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})


async def stats(request: Request) -> Response:
    return JSONResponse(STATS)


async def set_down(request: Request) -> Response:
    DOWN["value"] = request.query_params.get("down", "1") == "1"
    return JSONResponse(DOWN)


async def chat(request: Request) -> Response:
    payload = await request.json()
    model = str(payload.get("model", "fake"))
    if DOWN["value"] or model.startswith("fake-500"):
        return JSONResponse({"error": {"message": "upstream exploded"}}, status_code=500)
    if model.startswith("fake-400"):
        return JSONResponse({"error": {"message": "bad request"}}, status_code=400)
    n = int(payload.get("max_tokens") or 16)
    if not payload.get("stream"):
        text = " ".join(f"t{i}" for i in range(n))
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "length",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3},
            }
        )
    interval = 1.0 / _rate(model)
    echo: list[str] = []
    if model.startswith("fake-echo"):
        content = (payload.get("messages") or [{}])[-1].get("content")
        kinds = (
            [part.get("type", "?") for part in content] if isinstance(content, list) else ["text"]
        )
        urls = [
            part["image_url"]["url"][:22]
            for part in content or []
            if isinstance(part, dict) and part.get("type") == "image_url"
        ]
        echo = [f"{k} " for k in kinds] + [f"{u} " for u in urls]
        n = len(echo)
    elif model.startswith("fake-say"):
        content = (payload.get("messages") or [{}])[-1].get("content")
        echo = [f"{word} " for word in str(content or "").split()]
        n = len(echo)

    async def body() -> AsyncIterator[str]:
        STATS["started"] += 1
        finished = False
        try:
            if model.startswith("fake-hang"):
                await asyncio.sleep(3600)
            start = time.monotonic()
            for i in range(n):
                # Pace against the start time so the rate holds whatever the scheduling jitter.
                delay = start + i * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                yield _chunk(model, content=echo[i] if echo else f"t{i} ")
                if model.startswith("fake-malformed"):
                    yield "data: {not json\n\n"
                    return
                if model.startswith("fake-die") and i == 2:
                    raise RuntimeError("simulated crash mid-stream")
            yield _chunk(model, finish="length" if n else "stop")
            yield _chunk(
                model, usage={"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3}
            )
            yield "data: [DONE]\n\n"
            finished = True
            STATS["finished"] += 1
        finally:
            if not finished and not model.startswith(("fake-malformed", "fake-die")):
                STATS["disconnected"] += 1

    return StreamingResponse(body(), media_type="text/event-stream")


app = Starlette(
    routes=[
        Route("/v1/models", models),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/stats", stats),
        Route("/down", set_down, methods=["POST"]),
    ]
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """Run the fake upstream in a background thread; `base_url` ends with /v1."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="fake OpenAI-compatible upstream")
    parser.add_argument("--port", type=int, default=8199)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
