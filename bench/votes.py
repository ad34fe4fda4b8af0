"""Sustained vote submissions over HTTP against the running ASGI app on PostgreSQL.

Creates finished battles (and anonymous sessions that own them) directly in the database, starts
uvicorn with several workers, submits one vote per battle from many keep-alive connections, then
replays a sample of the votes (each must get 409 and store nothing) and compares what was
acknowledged with what was stored. Run inside `python -m ludus_dev env`:

    .venv/bin/python bench/votes.py --votes 20000 --connections 48 --workers 3

The last line is one JSON object: votes_per_s, p50_ms, p99_ms, acknowledged, stored, duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-secret-key")


def setup_data(votes: int, sessions: int) -> tuple[list[tuple[str, str, int]], str]:
    """(session_key, battle_id, turn_id) per vote to cast; returns them and the bench tag."""
    import django

    django.setup()
    from django.contrib.sessions.backends.cached_db import SessionStore
    from django.utils import timezone

    from arena.models import Battle, Mode, Turn
    from modelhub.models import Endpoint, Generation, GenerationStatus, Model

    tag = uuid.uuid4().hex[:8]
    models = []
    for side in ("a", "b"):
        model = Model.objects.create(
            name=f"bench-{tag}-{side}", display_name=f"Bench {side}", arena_eligible=False
        )
        Endpoint.objects.create(model=model, base_url="http://127.0.0.1:9/v1")
        models.append(model)
    keys = []
    for _ in range(sessions):
        store = SessionStore()
        store["bench"] = tag
        store.create()
        keys.append(store.session_key or "")
    now = timezone.now()
    battles, generations, turns = [], [], []
    for i in range(votes):
        key = keys[i % sessions]
        battle = Battle(
            mode=Mode.ANONYMOUS, model_a=models[0], model_b=models[1], pair_probability=1.0,
            session_key=key, language="English",
        )  # fmt: skip
        pair = [
            Generation(
                model=model, messages=[{"role": "user", "content": "hi"}], session_key=key,
                status=GenerationStatus.DONE, text=f"answer {i}", finished_at=now, last_seq=2,
            )
            for model in models
        ]  # fmt: skip
        battles.append(battle)
        generations += pair
        turns.append(
            Turn(battle=battle, index=1, prompt="hi", generation_a=pair[0], generation_b=pair[1])
        )
    Battle.objects.bulk_create(battles, batch_size=2000)
    Generation.objects.bulk_create(generations, batch_size=2000)
    Turn.objects.bulk_create(turns, batch_size=2000)
    work = [(b.session_key, str(b.id), t.id) for b, t in zip(battles, turns, strict=True)]
    return work, tag


def stored_counts(tag: str) -> tuple[int, int]:
    from django.db.models import Count

    from arena.models import Vote

    votes = Vote.objects.filter(battle__model_a__name=f"bench-{tag}-a")
    duplicated = (
        votes.values("turn_id").annotate(n=Count("id")).filter(n__gt=1).count()
    )  # impossible by constraint; checked all the same
    return votes.count(), duplicated


def cleanup(tag: str) -> None:
    from arena.models import Battle, Turn, Vote
    from modelhub.models import Generation, Model

    models = Model.objects.filter(name__startswith=f"bench-{tag}-")
    Vote.objects.filter(battle__model_a__in=models).delete()
    Turn.objects.filter(battle__model_a__in=models).delete()
    Battle.objects.filter(model_a__in=models).delete()
    Generation.objects.filter(model__in=models).delete()
    models.delete()  # the bench sessions expire on their own


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += [f"Content-Length: {len(body)}", "", ""]
        self.writer.write("\r\n".join(lines).encode() + body)
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"connection" and b"close" in value.lower():
                close = True
        if length:
            await self.reader.readexactly(length)
        if close:
            self.writer.close()
            self.writer = None
        return status


async def run_load(
    port: int, work: list[tuple[str, str, int]], connections: int
) -> tuple[list[float], dict[int, int], float]:
    queue: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    csrf = secrets.token_hex(16)  # 32 characters: Django accepts an unmasked secret in the header

    async def client() -> None:
        conn = Conn("127.0.0.1", port)
        while True:
            try:
                session_key, battle_id, turn_id = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            headers = {
                "Cookie": f"sessionid={session_key}; csrftoken={csrf}",
                "X-CSRFToken": csrf,
                "HX-Request": "true",
                "Content-Type": "application/x-www-form-urlencoded",
            }
            body = f"turn={turn_id}&choice=a".encode()
            started = time.perf_counter()
            try:
                status = await conn.post(f"/b/{battle_id}/vote/", body, headers)
            except (OSError, asyncio.IncompleteReadError):
                status = 599
                conn.writer = None
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return latencies, statuses, time.perf_counter() - started


def start_server(port: int, workers: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env |= {
        "LUDUS_SECURE_COOKIES": "0",
        "DJANGO_DEBUG": "0",
        "LUDUS_LOG_LEVEL": "ERROR",
        # The bench is one IP and a few thousand sessions: limits high enough to measure votes.
        "LUDUS_ARENA_VOTES_PER_MINUTE": "1000000",
        "LUDUS_ARENA_VOTES_PER_MINUTE_PER_IP": "100000000",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level",
         "warning", "--loop", "uvloop", "--http", "httptools"],
        cwd=ROOT, env=env,
    )  # fmt: skip


def wait_ready(port: int) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=20000)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=48)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--replays", type=int, default=1000)
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument("--keep", action="store_true", help="keep the bench rows afterwards")
    args = parser.parse_args()

    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    t0 = time.perf_counter()
    work, tag = setup_data(args.votes + 500, args.sessions)
    warmup, work = work[:500], work[500:]
    print(f"created {len(work) + len(warmup)} finished battles in {time.perf_counter() - t0:.1f}s")
    server = start_server(args.port, args.workers)
    try:
        wait_ready(args.port)
        asyncio.run(run_load(args.port, warmup, args.connections))  # warm connections and caches
        latencies, statuses, elapsed = asyncio.run(run_load(args.port, work, args.connections))
        replay = work[: args.replays]
        _, replay_statuses, _ = asyncio.run(run_load(args.port, replay, args.connections))
    finally:
        server.terminate()
        server.wait(15)
    acknowledged = statuses.get(200, 0) + 500  # the warm-up votes are stored too
    stored, duplicated = stored_counts(tag)
    print(f"statuses: {statuses}; replays: {replay_statuses}")
    print(f"{len(work)} votes in {elapsed:.2f}s with {args.connections} connections, "
          f"{args.workers} uvicorn workers")  # fmt: skip
    if not args.keep:
        cleanup(tag)
    result = {
        "votes_per_s": round(statuses.get(200, 0) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "acknowledged": acknowledged,
        "stored": stored,
        "duplicated": duplicated + (stored - acknowledged if stored > acknowledged else 0),
        "replays_refused": replay_statuses.get(409, 0),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
