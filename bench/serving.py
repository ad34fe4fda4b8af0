"""Serving pool end to end: N concurrent generations through Celery, Redis streams and websockets,
against reading the same synthetic upstream directly, in one run.

    python bench/serving.py [--streams 256] [--rate 20] [--tokens 100] [--spread 1.0]
                            [--per-socket 2] [--connect page|request]

The upstream (ludus_dev.fake_upstream, its own process) emits tokens at a fixed rate per stream.
Both paths start the same schedule of N requests spread over --spread seconds, in groups of
--per-socket started together: by default pairs, each pair watched on one websocket, as a battle
page watches its two answers (--per-socket 1 gives every generation a socket of its own). Each
socket opens before the burst, as the arena's page opens its socket when it loads (--connect
page), or when its generations start (--connect request: a page without a socket yet). Reported:
added TTFT p50/p99 (pool TTFT minus direct TTFT, per percentile), delivered tokens/s through the
pool as a ratio of direct, and gaps/duplicates in the websocket sequence numbers. The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (
    ROOT,
    cpu_report,
    cpu_snapshot,
    free_port,
    peak_overlap,
    percentile,
    processes,
    setup_django,
    wait_port,
)

from ludus_dev.__main__ import gen_processes

T = TypeVar("T")


STALL_S = 60  # a socket that hears nothing for this long has stalled


def start_offset(i: int, n: int, spread: float, per_socket: int) -> float:
    """When request i starts, in seconds from the first: groups of `per_socket` (a battle's
    answers) start together, the groups evenly over `spread`."""
    return spread * (i - i % per_socket) / n


async def run_direct(
    base_url: str, model: str, n: int, tokens: int, spread: float, per_socket: int
) -> tuple[list[float], int, float, int]:
    import aiohttp

    ttfts: list[float] = []
    ended: list[float] = []  # when each stream's end arrived: throughput counts up to the last
    in_flight: list[tuple[float, float]] = []  # each stream's request to its end
    received = 0
    # aiohttp, as the generation worker reads upstreams: both sides of the comparison pay the same
    # client, and the bench's own CPU (it shares the machine) stays small.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> None:
            nonlocal received
            await asyncio.sleep(start_offset(i, n, spread, per_socket))
            payload = {
                "model": model,
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": tokens,
                "stream": True,
            }
            started = time.monotonic()
            first = True
            async with session.post(base_url + "/chat/completions", json=payload) as response:
                async for line in response.content:
                    if line.startswith(b"data: {") and b'"content"' in line:
                        if first:
                            ttfts.append((time.monotonic() - started) * 1000)
                            first = False
                        received += 1
                    elif line.startswith(b"data: [DONE]"):
                        ended.append(time.monotonic())
                        in_flight.append((started, ended[-1]))

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = max(ended, default=time.monotonic()) - started
    return ttfts, received, elapsed, peak_overlap(in_flight)


def _creator(
    conn: Connection,
    model_id: int,
    session_key: str,
    tokens: int,
    n: int,
    spread: float,
    per_socket: int,
) -> None:
    """Create the bench's generations on its schedule, in a process of its own.

    What the arena's battle view does in a web process: create a battle's generations (which
    enqueues them) and hand the page their stream tokens. Each reply carries the monotonic time
    (one clock for every process of the machine) at which the page would have started it: pool
    TTFT counts from there. Doing this in the bench process itself measured the bench: its event
    loop, busy with 256 sockets, held the GIL while creation threads waited for it.
    """
    import django

    django.setup()
    from django.conf import settings
    from django.db import close_old_connections

    from config.process import settle
    from modelhub import services, streams
    from modelhub.models import Model

    settle()  # as the web process does once it has started

    model = Model.objects.get(id=model_id)
    params = services.generation_params(model=model, overrides={"max_tokens": tokens})
    close_old_connections()
    send_lock = threading.Lock()
    threads = settings.WEB_THREADS  # the web process's request threads (LUDUS_WEB_THREADS)
    _warm_creator(threads, model.generation_queue)

    def create(first: int, scheduled: float) -> None:
        """Start a group's generations together, as the battle view starts a battle's answers."""
        group = range(first, min(n, first + per_socket))
        generations = services.generations_create(
            requests=[(model, [{"role": "user", "content": "hi"}]) for _ in group],
            params=params,
            session_key=session_key,
        )
        close_old_connections()  # return the pooled connection, as a finished request does
        done = time.monotonic()
        with send_lock:
            for i, generation in zip(group, generations, strict=True):
                gid = str(generation.id)
                conn.send((i, gid, streams.stream_token(gid), scheduled, done))

    conn.send("ready")
    t0 = conn.recv()
    cpu_before = time.process_time()
    # Several threads, as a web process serves several requests at once. TTFT counts from the
    # scheduled moment, so a creation that waits for a free thread counts its wait.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for first in range(0, n, per_socket):
            scheduled = t0 + start_offset(first, n, spread, per_socket)
            delay = scheduled - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(create, first, scheduled)
    conn.send(("cpu", time.process_time() - cpu_before))
    conn.close()


def _warm_creator(threads: int, queue: str) -> None:
    """Warm the creator as a long-running web process is: a pooled database connection open for
    each of its threads, its broker connection made and the queue declared (one task for an id
    that does not exist, which a worker claims as nothing to do)."""
    import uuid

    from django.db import close_old_connections, connection

    from modelhub.tasks import run_generation

    barrier = threading.Barrier(threads)

    def hold_a_connection(_: int) -> None:
        connection.ensure_connection()
        barrier.wait(30)  # all at once, so the pool opens one per thread
        close_old_connections()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(hold_a_connection, range(threads)))
    run_generation.apply_async(args=(str(uuid.uuid4()),), queue=queue)


async def _warm_web(session: Any, web_port: int) -> None:
    """One socket through the web process before the burst (its stream hub and Redis connections
    made), as a long-running web process has them."""
    import uuid

    from asgiref.sync import sync_to_async

    from modelhub import streams

    gid = str(uuid.uuid4())
    token = await sync_to_async(streams.stream_token)(gid)
    async with session.ws_connect(f"ws://127.0.0.1:{web_port}/ws/generations/") as ws:
        subscribe = {"id": gid, "after": 0, "token": token}
        await ws.send_str(json.dumps({"type": "subscribe", "generations": [subscribe]}))
        with contextlib.suppress(TimeoutError):
            await ws.receive(timeout=0.5)  # nothing comes: the generation does not exist


async def run_pool(
    web_port: int,
    session_key: str,
    model_id: int,
    n: int,
    tokens: int,
    spread: float,
    per_socket: int,
    connect: str,
) -> tuple[list[float], int, float, int, int, int]:
    import aiohttp
    from asgiref.sync import sync_to_async

    ttfts: list[float] = []
    created_ms: list[float] = []
    stalled: list[str] = []
    stages: dict[str, list[float]] = {}  # generation id -> [create started, first frame, end]
    ended: list[float] = []  # when each stream's end arrived: throughput counts up to the last
    received_tokens = 0
    gaps = 0
    duplicates = 0

    loop = asyncio.get_running_loop()
    tickets: list[asyncio.Future[tuple[str, str, float]]] = [loop.create_future() for _ in range(n)]
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    creator = multiprocessing.get_context("spawn").Process(
        target=_creator,
        args=(theirs, model_id, session_key, tokens, n, spread, per_socket),
        daemon=True,
    )
    creator.start()
    await loop.run_in_executor(None, ours.recv)  # "ready": Django is set up there

    creator_cpu: list[float] = []

    def on_ticket() -> None:
        while ours.poll():
            try:
                message = ours.recv()
            except EOFError:
                loop.remove_reader(ours.fileno())
                return
            if message[0] == "cpu":
                creator_cpu.append(message[1])
                continue
            i, gid, token, began, done = message
            created_ms.append((done - began) * 1000)
            tickets[i].set_result((gid, token, began))

    loop.add_reader(ours.fileno(), on_ticket)

    # aiohttp's websocket client (its frame reader is compiled): the bench shares the machine with
    # the pool it measures, so its own CPU per frame should be small.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        headers={"Origin": "http://127.0.0.1", "Cookie": f"sessionid={session_key}"},
    )

    url = f"ws://127.0.0.1:{web_port}/ws/generations/"

    async def one(first_index: int, ws: Any) -> None:
        """One socket watching a group of generations (a battle page's two answers), subscribed
        to all of them in one message as the page does. `ws` is the socket the page opened when
        it loaded, or None to open one when the generations start."""
        nonlocal received_tokens, gaps, duplicates
        group = range(first_index, min(n, first_index + per_socket))
        if ws is None:
            await asyncio.sleep(start_offset(first_index, n, spread, per_socket))
            ws = await session.ws_connect(url, autoping=False, max_msg_size=0)
        async with ws:
            started: dict[str, float] = {}
            subscribe = []
            for i in group:
                generation_id, token, began = await tickets[i]
                started[generation_id] = began
                stages[generation_id] = [began]
                subscribe.append({"id": generation_id, "after": 0, "token": token})
            await ws.send_str(json.dumps({"type": "subscribe", "generations": subscribe}))
            expected = dict.fromkeys(started, 1)
            sockets[first_index], heard[first_index] = ws, time.monotonic()
            while started:
                # No timer per frame: watch_stalls closes a socket that stalls.
                message = await ws.receive()
                heard[first_index] = time.monotonic()
                if first_index in silent:
                    stalled.extend(started)
                    return
                if message.type != aiohttp.WSMsgType.TEXT:
                    print("socket closed before the generation ended:", message, file=sys.stderr)
                    stalled.extend(started)
                    return
                data = json.loads(message.data)  # a frame, or an array of frames in order
                for frame in data if isinstance(data, list) else [data]:
                    generation_id = frame["id"]
                    seq = frame.get("seq", 0)
                    if seq > expected[generation_id]:
                        gaps += seq - expected[generation_id]
                    elif seq < expected[generation_id]:
                        duplicates += 1
                    expected[generation_id] = max(expected[generation_id], seq + 1)
                    if frame["type"] == "delta":
                        if len(stages[generation_id]) == 1:
                            ttfts.append((time.monotonic() - started[generation_id]) * 1000)
                            stages[generation_id].append(time.monotonic())
                        received_tokens += len(frame["text"].split())
                    if frame["type"] in {"done", "error", "cancelled", "denied"}:
                        stages[generation_id].append(time.monotonic())
                        ended.append(time.monotonic())
                        if frame["type"] != "done":
                            print("generation ended with", frame, file=sys.stderr)
                        del started[generation_id]

    lags: list[float] = []
    sockets: dict[int, Any] = {}  # open sockets by their group's first index
    heard: dict[int, float] = {}  # when each socket last received a frame
    silent: set[int] = set()  # sockets closed for hearing nothing for STALL_S

    async def watch_stalls() -> None:
        """Close a socket that hears nothing for STALL_S: its generations count as stalled. One
        check a second, where a timeout on every receive cost the client a timer per frame."""
        while True:
            await asyncio.sleep(1)
            now = time.monotonic()
            for index, ws in list(sockets.items()):
                if not ws.closed and now - heard.get(index, now) > STALL_S:
                    silent.add(index)
                    await ws.close()

    async def watch_lag() -> None:
        """How late this bench's own loop wakes: a frame it reads late counts as delivery time."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append((time.monotonic() - before - 0.01) * 1000)

    await _warm_web(session, web_port)
    pages: dict[int, Any] = {}  # the sockets of pages loaded before the burst (connect="page")
    if connect == "page":
        for first in range(0, n, per_socket):
            pages[first] = await session.ws_connect(url, autoping=False, max_msg_size=0)
        await asyncio.sleep(1)  # as users read and type before they send
    watcher = asyncio.create_task(watch_lag())
    staller = asyncio.create_task(watch_stalls())
    started = time.monotonic()
    ours.send(started)
    try:
        await asyncio.gather(*(one(i, pages.get(i)) for i in range(0, n, per_socket)))
    finally:
        await session.close()
        watcher.cancel()
        staller.cancel()
    elapsed = max(ended, default=time.monotonic()) - started
    loop.remove_reader(ours.fileno())
    creator.join(10)
    print(
        f"bench client: its own event loop woke late by p50 {percentile(lags, 50):.1f} ms, "
        f"p99 {percentile(lags, 99):.1f} ms, max {max(lags, default=0):.1f} ms"
    )
    print(
        f"pool: creating a generation (in the creator process) took p50 {percentile(created_ms, 50):.1f} ms, p99 {percentile(created_ms, 99):.1f} ms, "
        f"{sum(creator_cpu) * 1000 / n:.2f} ms of its CPU (the web view's part, not in the totals below)"
    )
    await sync_to_async(_print_stages)(stages)
    if stalled:
        print(f"pool: {len(stalled)} streams stalled or closed early", file=sys.stderr)
    # In flight: from the moment the page would have started a generation to its end frame.
    in_flight = peak_overlap([(t[0], t[-1]) for t in stages.values() if len(t) == 3])
    return ttfts, received_tokens, elapsed, gaps, duplicates, in_flight


def _print_stages(stages: dict[str, list[float]]) -> None:
    """Where a pool TTFT goes, from the stored timestamps of each generation (one machine, one
    clock): the bench's create call up to the INSERT, the queue up to the worker's claim, the
    claim up to the upstream's first token reaching the worker, and the delivery to the socket."""
    from modelhub.models import Generation

    to_wall = time.time() - time.monotonic()
    rows = Generation.objects.filter(id__in=list(stages)).values_list(
        "id", "created_at", "started_at", "ttft_ms"
    )
    parts: dict[str, list[float]] = {"create": [], "queue": [], "worker": [], "delivery": []}
    lasted = [(t[2] - t[1]) * 1000 for t in stages.values() if len(t) == 3]
    for gid, created, claimed, ttft in rows:
        times = [t + to_wall for t in stages[str(gid)]]
        if claimed is None or ttft is None or len(times) < 2:
            continue
        first_token = claimed.timestamp() + ttft / 1000  # ttft counts from the upstream request
        parts["create"].append((created.timestamp() - times[0]) * 1000)
        parts["queue"].append((claimed - created).total_seconds() * 1000)
        parts["worker"].append(ttft)
        parts["delivery"].append((times[1] - first_token) * 1000)
    print(
        "pool TTFT stages (p50/p99 ms): "
        + ", ".join(
            f"{name} {percentile(values, 50):.1f}/{percentile(values, 99):.1f}"
            for name, values in parts.items()
        )
        + f"; first frame to end p50 {percentile(lasted, 50):.0f} ms, p99 {percentile(lasted, 99):.0f} ms"
    )


@contextlib.contextmanager
def _retired(model: Any, *, keep: bool) -> Iterator[None]:
    """Retire the bench's model when the run ends, however it ends: its endpoint was the bench's
    own upstream, which is gone, and the health probes would report it down on /healthz and the
    status page of the instance the bench ran against. Its generations go with it, or stay for
    inspection (--keep) under the model, disabled."""
    try:
        yield
    finally:
        from modelhub.models import Generation, Model

        if keep:
            Model.objects.filter(id=model.id).update(enabled=False)
        else:
            Generation.objects.filter(model=model)._raw_delete(Generation.objects.db)  # type: ignore[attr-defined]
            model.delete()  # and its endpoint


def _run(main: Coroutine[Any, Any, T]) -> T:
    """Run one phase of the bench's client on uvloop, as the web process and the workers run
    theirs: the client shares the machine with what it measures, and asyncio's own loop spent
    a third more of its CPU on the same sockets."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def gen_worker_command(index: int) -> list[str]:
    """The Procfile's `gen:` line, as the product runs it, consuming the bench's queue."""
    line = next(
        line.split(":", 1)[1].strip()
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("gen:")
    )
    line = re.sub(r" -Q \S+", " -Q gen.bench", line)
    line = re.sub(r" -n \S+", f" -n bench{index}@%h", line)
    line = re.sub(r" -l \S+", " -l WARNING", line)
    return ["sh", "-c", f"exec {line}"]


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
    parser.add_argument(
        "--gen-procs",
        type=int,
        default=gen_processes(),
        help="generation worker processes, each started from the Procfile's gen line "
        "(default: as make run starts them, GEN_PROCESSES)",
    )
    parser.add_argument(
        "--per-socket",
        type=int,
        default=2,
        help="generations started together and watched on one websocket (2: a battle page)",
    )
    parser.add_argument(
        "--connect",
        choices=["page", "request"],
        default="page",
        help="when each socket opens: with its page, before the burst, as the arena's page opens "
        "it on load (page); or when its generations start, as on a page that had none (request)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generations for inspection")
    args = parser.parse_args()
    if args.per_socket < 1:
        parser.error("--per-socket must be at least 1")

    env = setup_django()
    from django.contrib.sessions.backends.cached_db import SessionStore

    from config.process import freeze_startup_heap

    # The bench's own client must not pause its sockets for a full collection of Django's heap
    # (190 ms, which the pool's figures would count as delivery time).
    freeze_startup_heap()

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
            "max_concurrency": args.streams,  # the bench measures N at once, not a model's limit
        },
    )
    model.endpoints.all().delete()
    Endpoint.objects.create(model=model, base_url=base_url)
    store = SessionStore()
    store.create()
    py = sys.executable
    worker_env = env | {
        "LUDUS_READ_TIMEOUT": "30",
        "PATH": f"{Path(py).parent}{os.pathsep}{env.get('PATH', '')}",
    }
    servers = processes(
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
            "--ws-per-message-deflate",
            "false",
        ],
        *(gen_worker_command(i) for i in range(args.gen_procs)),
        env=worker_env,
    )
    with _retired(model, keep=args.keep), servers as procs:
        wait_port(up_port)
        wait_port(web_port)
        time.sleep(3)  # let the worker connect to the broker
        labelled = {"upstream": procs[0].pid, "web": procs[1].pid}
        labelled |= {f"gen worker {i}": proc.pid for i, proc in enumerate(procs[2:])}
        before = cpu_snapshot(labelled)
        d_ttft, d_tokens, d_elapsed, d_in_flight = _run(
            run_direct(base_url, served, args.streams, args.tokens, args.spread, args.per_socket)
        )
        middle = cpu_snapshot(labelled)
        p_ttft, p_tokens, p_elapsed, gaps, duplicates, p_in_flight = _run(
            run_pool(
                web_port,
                store.session_key or "",
                model.id,
                args.streams,
                args.tokens,
                args.spread,
                args.per_socket,
                args.connect,
            )
        )
        after = cpu_snapshot(labelled)
        print("direct", cpu_report(before, middle, d_elapsed))
        print("pool  ", cpu_report(middle, after, p_elapsed))
        # The same CPU per generation: unlike latency under a saturating burst, a figure that
        # repeats from run to run, to compare changes by.
        per_gen = {
            phase: {
                label: (end[label] - start.get(label, 0.0)) * 1000 / args.streams for label in end
            }
            for phase, start, end in (("direct", before, middle), ("pool", middle, after))
        }
        for phase, costs in per_gen.items():
            print(
                f"{phase} cpu per generation (ms): "
                + ", ".join(f"{label} {ms:.2f}" for label, ms in costs.items())
                + f"; total {sum(costs.values()):.2f}"
            )
        # The upstream does the same work per generation in every run, so the pool's CPU in units
        # of the upstream's is a figure that the host's speed (which drifts by half between runs
        # on a shared machine) cancels out of.
        upstream_units = sum(per_gen["pool"].values()) / max(per_gen["pool"]["upstream"], 1e-9)
        print(
            f"pool cpu per generation in units of the upstream's: {upstream_units:.2f} "
            "(the figure to compare changes by: host speed cancels out)"
        )
        from modelhub.models import Generation

        generations = Generation.objects.filter(model=model)
        rows = generations.values_list("created_at", "started_at", "ttft_ms")
        queued_ms = [(s - c).total_seconds() * 1000 for c, s, _ in rows if s is not None]
        worker_ttft = [t for _, _, t in rows if t is not None]
        print(
            f"pool: queued (created to claimed) p50 {percentile(queued_ms, 50):.1f} ms p99 {percentile(queued_ms, 99):.1f} ms;"
            f" worker TTFT (request to first token) p50 {percentile(worker_ttft, 50):.1f} ms p99 {percentile(worker_ttft, 99):.1f} ms"
        )
    direct_tps = d_tokens / d_elapsed
    pool_tps = p_tokens / p_elapsed
    print(
        f"in flight at once at the peak (request to end): direct {d_in_flight}, "
        f"pool {p_in_flight}, of {args.streams}"
    )
    if p_in_flight < args.streams:
        print(
            f"fewer than {args.streams} generations were in flight at once: starts spread over "
            f"{args.spread} s outlast a generation",
            file=sys.stderr,
        )
    result = {
        "streams": args.streams,
        "per_socket": args.per_socket,
        "connect": args.connect,
        "rate_per_stream": args.rate,
        "tokens_per_stream": args.tokens,
        "spread_s": args.spread,
        "peak_in_flight_direct": d_in_flight,
        "peak_in_flight_pool": p_in_flight,
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
        "direct_cpu_ms_per_generation": round(sum(per_gen["direct"].values()), 2),
        "pool_cpu_ms_per_generation": round(sum(per_gen["pool"].values()), 2),
        "pool_cpu_in_upstream_units": round(upstream_units, 2),
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
