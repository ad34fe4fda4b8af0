"""Serving pool end to end: N concurrent generations through Celery, Redis streams and websockets,
against reading the same synthetic upstream directly, in one run.

    python bench/serving.py [--streams 256] [--rate 20] [--tokens 100] [--spread 1.0]

The upstream (ludus_dev.fake_upstream, its own process) emits tokens at a fixed rate per stream.
Both paths start the same schedule of N requests spread over --spread seconds. Reported:
added TTFT p50/p99 (pool TTFT minus direct TTFT, per percentile), delivered tokens/s through the
pool as a ratio of direct, and gaps/duplicates in the websocket sequence numbers. The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ROOT, free_port, percentile, processes, setup_django, wait_port


async def run_direct(
    base_url: str, model: str, n: int, tokens: int, spread: float
) -> tuple[list[float], int, float]:
    import httpx

    ttfts: list[float] = []
    received = 0
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one(i: int) -> None:
            nonlocal received
            await asyncio.sleep(spread * i / n)
            payload = {
                "model": model,
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": tokens,
                "stream": True,
            }
            started = time.monotonic()
            first = True
            async with client.stream(
                "POST", base_url + "/chat/completions", json=payload
            ) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and '"content"' in line:
                        if first:
                            ttfts.append((time.monotonic() - started) * 1000)
                            first = False
                        received += 1

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.monotonic() - started
    return ttfts, received, elapsed


async def run_pool(
    web_port: int, session_key: str, model_id: int, n: int, tokens: int, spread: float
) -> tuple[list[float], int, float, int, int]:
    import websockets
    from asgiref.sync import sync_to_async

    from modelhub import services, streams
    from modelhub.models import Model

    model = await sync_to_async(Model.objects.get)(id=model_id)
    ttfts: list[float] = []
    created_ms: list[float] = []
    stalled: list[str] = []
    received_tokens = 0
    gaps = 0
    duplicates = 0

    def create() -> tuple[str, str]:
        # What the arena's battle view does: create the generation, hand the page a stream token.
        params = services.generation_params(model=model, overrides={"max_tokens": tokens})
        generation = services.generation_create(
            model=model,
            messages=[{"role": "user", "content": "hi"}],
            params=params,
            session_key=session_key,
        )
        return str(generation.id), streams.stream_token(str(generation.id))

    create_async = sync_to_async(create, thread_sensitive=False)

    async def one(i: int) -> None:
        nonlocal received_tokens, gaps, duplicates
        await asyncio.sleep(spread * i / n)
        headers = {"Origin": "http://127.0.0.1", "Cookie": f"sessionid={session_key}"}
        async with websockets.connect(
            f"ws://127.0.0.1:{web_port}/ws/generations/", additional_headers=headers, max_queue=None
        ) as ws:
            started = time.monotonic()
            generation_id, token = await create_async()
            created_ms.append((time.monotonic() - started) * 1000)
            await ws.send(
                json.dumps(
                    {
                        "type": "subscribe",
                        "generations": [{"id": generation_id, "after": 0, "token": token}],
                    }
                )
            )
            expected = 1
            first = True
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=60)
                except TimeoutError:
                    stalled.append(generation_id)
                    return
                frame = json.loads(raw)
                seq = frame.get("seq", 0)
                if seq > expected:
                    gaps += seq - expected
                elif seq < expected:
                    duplicates += 1
                expected = max(expected, seq + 1)
                if frame["type"] == "delta":
                    if first:
                        ttfts.append((time.monotonic() - started) * 1000)
                        first = False
                    received_tokens += len(frame["text"].split())
                if frame["type"] in {"done", "error", "cancelled", "denied"}:
                    if frame["type"] != "done":
                        print("generation ended with", frame, file=sys.stderr)
                    return

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    print(
        f"pool: creating a generation took p50 {percentile(created_ms, 50):.1f} ms, p99 {percentile(created_ms, 99):.1f} ms (client side)"
    )
    return ttfts, received_tokens, time.monotonic() - started, gaps, duplicates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--rate", type=int, default=20, help="tokens/s per stream at the upstream")
    parser.add_argument("--tokens", type=int, default=100, help="tokens per generation")
    parser.add_argument(
        "--spread", type=float, default=1.0, help="seconds over which requests start"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generations for inspection")
    args = parser.parse_args()

    env = setup_django()
    from django.contrib.sessions.backends.cached_db import SessionStore

    from modelhub.models import Endpoint, Model

    up_port, web_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{up_port}/v1"
    served = f"fake-r{args.rate}"
    model, _ = Model.objects.update_or_create(
        name="bench-serving",
        defaults={
            "served_name": served,
            "engine": "openai",
            "arena_eligible": False,
            "enabled": True,
            "queue": "gen.bench",
        },
    )
    model.endpoints.all().delete()
    Endpoint.objects.create(model=model, base_url=base_url)
    store = SessionStore()
    store.create()
    py = sys.executable
    worker_env = env | {"LUDUS_READ_TIMEOUT": "30", "LUDUS_DB_POOL_MAX": "48"}
    with processes(
        [py, "-m", "ludus_dev.fake_upstream", "--port", str(up_port)],
        [
            py,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--port",
            str(web_port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        [
            py,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "-Q",
            "gen.bench",
            "-P",
            "threads",
            "-c",
            str(args.streams),
            "-n",
            "bench@%h",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "WARNING",
        ],
        env=worker_env,
    ):
        wait_port(up_port)
        wait_port(web_port)
        time.sleep(3)  # let the worker connect to the broker
        d_ttft, d_tokens, d_elapsed = asyncio.run(
            run_direct(base_url, served, args.streams, args.tokens, args.spread)
        )
        p_ttft, p_tokens, p_elapsed, gaps, duplicates = asyncio.run(
            run_pool(
                web_port, store.session_key or "", model.id, args.streams, args.tokens, args.spread
            )
        )
    from modelhub.models import Generation

    if not args.keep:
        Generation.objects.filter(model=model)._raw_delete(Generation.objects.db)  # type: ignore[attr-defined]
    direct_tps = d_tokens / d_elapsed
    pool_tps = p_tokens / p_elapsed
    result = {
        "streams": args.streams,
        "rate_per_stream": args.rate,
        "tokens_per_stream": args.tokens,
        "direct_ttft_p50_ms": round(percentile(d_ttft, 50), 1),
        "direct_ttft_p99_ms": round(percentile(d_ttft, 99), 1),
        "pool_ttft_p50_ms": round(percentile(p_ttft, 50), 1),
        "pool_ttft_p99_ms": round(percentile(p_ttft, 99), 1),
        "added_ttft_p50_ms": round(percentile(p_ttft, 50) - percentile(d_ttft, 50), 1),
        "added_ttft_p99_ms": round(percentile(p_ttft, 99) - percentile(d_ttft, 99), 1),
        "direct_tokens_per_s": round(direct_tps, 1),
        "pool_tokens_per_s": round(pool_tps, 1),
        "throughput_ratio": round(pool_tps / direct_tps, 4),
        "delivered_tokens": p_tokens,
        "expected_tokens": args.streams * args.tokens,
        "gaps": gaps,
        "duplicates": duplicates,
    }
    print(
        f"direct: TTFT p50 {result['direct_ttft_p50_ms']} ms p99 {result['direct_ttft_p99_ms']} ms, {direct_tps:.0f} tokens/s"
    )
    print(
        f"pool:   TTFT p50 {result['pool_ttft_p50_ms']} ms p99 {result['pool_ttft_p99_ms']} ms, {pool_tps:.0f} tokens/s, {p_tokens}/{args.streams * args.tokens} tokens, gaps {gaps}, duplicates {duplicates}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    _ = ROOT
    main()
