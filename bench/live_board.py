"""Benchmark: the live leaderboard. Two figures:

refit     The live refit from counts (arena.leaderboard.boards.live_boards_fit: the full
          snapshot's count cells plus the votes since, Bradley-Terry with sandwich intervals for
          all categories and each one) at ``--models`` (100) models, ``--categories`` (5)
          categories and ``--battles`` (1M) battles; median and max of ``--repeats`` runs.
publish   Vote to published live snapshot, end to end on PostgreSQL and Redis with a real Celery
          worker: ``--db-votes`` counted votes (50,000) over the same number of models and a full
          snapshot of them, then ``--votes`` (10) votes cast through arena.services.vote_cast a few
          seconds apart; each one's latency is the time from the call until the latest snapshot
          holds it. Skipped with ``--refit-only``.

Run it on a database of its own (DATABASE_URL; otherwise the embedded services' ludus_bench). The
last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

PARAMS: dict[str, Any] = {
    "method": "bt",
    "rounds": 1000,
    "style_rounds": 100,
    "elo_rounds": 100,
    "seed": 0,
    "interval": "bootstrap",
    "ties": "half",
    "bothbad": "tie",
    "prior": 0.5,
    "min_votes": 300,
}


def _cells(rng: np.random.Generator, models: list[str], battles: int) -> list[list[Any]]:
    """Count cells (a, b, winner, n) of ``battles`` battles between uniformly drawn pairs, won
    by Bradley-Terry strengths spread over 400 Elo points."""
    m = len(models)
    theta = np.linspace(2.3, -2.3, m)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    per_pair = rng.multinomial(battles, np.full(len(pairs), 1 / len(pairs)))
    cells: list[list[Any]] = []
    for (i, j), n in zip(pairs, per_pair, strict=True):
        p = 1 / (1 + np.exp(theta[j] - theta[i]))
        wins, losses, ties = rng.multinomial(n, [0.9 * p, 0.9 * (1 - p), 0.1])
        for winner, k in (("model_a", wins), ("model_b", losses), ("tie", ties)):
            if k:
                cells.append([models[i], models[j], winner, int(k)])
    return cells


def bench_refit(args: argparse.Namespace) -> dict[str, Any]:
    from arena.leaderboard.boards import live_boards_fit
    from arena.leaderboard.selectors import CountRow

    rng = np.random.default_rng(args.seed)
    models = [f"model-{k:03d}" for k in range(args.models)]
    categories = [f"category-{k}" for k in range(args.categories)]
    cells = {"": _cells(rng, models, args.battles)}
    for category in categories:
        cells[category] = _cells(rng, models, args.battles // (2 * max(1, len(categories))))
    base = {"categories": categories, "cells": cells, "boards": {}}
    added: list[CountRow] = [
        (models[k % args.models], models[(k + 1) % args.models], "model_a", (categories[0],), 1)
        for k in range(100)
    ]
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        data = live_boards_fit(base, added, PARAMS)
        times.append(time.perf_counter() - started)
    board = data["boards"]["bt"][""]
    assert len(board["models"]) == args.models, board.get("error")
    print(
        f"live refit at {args.models} models, {len(categories)} categories, {args.battles:,}"
        f" battles: median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
    )
    return {
        "refit_models": args.models,
        "refit_categories": len(categories),
        "refit_battles": args.battles,
        "refit_p50_ms": round(statistics.median(times) * 1000, 1),
        "refit_max_ms": round(max(times) * 1000, 1),
    }


def _seed_votes(models: list[Any], n: int, rng: np.random.Generator) -> None:
    """``n`` counted votes, made in bulk as the arena stores them."""
    from django.utils import timezone

    from arena.models import Battle, Mode, Turn, Vote
    from modelhub.models import Generation, GenerationStatus

    now = timezone.now()
    for start in range(0, n, 5000):
        size = min(5000, n - start)
        pairs = [rng.choice(len(models), 2, replace=False) for _ in range(size)]
        battles = Battle.objects.bulk_create(
            [
                Battle(mode=Mode.ANONYMOUS, model_a=models[a], model_b=models[b],
                       pair_probability=0.01, session_key=f"bench-{k % 500}", language="English")
                for k, (a, b) in enumerate(pairs)
            ],
            batch_size=1000,
        )  # fmt: skip
        gens = Generation.objects.bulk_create(
            [
                Generation(model=models[ab[side]], messages=[{"role": "user", "content": "hi"}],
                           status=GenerationStatus.DONE, text="answer", finished_at=now)
                for ab in pairs
                for side in (0, 1)
            ],
            batch_size=1000,
        )  # fmt: skip
        turns = Turn.objects.bulk_create(
            [
                Turn(battle=battle, index=1, prompt="hi", generation_a=gens[2 * k],
                     generation_b=gens[2 * k + 1])
                for k, battle in enumerate(battles)
            ],
            batch_size=1000,
        )  # fmt: skip
        Vote.objects.bulk_create(
            [
                Vote(turn=turn, battle=turn.battle, choice=("a", "b", "tie")[int(rng.integers(3))],
                     session_key=turn.battle.session_key, anony=True)
                for turn in turns
            ],
            batch_size=1000,
        )  # fmt: skip


def _ready_turn(model_a: Any, model_b: Any, session_key: str) -> tuple[Any, Any]:
    from django.utils import timezone

    from arena.models import Battle, Mode, Turn
    from modelhub.models import Generation, GenerationStatus

    now = timezone.now()
    battle = Battle.objects.create(
        mode=Mode.ANONYMOUS, model_a=model_a, model_b=model_b, session_key=session_key
    )
    gens = [
        Generation.objects.create(
            model=m, messages=[{"role": "user", "content": "hi"}],
            status=GenerationStatus.DONE, text="answer", finished_at=now,
        )
        for m in (model_a, model_b)
    ]  # fmt: skip
    turn = Turn.objects.create(
        battle=battle, index=1, prompt="hi", generation_a=gens[0], generation_b=gens[1]
    )
    return battle, turn


def bench_publish(args: argparse.Namespace) -> dict[str, Any]:
    from _harness import processes, setup_django

    env = setup_django()
    from arena.leaderboard import selectors, services
    from arena.models import Battle, LeaderboardSnapshot
    from arena.selectors import Requester
    from arena.services import vote_cast
    from modelhub.models import Model
    from modelhub.presence import presence_expires_in
    from modelhub.redis_clients import client as redis_client

    rng = np.random.default_rng(args.seed)
    Battle.objects.filter(session_key__startswith="bench-").delete()
    LeaderboardSnapshot.objects.all().delete()
    models = [
        Model.objects.get_or_create(name=f"bench-live-{k:03d}")[0] for k in range(args.models)
    ]
    started = time.perf_counter()
    _seed_votes(models, args.db_votes, rng)
    print(f"seeded {args.db_votes:,} votes in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    services.leaderboard_refresh(rounds=20, style_rounds=2, elo_rounds=2)
    print(f"full snapshot (few bootstrap rounds) in {time.perf_counter() - started:.1f}s")
    redis_client().delete(services.LIVE_PENDING_KEY)

    hostname = f"bench-live-{os.getpid()}@localhost"
    worker = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", "default", "-P",
              "threads", "-c", "2", "-n", hostname, "--without-gossip", "--without-mingle",
              "-l", "WARNING"]  # fmt: skip
    latencies: list[float] = []
    with processes(worker, env=env):
        deadline = time.monotonic() + 60
        while presence_expires_in(hostname=hostname) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("celery worker did not start")
            time.sleep(0.1)
        for k in range(args.votes):
            a, b = rng.choice(len(models), 2, replace=False)
            session = f"bench-voter-{k}"
            battle, turn = _ready_turn(models[a], models[b], session)
            requester = Requester(user_id=None, session_key=session)
            t0 = time.perf_counter()
            vote = vote_cast(battle_id=battle.id, turn_id=turn.id, requester=requester, choice="a")
            while True:
                latest = selectors.snapshot_latest()
                if (
                    latest is not None
                    and latest.live
                    and latest.data["live"]["last_id"] >= (vote.vote.id or 0)
                ):
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("no live snapshot within 30 s")
                time.sleep(0.01)
            latencies.append(time.perf_counter() - t0)
            time.sleep(args.gap)
    Battle.objects.filter(session_key__startswith="bench-").delete()
    print(
        f"vote to published live snapshot ({args.votes} votes, {args.db_votes:,} in the"
        f" database): median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s"
    )
    return {
        "db_votes": args.db_votes,
        "votes": args.votes,
        "publish_p50_s": round(statistics.median(latencies), 3),
        "publish_max_s": round(max(latencies), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--categories", type=int, default=5)
    parser.add_argument("--battles", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--db-votes", type=int, default=50_000)
    parser.add_argument("--votes", type=int, default=10)
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between votes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refit-only", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    if not args.refit_only:
        result |= bench_publish(args)
    import django
    from django.conf import settings

    if not settings.configured:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
    result = bench_refit(args) | result
    print(json.dumps(result))


if __name__ == "__main__":
    main()
