"""Sustained vote submissions over HTTP against the running ASGI app on PostgreSQL.

Creates finished battles (and anonymous sessions that own them) directly in the database, starts
the web server (uvicorn serving the product's ASGI app, as the Procfile does), submits one
vote per battle from many keep-alive connections, then replays a sample of the votes (each must get
409 and store nothing) and compares what was acknowledged with what was stored.

The load generator is `wrk` (C, one thread, a Lua script that hands every request its own battle,
session cookie and CSRF header: `apt-get install -y wrk`) so that the client costs little of the CPU
it measures; without wrk (or with --client asyncio) an asyncio client is used instead. Run inside
`python -m ludus_dev env`, under the shared bench lock:

    flock /tmp/ludus-bench.lock .venv/bin/python bench/votes.py --duration 10 --workers 2

The last line is one JSON object: votes_per_s, p50_ms, p99_ms, acknowledged, stored, duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if not os.environ.get("DATABASE_URL"):
    # Self-contained like the other benches: embedded services, the bench's own database.
    from ludus_dev.services import ensure_services

    os.environ.update(ensure_services(ROOT / "data", database="ludus_bench").env())
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
) -> tuple[list[float], dict[int, int], float, list[tuple[str, str, int]]]:
    """Votes from `connections` keep-alive connections: latencies, statuses, wall time and the
    items acknowledged with 200."""
    queue: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    acked: list[tuple[str, str, int]] = []
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
            if status == 200:
                acked.append((session_key, battle_id, turn_id))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return latencies, statuses, time.perf_counter() - started, acked


def start_server(port: int, workers: int) -> subprocess.Popen[bytes]:
    """The ASGI app as deployed (Procfile): uvicorn serving config.asgi:application."""
    env = dict(os.environ)
    env |= {
        "LUDUS_SECURE_COOKIES": "0",
        "DJANGO_DEBUG": "0",
        "LUDUS_LOG_LEVEL": "ERROR",
        # The bench is one IP and a few thousand sessions: limits high enough to measure votes.
        "LUDUS_ARENA_VOTES_PER_MINUTE": "1000000",
        "LUDUS_ARENA_VOTES_PER_MINUTE_PER_IP": "100000000",
        "PYTHONWARNINGS": "ignore",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
         "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip


WRK_SCRIPT = r"""
-- One vote per request: thread i takes lines i, i+n, i+2n... of the work file.
local threads = {}
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  nthreads = tonumber(args[2]); csrf = args[3]
  items = {}; pos = 0; ok = 0; other = 0; ended = false
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == id then table.insert(items, line) end
    i = i + 1
  end
