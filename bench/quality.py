"""Benchmark: rigged votes against the published board, with and without voter quality control.

A simulated arena (default 1M honest battles over 100 models from 20,000 judges of varied
accuracy and activity) plus ``--attack-votes`` votes (1,000) from ``--attackers`` accounts (40)
that recognise one mid-ranked model and vote for it whenever it is on the page (``--camouflage``:
each also casts that many ordinary votes). Three boards are
fitted (Bradley-Terry, 200-round bootstrap):
  clean        the honest votes only: the reference rating, its 95% interval and rank
  unprotected  every vote: today's board
  protected    every vote less those of judges `collection.quality.assess_voters` flags
and the target's shift is reported in widths of its clean interval and in ranks (by rating).
The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arena.ratings import Battles, bootstrap_bt, counts_from_battles, fit_bt
from arena.ratings.bt import DEFAULT_PRIOR
from collection.quality import assess_voters
from collection.quality.simulation import simulate


def board(battles: Battles, target: int, rounds: int) -> tuple[float, float, int]:
    """The target's rating, interval width and rank (1 = highest rating)."""
    counts = counts_from_battles(battles)
    fit = fit_bt(counts, prior=DEFAULT_PRIOR)
    width = 0.0
    if rounds:
        intervals = bootstrap_bt(counts, fit, rounds=rounds, seed=0, prior=DEFAULT_PRIOR)
        width = float(intervals.upper[target] - intervals.lower[target])
    rank = int((fit.rating > fit.rating[target]).sum()) + 1
    return float(fit.rating[target]), width, rank


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--battles", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--judges", type=int, default=20_000)
    parser.add_argument("--attack-votes", type=int, default=1_000)
    parser.add_argument("--attackers", type=int, default=40)
    parser.add_argument(
        "--camouflage", type=int, default=0, help="ordinary votes each attacker also casts"
    )
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    sim = simulate(
        battles=args.battles,
        models=args.models,
        voters={
            "honest": args.judges * 8 // 10,
            "careless": args.judges - args.judges * 8 // 10,
        },
        attack_votes=args.attack_votes,
        attackers=args.attackers,
        camouflage=args.camouflage,
        seed=args.seed,
    )
    battles = sim.battles
    assert battles.judge is not None
    attacker = sim.attackers[battles.judge]
    print(f"simulated {len(battles):,} battles in {time.perf_counter() - started:.1f}s")

    clean, width, clean_rank = board(battles.select(~attacker), sim.target, args.rounds)
    rigged, _, rigged_rank = board(battles, sim.target, 0)
    print(
        f"target {battles.models[sim.target]}: clean {clean:.1f} (95% width {width:.1f},"
        f" rank {clean_rank}); unprotected {rigged:.1f} (rank {rigged_rank}),"
        f" shift {(rigged - clean) / width:.2f} widths"
    )

    t = time.perf_counter()
    reports = assess_voters(battles)
    assess_s = time.perf_counter() - t
    flagged = np.array([r.flagged for r in reports])
    held = flagged[battles.judge]
    protected, _, protected_rank = board(battles.select(~held), sim.target, 0)
    shift = (protected - clean) / width
    attackers_flagged = float(flagged[sim.attackers].mean())
    honest_flagged = float(flagged[~sim.attackers].mean()) * 100
    print(
        f"assess_voters: {assess_s:.1f}s; flagged {flagged[sim.attackers].sum()} of"
        f" {args.attackers} attackers, {flagged[~sim.attackers].sum()} of"
        f" {(~sim.attackers).sum()} honest judges ({honest_flagged:.2f}%)"
    )
    print(
        f"protected {protected:.1f} (rank {protected_rank}), shift {shift:.2f} widths,"
        f" held out {int(held.sum()):,} votes"
    )
    print(
        json.dumps(
            {
                "battles": len(battles),
                "models": args.models,
                "attack_votes": args.attack_votes,
                "attackers": args.attackers,
                "shift_ci_widths": round(shift, 3),
                "rank_shift": abs(protected_rank - clean_rank),
                "attackers_flagged": round(attackers_flagged, 3),
                "honest_flagged_pct": round(honest_flagged, 3),
                "baseline_shift_ci_widths": round((rigged - clean) / width, 3),
                "baseline_rank_shift": abs(rigged_rank - clean_rank),
                "assess_seconds": round(assess_s, 2),
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
