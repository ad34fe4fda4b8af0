"""Command line: ``python -m collection.quality voters BATTLES.jsonl [--gold GOLD.jsonl]`` and
``python -m collection.quality labels LABELS.jsonl [--gold GOLD.jsonl]``.

``voters`` reads the public battle log (a ``judge`` per row) and writes
``{"voters": [{"judge", "votes", "reliability", "flagged", "reasons"}]}``; pass that file to
``python -m arena.ratings BATTLES --voters F`` to hold flagged judges out of the board. Gold rows
are ``{"judge", "winner", "gold"}``: the judge's answer on a honeypot battle and the right one.

``labels`` reads rows ``{"item", "judge", "label"}`` (optionally ``"set"``: the item set whose
agreement is reported) and writes Dawid-Skene reliabilities, each item's consensus label and
Krippendorff's alpha per item set. Gold rows are ``{"item", "label"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from arena.ratings.battles import BattleLogError, load_battles
from collection.jsonl import LineError, json_objects

from .labels import dawid_skene, krippendorff_alpha
from .votes import ALPHA, GoldAnswers, assess_voters


def _rows(path: str) -> list[dict[str, Any]]:
    with open(path, "rb") as handle:
        try:
            return [row for _number, row in json_objects(handle)]
        except LineError as exc:
            raise ValueError(f"{path} {exc}") from None


def _voters(args: argparse.Namespace) -> dict[str, Any]:
    with open(args.battles, "rb") as handle:
        data = handle.read()
    # Answer lengths (for the too-fast test) come with the conversations; without them the
    # per-row style pass is skipped.
    style = b'"conv_metadata"' in data or b'"conversation_a"' in data
    battles = load_battles(data, skip_bad=args.skip_bad, style=style, judges=True)
    del data
    gold = GoldAnswers.from_rows(_rows(args.gold)) if args.gold else None
    reports = assess_voters(battles, gold, alpha=args.alpha)
    return {"voters": [r.as_dict() for r in reports]}


def _labels(args: argparse.Namespace) -> dict[str, Any]:
    rows = _rows(args.labels)
    for number, row in enumerate(rows, 1):
        if not all(k in row for k in ("item", "judge", "label")):
            raise ValueError(f"{args.labels} line {number}: item, judge and label are required")
    items = [str(r["item"]) for r in rows]
    judges = [str(r["judge"]) for r in rows]
    labels = [r["label"] for r in rows]
    gold = {str(r["item"]): r["label"] for r in _rows(args.gold)} if args.gold else None
    fit = dawid_skene(items, judges, labels, gold=gold)
    sets: dict[str, tuple[list[str], list[Any]]] = {}
    for row, item, label in zip(rows, items, labels, strict=True):
        group = sets.setdefault(str(row.get("set", "all")), ([], []))
        group[0].append(item)
        group[1].append(label)
    agreement = []
    for name, (set_items, set_labels) in sorted(sets.items()):
        alpha = krippendorff_alpha(set_items, set_labels, level=args.level)
        agreement.append(
            {
                "set": name,
                "items": len(set(set_items)),
                "alpha": None if alpha != alpha else round(alpha, 4),
            }
        )
    best = fit.posterior.argmax(axis=1)
    return {
        "contributors": [
            {"judge": str(name), "labels": int(n), "reliability": round(float(r), 4)}
            for name, n, r in zip(fit.contributors, fit.counts, fit.reliability, strict=True)
        ],
        "items": [
            {
                "item": str(name),
                "label": fit.labels[int(k)],
                "confidence": round(float(fit.posterior[i, k]), 4),
            }
            for i, (name, k) in enumerate(zip(fit.items, best, strict=True))
        ],
        "agreement": agreement,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m collection.quality", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    voters = sub.add_parser("voters", help="reliability and anomaly flags per judge")
    voters.add_argument("battles", help="battle log: JSON array or JSON Lines, with judge")
    voters.add_argument("--alpha", type=float, default=ALPHA, help="false-flag rate per test")
    voters.add_argument("--skip-bad", action="store_true", help="skip malformed rows")
    labels = sub.add_parser("labels", help="Dawid-Skene reliabilities and Krippendorff's alpha")
    labels.add_argument("labels", help="JSON Lines of {item, judge, label[, set]}")
    labels.add_argument("--level", choices=["nominal", "ordinal", "interval"], default="nominal")
    for command in (voters, labels):
        command.add_argument("--gold", help="JSON Lines of gold answers")
        command.add_argument("--format", choices=["json"], default="json")
        command.add_argument("--output", help="file to write (default: stdout)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = _voters(args) if args.command == "voters" else _labels(args)
    except (BattleLogError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=1) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0