end
function request()
  pos = pos + 1
  local line = items[pos]
  if line == nil then
    ended = true
    line = items[#items]  -- a replay (409) while the thread stops; not counted below
  end
  local key, battle, turn = line:match("([^ ]+) ([^ ]+) ([^ ]+)")
  return wrk.format("POST", "/b/" .. battle .. "/vote/", {
    ["Cookie"] = "sessionid=" .. key .. "; csrftoken=" .. csrf,
    ["X-CSRFToken"] = csrf, ["HX-Request"] = "true",
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }, "turn=" .. turn .. "&choice=a")
end
function response(status, headers, body)
  if ended then wrk.thread:stop() return end
  if status == 200 then ok = ok + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local ok_total, other_total = 0, 0
  for _, t in ipairs(threads) do
    ok_total = ok_total + t:get("ok"); other_total = other_total + t:get("other")
  end
  io.write(string.format(
    'WRK {"ok": %d, "other": %d, "requests": %d, "duration_us": %d, "errors": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    ok_total, other_total, summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def run_wrk(
    port: int, work: list[tuple[str, str, int]], connections: int, duration: float
) -> tuple[dict[str, float], float]:
    """wrk with one thread; returns its summary and the wall time."""
    csrf = secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as tmp:
        script, data = Path(tmp) / "votes.lua", Path(tmp) / "work.txt"
        script.write_text(WRK_SCRIPT)
        data.write_text("".join(f"{k} {b} {t}\n" for k, b, t in work))
        started = time.perf_counter()
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "5s", "-s",
             str(script), f"http://127.0.0.1:{port}", "--", str(data), "1", csrf],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if out.returncode:
            raise RuntimeError(f"wrk failed: {out.stdout} {out.stderr}")
        wall = time.perf_counter() - started
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRK "))
    return json.loads(line[4:]), wall


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


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
    parser.add_argument("--votes", type=int, default=0, help="battles to create (default: enough)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load (wrk)")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--client", choices=("wrk", "asyncio"), default="wrk")
    parser.add_argument("--replays", type=int, default=1000)
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument(
        "--py-spy", default="", help="write a py-spy raw profile of the server during the load"
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench rows afterwards")
    args = parser.parse_args()
    client = args.client if shutil.which("wrk") else "asyncio"
    votes = args.votes or (int(args.duration * 2500) if client == "wrk" else 20000)

    for command in (["migrate"], ["collectstatic", "--noinput"]):
        subprocess.run([sys.executable, "manage.py", *command, "-v", "0"], cwd=ROOT, check=True)
    t0 = time.perf_counter()
    warm = 1000
    work, tag = setup_data(votes + warm, args.sessions)
    warmup, work = work[:warm], work[warm:]
    print(f"created {len(work) + len(warmup)} finished battles in {time.perf_counter() - t0:.1f}s")
    server = start_server(args.port, args.workers)
    try:
        wait_ready(args.port)
        # Warm connections and caches; these votes are acknowledged and replayed at the end.
        _, warm_statuses, _, warm_acked = asyncio.run(run_load(args.port, warmup, args.connections))
        cpu_before = tree_cpu_s(server.pid)
        spy = None
        if args.py_spy:
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(server.pid),
                 "--subprocesses", "--nonblocking", "--format", "raw", "--rate", "250",
                 "--duration", str(max(1, round(args.duration) - 1)), "--output", args.py_spy],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
        if client == "wrk":
            summary, elapsed = run_wrk(args.port, work, args.connections, args.duration)
            ok = int(summary["ok"])
            statuses = {200: ok, -1: int(summary["other"]), 599: int(summary["errors"])}
            elapsed = summary["duration_us"] / 1e6
            p50, p99 = summary["p50_us"] / 1000, summary["p99_us"] / 1000
        else:
            latencies, statuses, elapsed, _ = asyncio.run(
                run_load(args.port, work, args.connections)
            )
            ok = statuses.get(200, 0)
            p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
        server_cpu = tree_cpu_s(server.pid) - cpu_before
        if spy is not None:
            spy.wait(60)
        # Every replay of an acknowledged vote must get 409 and store nothing.
        replay = warm_acked[: args.replays]
        _, replay_statuses, _, _ = asyncio.run(run_load(args.port, replay, args.connections))
    finally:
        server.terminate()
        server.wait(15)
    acknowledged = ok + len(warm_acked)  # the warm-up votes are stored too
    stored, duplicated = stored_counts(tag)
    print(f"warm-up: {warm_statuses}; statuses: {statuses}; replays: {replay_statuses}")
    print(f"{ok} votes in {elapsed:.2f}s with {args.connections} connections ({client}), "
          f"{args.workers} uvicorn workers, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    if not args.keep:
        cleanup(tag)
    result = {
        "votes_per_s": round(ok / elapsed, 1),
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "acknowledged": acknowledged,
        "stored": stored,
        # Turns with more than one vote (impossible by the unique turn; checked all the same).
        "duplicated": duplicated,
        "lost": max(0, acknowledged - stored),
        # Requests still in flight when wrk stopped: stored, never acknowledged (distinct turns).
        "stored_unacknowledged": max(0, stored - acknowledged),
        "replays_refused": replay_statuses.get(409, 0),
        # CPU the web server spent per acknowledged vote (PostgreSQL and Redis not included): with
        # the machine shared, a steadier figure than the wall-clock rate.
        "server_cpu_ms_per_vote": round(server_cpu * 1000 / ok, 2) if ok else None,
        "server": f"uvicorn x{args.workers}",
        "client": client,
        "connections": args.connections,
        "loadavg_1m": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
