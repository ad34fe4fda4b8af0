"""Helpers for tests that stream generations through the real pool and websocket (the pool's,
the local engine's and vLLM's suites)."""

from __future__ import annotations

from typing import Any

from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.cached_db import SessionStore

from config.asgi import application
from modelhub import services
from modelhub.models import Generation, GenerationStatus
from tests.helpers import receive_frame, run_async


def new_session_key() -> str:
    store = SessionStore()
    store.create()
    return str(store.session_key)


async def collect_frames(
    session_key: str,
    generation_id: str,
    after: int = 0,
    stop_after: int | None = None,
    timeout: float = 15,
    token: str | None = None,
) -> list[dict[str, Any]]:
    """Subscribe through the real ASGI app and gather frames until the terminal one."""
    comm = WebsocketCommunicator(
        application, "/ws/generations/",
        headers=[(b"origin", b"http://testserver"), (b"host", b"testserver"), (b"cookie", f"sessionid={session_key}".encode())],
    )  # fmt: skip
    connected, _ = await comm.connect()
    assert connected
    item: dict[str, Any] = {"id": generation_id, "after": after}
    if token is not None:
        item["token"] = token
    await comm.send_json_to({"type": "subscribe", "generations": [item]})
    frames: list[dict[str, Any]] = []
    try:
        while True:
            frame = await receive_frame(comm, timeout=timeout)
            frames.append(frame)
            if stop_after is not None and len(frames) == stop_after:
                await comm.send_json_to({"type": "stop", "id": generation_id})
            if frame["type"] in {"done", "error", "cancelled", "denied"}:
                return frames
    finally:
        await comm.disconnect()


def frames_text(frames: list[dict[str, Any]]) -> str:
    return "".join(f.get("text", "") for f in frames if f["type"] in {"delta", "snapshot"})


def assert_gapless(frames: list[dict[str, Any]], start: int = 1) -> None:
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(start, start + len(seqs))), seqs


def stream_and_check(model: Any, params: dict[str, Any]) -> Generation:
    """Run a capital-of-France generation of `model` through the pool, read it back through the
    real websocket, and check the stream is whole and gapless and matches what was stored (the
    engine suites run this against the local engine and a real vLLM)."""
    key = new_session_key()
    generation = services.generation_create(
        model=model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        params=services.generation_params(model=model, overrides=params),
        session_key=key,
    )
    frames = run_async(collect_frames(key, str(generation.id), timeout=60))
    assert frames[-1]["type"] == "done", frames[-1]
    assert_gapless(frames)
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.DONE
    assert generation.text and generation.text == frames_text(frames)
    assert generation.completion_tokens and generation.ttft_ms is not None
    return generation
