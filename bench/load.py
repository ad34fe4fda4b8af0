"""Simulated visitors against a running arena: the load it sustains and where it stops being quick.

Each visitor (ludus_dev.chaos.Visitor, the one `make chaos` uses) reads the leaderboard, starts a
battle (the arena page for the CSRF cookie, the form's POST), reads both answers to their end on
the generations socket, and votes; then again. The number of visitors steps up (--steps); each
step runs --seconds. Per step: completed HTTP requests per second, battles per second, and
p50/p99 of each action (page, leaderboard, battle, vote: one request each; first_token: from the
socket's subscription to the first delta; stream: both answers to their end).

Without --url it starts the arena as `make chaos` does (its own temporary data folder and
embedded services, the quick zoo, no per-address rate limits, since every visitor is 127.0.0.1).
With --url it runs against that server as it is, rate limits included.

The last line is one JSON object: the steps, and `p99_over_1s_at`, the fewest visitors at which
the p99 of any one-request action passed 1 s (null if none did).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from _harness import percentile  # puts the checkout on sys.path

from ludus_dev.chaos import Tally, crowd, formation

REQUEST_ACTIONS = ("page", "leaderboard", "battle", "vote")


async def _step(url: str, users: int, seconds: float) -> dict[str, Any]:
    tally = Tally()
    stop = asyncio.Event()
    started = time.monotonic()
    load = asyncio.create_task(crowd(url, tally, users, stop, leaderboard=True))
    await asyncio.sleep(seconds)
    stop.set()
    await load  # each visitor ends the battle it is in
    elapsed = time.monotonic() - started
    actions = {
        action: {
            "n": len(values),
            "p50_s": round(percentile(values, 50), 3),
            "p99_s": round(percentile(values, 99), 3),
        }
        for action, values in sorted(tally.latencies.items())
        if values
    }
    return {
        "users": users,
        "seconds": round(elapsed, 1),
        "requests_per_s": round(tally.requests / elapsed, 1),
        "battles_per_s": round(tally.battles / elapsed, 2),
        "votes_per_s": round(len(tally.acknowledged) / elapsed, 2),
        "answers": dict(tally.outcomes),
        "failures": dict(tally.failures.most_common(5)),
        "actions": actions,
    }


def p99_over_1s_at(steps: list[dict[str, Any]]) -> int | None:
    """The fewest visitors at which any one-request action's p99 passed 1 s."""
    for step in steps:
        if any(step["actions"].get(action, {}).get("p99_s", 0) > 1.0 for action in REQUEST_ACTIONS):
            return int(step["users"])
    return None


async def _run(url: str, steps: list[int], seconds: float) -> list[dict[str, Any]]:
    results = []
    for users in steps:
        result = await _step(url, users, seconds)
        print(json.dumps(result), flush=True)
        results.append(result)
        if p99_over_1s_at([result]) is not None and users != steps[-1]:
            print(f"p99 passed 1 s at {users} visitors: one more step, then stop", flush=True)
            results.append(await _step(url, users * 2, seconds))
            print(json.dumps(results[-1]), flush=True)
            break
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running arena (default: start one of its own)")
    parser.add_argument("--steps", default="2,4,8,16,32", help="visitors per step")
    parser.add_argument("--seconds", type=float, default=20.0, help="each step's length")
    parser.add_argument("--gen-concurrency", type=int, default=64)
    args = parser.parse_args()
    steps = [int(n) for n in args.steps.split(",")]
    if args.url:
        results = asyncio.run(_run(args.url.rstrip("/"), steps, args.seconds))
    else:
        with formation(gen_concurrency=args.gen_concurrency) as arena:
            results = asyncio.run(_run(arena.url, steps, args.seconds))
    print(json.dumps({"steps": results, "p99_over_1s_at": p99_over_1s_at(results)}))


if __name__ == "__main__":
    main()
