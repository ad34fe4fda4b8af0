"""A snapshot as exported: JSON, CSV rows, and its battle log as canonical JSON Lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.utils.crypto import salted_hmac

from arena.leaderboard.selectors import unpack_ids, votes_by_ids
from arena.models import LeaderboardSnapshot
from arena.selectors import battle_log_rows

CSV_FIELDS = [
    "method",
    "category",
    "rank",
    "model",
    "rating",
    "lower",
    "upper",
    "battles",
    "provisional",
    "separated",
]


def battle_export_id(battle_id: Any) -> str:
    """The battle's ID in exports: an HMAC of its UUID under the site's secret key, the same in
    every export (rows of one battle group together) and no key to anything. The UUID itself opens
    the battle's page, answers and image once it has a vote."""
    digest = salted_hmac("ludus.battle-export-id", str(battle_id), algorithm="sha256")
    return digest.hexdigest()[:24]  # 96 bits, and not a UUID's 32 digits


def export_row(row: dict[str, Any]) -> dict[str, Any]:
    """A battle-log row (``battle_log_rows(extra=True)``) as exported: the public fields plus
    battle_id (see battle_export_id), categories and pair_prob (the name the ratings command line
    reads)."""
    out = {k: v for k, v in row.items() if k not in ("pair_probability", "leaked")}
    out["battle_id"] = battle_export_id(row["battle_id"])
    out["pair_prob"] = row["pair_probability"]
    return out


def export_line(row: dict[str, Any]) -> bytes:
    return (
        json.dumps(export_row(row), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        + "\n"
    ).encode()


def snapshot_battle_lines(*, snapshot: LeaderboardSnapshot) -> Iterator[bytes]:
    """The snapshot's battles as JSON Lines (sha256 of the concatenation == vote_hash)."""
    ids = unpack_ids(snapshot.vote_ids)
    if not ids:
        return
    for row in battle_log_rows(votes_by_ids(ids), extra=True):
        yield export_line(row)


def snapshot_csv_rows(*, snapshot: LeaderboardSnapshot) -> Iterator[dict[str, Any]]:
    """One row per model, board and category; provisional rows have no rank."""
    for method, boards in snapshot.data.get("boards", {}).items():
        for category, board in boards.items():
            for row in board.get("models", []):
                yield {"method": method, "category": category or "all", **row}


def snapshot_export(*, snapshot: LeaderboardSnapshot) -> dict[str, Any]:
    return {
        "snapshot": snapshot.id,
        "created_at": snapshot.created_at.isoformat(),
        "refreshed_at": snapshot.refreshed_at.isoformat(),
        "method": snapshot.method,
        "params": snapshot.params,
        "vote_hash": snapshot.vote_hash,
        # A live snapshot: Bradley-Terry refitted on its base snapshot's counts plus the votes
        # since; its other boards are the base's (data["live"]: base, added, last_id).
        "live": snapshot.data.get("live") if snapshot.live else None,
        "votes_counted": snapshot.votes_counted,
        "votes_excluded": snapshot.votes_excluded,
        "categories": snapshot.data.get("categories", []),
        "boards": snapshot.data.get("boards", {}),
        "fairness": snapshot.data.get("fairness", {}),
    }
