"""Command line: ``python -m arena.ratings BATTLES [options]`` prints or writes a leaderboard."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .battles import BattleLogError, Battles, load_battles
from .bt import DEFAULT_PRIOR
from .counts import reliability_weight
from .report import compute_leaderboard


def _anchor(text: str) -> tuple[str, float]:
    model, sep, rating = text.rpartition("=")
    if not sep or not model:
        raise argparse.ArgumentTypeError("expected MODEL=RATING")
    try:
        return model, float(rating)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rating must be a number, got {rating!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m arena.ratings", description=__doc__)
    p.add_argument("battles", help="battle log: JSON array or JSON Lines")
    p.add_argument("--bootstrap", type=int, default=None, help="rounds (1000; 100 for style)")
    p.add_argument("--method", choices=["bt", "elo", "style"], default="bt")
    p.add_argument("--category")
    p.add_argument(
        "--exclude-category",
        action="append",
        default=[],
        metavar="CATEGORY",
        help="leave out the battles of this category (repeatable)",
    )
    p.add_argument("--format", choices=["json", "csv"], default="json")
    p.add_argument("--output", help="file to write (default: stdout)")
    p.add_argument("--anchor", type=_anchor, help="MODEL=RATING instead of centring on 1000")
    p.add_argument("--ties", choices=["half", "davidson"], default="half")
    p.add_argument(
        "--bothbad",
        choices=["tie", "exclude", "davidson"],
        default="tie",
        help="'both bad' as a tie, left out, or a tie kind with its own Davidson parameter"
        " (needs --ties davidson; Elo and style control count it as a tie)",
    )
    p.add_argument(
        "--prior",
        type=float,
        default=DEFAULT_PRIOR,
        help=f"ridge on log-strengths, a Gaussian prior N(0, 1/PRIOR) (default {DEFAULT_PRIOR:g}:"
        " about two virtual ties against an average model; 0 for the maximum-likelihood fit)",
    )
    p.add_argument(
        "--min-votes",
        type=int,
        default=0,
        help="models with fewer battles are provisional: listed without a rank",
    )
    p.add_argument("--interval", choices=["bootstrap", "sandwich"], default="bootstrap")
    p.add_argument("--ipw", action="store_true", help="weight battles by 1/pair_prob")
    p.add_argument("--skip-bad", action="store_true", help="skip and count malformed rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--voters",
        help="voter report of `python -m collection.quality voters`: votes of flagged judges are"
        " held out (reads the log's judge field)",
    )
    p.add_argument(
        "--voter-weights",
        action="store_true",
        help="with --voters, also weight each vote by its judge's reliability: 2 * reliability - 1"
        " (1 for a perfect judge, 0 for a coin); judges the report lacks weigh 1",
    )
    return p


def apply_voters(battles: Battles, report: object, *, weights: bool) -> Battles:
    """Battles without the votes of judges the report flags; with ``weights``, each remaining
    vote's weight multiplied by ``2 * reliability - 1`` of its judge (clipped to [0, 1])."""
    voters = report.get("voters") if isinstance(report, dict) else None
    if not isinstance(voters, list) or not all(
        isinstance(v, dict) and isinstance(v.get("judge"), str) for v in voters
    ):
        raise ValueError("a voter report holds {'voters': [{'judge', ...}, ...]}")
    assert battles.judge is not None
    index = {name: k for k, name in enumerate(battles.judges)}
    held = np.zeros(len(battles.judges) + 1, dtype=bool)  # the last slot: rows without a judge
    factor = np.ones(len(battles.judges) + 1)
    for voter in voters:
        k = index.get(voter["judge"])
        if k is None:
            continue
        held[k] = bool(voter.get("flagged"))
        reliability = voter.get("reliability")
        if weights and isinstance(reliability, int | float):
            factor[k] = reliability_weight(float(reliability))
    kept = battles.select(~held[battles.judge])
    if not weights:
        return kept
    assert kept.judge is not None
    base = np.ones(len(kept)) if kept.weight is None else kept.weight
    return replace(kept, weight=base * factor[kept.judge])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rounds = (
        args.bootstrap if args.bootstrap is not None else (100 if args.method == "style" else 1000)
    )
    held_out = 0
    try:
        if args.voter_weights and not args.voters:
            raise ValueError("--voter-weights needs --voters")
        battles = load_battles(
            args.battles,
            skip_bad=args.skip_bad,
            style=args.method == "style",
            judges=bool(args.voters),
        )
        if args.voters:
            with open(args.voters, encoding="utf-8") as handle:
                report = json.load(handle)
            kept = apply_voters(battles, report, weights=args.voter_weights)
            held_out, battles = len(battles) - len(kept), kept
        result = compute_leaderboard(
            battles,
            method=args.method,
            rounds=rounds,
            seed=args.seed,
            interval=args.interval,
            anchor=args.anchor,
            ties=args.ties,
            bothbad=args.bothbad,
            category=args.category,
            exclude_categories=args.exclude_category,
            ipw=args.ipw,
            prior=args.prior,
            min_votes=args.min_votes,
        )
    except (BattleLogError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.voters:
        result["voters"] = {"held_out": held_out, "weighted": args.voter_weights}
    if args.format == "json":
        text = json.dumps(result, indent=2) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer,
            ["rank", "model", "rating", "lower", "upper", "battles", "provisional", "separated"],
            lineterminator="\n",
        )
        writer.writeheader()
        for row in result["models"]:
            writer.writerow(row)
        text = buffer.getvalue()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0
