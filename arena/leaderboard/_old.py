"""Leaderboards: the counted vote set, snapshots, exports and the fairness report.

Only the beat task fits (``leaderboard_refresh``); pages read the latest snapshot. A snapshot is
reproducible: its battles export (``snapshot_battle_lines``) is the canonical battle-log JSONL of
its counted votes, its ``vote_hash`` is that file's sha256, and ``python -m arena.ratings`` on the
file with the stored parameters (``params["commands"]``) prints the stored boards exactly.

Counted votes: a pairwise verdict on an anonymous battle, cast while both identities were hidden,
with no identity leak and no flag. Every other pairwise vote is excluded and counted per reason.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from arena import sampling
from arena.models import (
    Battle,
    LeaderboardSnapshot,
    Mode,
    SamplingWeights,
    Vote,
)
from arena.ratings import (
    PairCounts,
    battle_count_matrix,
    compute_leaderboard,
    load_battles,
    ratings_over_time,
    winrate_matrix,
)
from arena.selectors import WINNER, battle_log_rows, sampling_candidates
from modelhub.models import Modality, Model
from modelhub.selectors import models_available

# Votes with a pairwise verdict on a two-model battle: the ones a leaderboard could use.
PAIR_VOTES = Q(battle__model_b__isnull=False, choice__in=list(WINNER))
COUNTED = Q(
    battle__mode=Mode.ANONYMOUS,
    anony=True,
    leaked=False,
    battle__leaked=False,
    battle__flagged=False,
)
# Each excluded vote is counted once, under the first reason that applies.
EXCLUSION_REASONS: dict[str, str] = {
    "flagged": "battle flagged for abuse or moderation",
    "leaked": "a model's identity leaked before the vote",
    "not_anonymous": "not a blind vote (side-by-side battle, or cast after the reveal)",
}
_EXCLUSION_FILTERS: dict[str, Q] = {
    "flagged": Q(battle__flagged=True),
    "leaked": Q(battle__flagged=False) & (Q(leaked=True) | Q(battle__leaked=True)),
    "not_anonymous": Q(battle__flagged=False, battle__leaked=False, leaked=False)
    & (Q(anony=False) | ~Q(battle__mode=Mode.ANONYMOUS)),
}

DEFAULT_PARAMS: dict[str, Any] = {
    "method": "bt",
    "rounds": 1000,
    "style_rounds": 100,
    "seed": 0,
    "interval": "bootstrap",
    "ties": "half",
    "bothbad": "tie",
}
OVER_TIME_POINTS = 10
ALL = ""  # the board key of "all categories"


# -- the counted vote set ---------------------------------------------------------------------


def counted_votes() -> QuerySet[Vote]:
    return Vote.objects.filter(PAIR_VOTES & COUNTED)


def vote_exclusions() -> dict[str, int]:
    """Excluded pairwise votes per reason (one aggregate query)."""
    aggregates = {
        f"excluded_{reason}": Count("id", filter=condition)
        for reason, condition in _EXCLUSION_FILTERS.items()
    }
    found = Vote.objects.filter(PAIR_VOTES).aggregate(**aggregates)
    return {reason: found[f"excluded_{reason}"] for reason in _EXCLUSION_FILTERS}


def vote_count_rows() -> list[tuple[str, str, str, tuple[str, ...], int]]:
    """Counted votes aggregated in one SQL pass: (model_a, model_b, winner, categories, count),
    grouped by the battle's models, the verdict and the battle's category list."""
    rows = (
        counted_votes()
        .values_list(
            "battle__model_a__name", "battle__model_b__name", "choice", "battle__categories"
        )
        .annotate(n=Count("id"))
        .order_by()
    )
    return [(a, b, WINNER[choice], tuple(cats or ()), n) for a, b, choice, cats, n in rows]


def pack_ids(ids: Iterable[int]) -> bytes:
    array = np.fromiter(ids, dtype=np.int64)
    return zlib.compress(np.diff(array, prepend=0).astype("<i8").tobytes(), 6)


def unpack_ids(blob: bytes | memoryview) -> list[int]:
    deltas = np.frombuffer(zlib.decompress(bytes(blob)), dtype="<i8")
    return [int(x) for x in np.cumsum(deltas)]


def votes_by_ids(ids: list[int]) -> QuerySet[Vote]:
    # One array parameter instead of an IN list with a placeholder per id.
    return Vote.objects.filter(id__in=RawSQL("SELECT unnest(%s::bigint[])", (ids,)))


def export_row(row: dict[str, Any]) -> dict[str, Any]:
    """A battle-log row (``battle_log_rows(extra=True)``) as exported: the public fields plus
    battle_id, categories and pair_prob (the name the ratings command line reads)."""
    out = {k: v for k, v in row.items() if k not in ("pair_probability", "leaked")}
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


# -- sampling weights -------------------------------------------------------------------------


def sampling_weights_current() -> tuple[dict[str, Any], dict[str, Any]]:
    """(policy, weights) of the text pool now: per model its base weight, its effective weight
    after boosts, and its share of battle appearances under the pair distribution."""
    pool = list(models_available(modality=Modality.TEXT).order_by("name"))
    row, candidates = sampling_candidates(pool, key=lambda m: m.name)
    policy = {
        "new_model_boost": row.new_model_boost,
        "new_model_until_votes": row.new_model_until_votes,
        "target_boost": row.target_boost,
    }
    share: dict[str, float] = defaultdict(float)
    if len(candidates) >= 2:
        for (a, b), p in sampling.pair_distribution(candidates, **policy).items():
            share[a] += p / 2
            share[b] += p / 2
    weights = {
        c.key: {
            "weight": c.weight,
            "effective": sampling.effective_weight(c, **policy),  # type: ignore[arg-type]
            "share": round(share.get(c.key, 0.0), 6),
        }
        for c in candidates
    }
    return policy, weights


def sampling_weights_record() -> SamplingWeights:
    """Store the weights in force if they differ from the last stored row; return the current."""
    policy, weights = sampling_weights_current()
    last = SamplingWeights.objects.order_by("-recorded_at", "-id").first()
    if last is not None and last.policy == policy and last.weights == weights:
        return last
    return SamplingWeights.objects.create(policy=policy, weights=weights)


# -- fits -------------------------------------------------------------------------------------


def _commands(params: dict[str, Any], categories: list[str]) -> dict[str, str]:
    """The command lines that reproduce each board from the snapshot's battles.jsonl."""
    base = "python -m arena.ratings battles.jsonl"
    out = {}
    for category in [ALL, *categories]:
        suffix = f" --category {category}" if category else ""
        out[f"bt:{category}"] = f"{base} --bootstrap {params['rounds']} --seed {params['seed']}"
        out[f"bt:{category}"] += suffix
        out[f"bt_ipw:{category}"] = (
            f"{base} --bootstrap {params['rounds']} --seed {params['seed']} --ipw{suffix}"
        )
        out[f"style:{category}"] = (
            f"{base} --method style --bootstrap {params['style_rounds']} --seed {params['seed']}"
            + suffix
        )
    return out


def _board(source: Any, key: str, **kwargs: Any) -> dict[str, Any]:
    """One board, or the reason it could not be fitted (too few battles, say)."""
    try:
        return compute_leaderboard(source, **kwargs) | {"category": key or None}
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
        return {"error": str(exc), "models": []}


def _fit_boards(
    count_rows: list[tuple[str, str, str, tuple[str, ...], int]],
    lines: list[bytes],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Boards per method and category, matrices' cells per category and ratings over time.

    BT boards come from the SQL counts; inverse-propensity-weighted BT boards (each battle weighted
    by 1/the probability its pair was sampled with, which undoes adaptive sampling), style boards
    and ratings over time need per-battle data, parsed from the export lines exactly as the command
    line parses the file."""
    models = sorted({name for row in count_rows for name in row[:2]})
    categories = sorted({c for row in count_rows for c in row[3]})
    battles = load_battles(b"".join(lines), style=True) if lines else None
    boards: dict[str, dict[str, Any]] = {"bt": {}, "bt_ipw": {}, "style": {}}
    cells: dict[str, list[list[Any]]] = {}
    bt = {
        "method": "bt",
        "rounds": params["rounds"],
        "seed": params["seed"],
        "interval": params["interval"],
        "ties": params["ties"],
        "bothbad": params["bothbad"],
    }
    for category in [ALL, *categories]:
        merged: dict[tuple[str, str, str], int] = defaultdict(int)
        for a, b, winner, cats, n in count_rows:
            if not category or category in cats:
                merged[(a, b, winner)] += n
        rows = [(a, b, w, n) for (a, b, w), n in sorted(merged.items())]
        cells[category] = [list(r) for r in rows]
        # The full model list, as the command line keeps every model of the file in a category.
        boards["bt"][category] = _board(PairCounts.from_rows(rows, models=models), category, **bt)
        if battles is not None:
            boards["bt_ipw"][category] = _board(
                battles, category, **bt, category=category or None, ipw=True
            )
            boards["style"][category] = _board(
                battles,
                category,
                method="style",
                rounds=params["style_rounds"],
                seed=params["seed"],
                bothbad=params["bothbad"],
                category=category or None,
            )
    over_time = ratings_over_time(battles, points=OVER_TIME_POINTS) if battles else []
    return {
        "boards": boards,
        "categories": categories,
        "cells": cells,
        "over_time": over_time,
    }


def _fairness(count_rows: list[tuple[str, str, str, tuple[str, ...], int]]) -> dict[str, Any]:
    """Each model's and organization's share of anonymous battles and counted votes, and every
    model's status (deprecated, outside the arena pool) so none disappears silently."""
    battles: dict[str, int] = defaultdict(int)
    rows = (
        Battle.objects.filter(mode=Mode.ANONYMOUS, model_b__isnull=False)
        .values_list("model_a__name", "model_b__name")
        .annotate(n=Count("id"))
        .order_by()
    )
    total_battles = 0
    for a, b, n in rows:
        battles[a] += n
        battles[b] += n
        total_battles += n
    votes: dict[str, int] = defaultdict(int)
    total_votes = 0
    for a, b, _, _, n in count_rows:
        votes[a] += n
        votes[b] += n
        total_votes += n
    meta: dict[str, dict[str, Any]] = {
        m["name"]: dict(m)
        for m in Model.objects.values(
            "name",
            "display_name",
            "organization",
            "license",
            "deprecated",
            "enabled",
            "arena_eligible",
        )
    }
    models = []
    for name in sorted(set(battles) | set(votes) | set(meta)):
        info: dict[str, Any] = meta.get(name, {})
        models.append(
            {
                "model": name,
                "display_name": info.get("display_name") or name,
                "organization": info.get("organization") or "",
                "license": info.get("license") or "",
                "deprecated": bool(info.get("deprecated")),
                # Not in the public arena pool: disabled or not arena-eligible (private).
                "private": not (info.get("enabled", True) and info.get("arena_eligible", True)),
                "battles": battles.get(name, 0),
                "votes": votes.get(name, 0),
                # Each battle has two models: shares of appearances sum to 1.
                "battle_share": battles.get(name, 0) / (2 * total_battles) if total_battles else 0,
                "vote_share": votes.get(name, 0) / (2 * total_votes) if total_votes else 0,
            }
        )
    orgs: dict[str, dict[str, Any]] = {}
    for m in models:
        org = orgs.setdefault(
            str(m["organization"] or "(none)"),
            {"battles": 0, "votes": 0, "battle_share": 0.0, "vote_share": 0.0, "models": 0},
        )
        org["models"] += 1
        for key in ("battles", "votes", "battle_share", "vote_share"):
            org[key] += m[key]
    return {
        "battles": total_battles,
        "votes": total_votes,
        "models": models,
        "organizations": [{"organization": k, **v} for k, v in sorted(orgs.items())],
    }


@dataclass(frozen=True)
class _VoteSet:
    ids: list[int]
    packed: bytes
    exclusions: dict[str, int]
    count_rows: list[tuple[str, str, str, tuple[str, ...], int]]


def _read_vote_set() -> _VoteSet:
    ids = list(counted_votes().order_by("id").values_list("id", flat=True))
    return _VoteSet(ids, pack_ids(ids), vote_exclusions(), vote_count_rows())


def leaderboard_refresh(**overrides: Any) -> LeaderboardSnapshot:
    """Publish a snapshot of the counted votes (the beat task, every minute).

    All reads run in one REPEATABLE READ transaction, so the counts, the ids and the exported
    battles describe the same vote set. An unchanged vote set (and parameters) only moves the
    latest snapshot's ``refreshed_at``; the sampling weights are recorded when they change.
    """
    params = DEFAULT_PARAMS | overrides
    now = timezone.now()
    sampling_weights_record()
    latest = LeaderboardSnapshot.objects.order_by("-created_at", "-id").first()
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:  # inside a caller's transaction (tests) its isolation level applies
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        vote_set = _read_vote_set()
        unchanged = (
            latest is not None
            and bytes(latest.vote_ids) == vote_set.packed
            and {k: latest.params.get(k) for k in params} == params
        )
        lines = (
            []
            if unchanged or not vote_set.ids
            else list(map(export_line, battle_log_rows(votes_by_ids(vote_set.ids), extra=True)))
        )
        fairness = _fairness(vote_set.count_rows)
    if unchanged:
        assert latest is not None
        LeaderboardSnapshot.objects.filter(id=latest.id).update(refreshed_at=now)
        latest.refreshed_at = now
        return latest
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line)
    data = _fit_boards(vote_set.count_rows, lines, params)
    data["fairness"] = fairness
    params = params | {"commands": _commands(params, data["categories"])}
    return LeaderboardSnapshot.objects.create(
        refreshed_at=now,
        method=params["method"],
        params=params,
        vote_hash=digest.hexdigest(),
        votes_counted=len(vote_set.ids),
        votes_excluded=vote_set.exclusions,
        vote_ids=vote_set.packed,
        data=data,
    )


# -- reads for the page and the exports -------------------------------------------------------


def snapshot_latest() -> LeaderboardSnapshot | None:
    return LeaderboardSnapshot.objects.defer("vote_ids").order_by("-created_at", "-id").first()


def snapshot_get(*, snapshot_id: int) -> LeaderboardSnapshot | None:
    return LeaderboardSnapshot.objects.filter(id=snapshot_id).first()


def sampling_weights_history(*, limit: int = 20) -> list[SamplingWeights]:
    return list(SamplingWeights.objects.order_by("-recorded_at", "-id")[:limit])


def board_matrices(
    cells: list[list[Any]], order: list[str]
) -> tuple[list[list[float | None]], list[list[float | None]]]:
    """(win-rate, battle-count) matrices over ``order`` from a board's count cells."""
    rows = [(a, b, w, n) for a, b, w, n in cells if a in order and b in order]
    counts = PairCounts.from_rows(rows, models=order)

    def plain(matrix: Any) -> list[list[float | None]]:
        return [
            [None if r == c or np.isnan(x) else float(x) for c, x in enumerate(row)]
            for r, row in enumerate(matrix)
        ]

    return plain(winrate_matrix(counts)), plain(battle_count_matrix(counts))


def snapshot_csv_rows(snapshot: LeaderboardSnapshot) -> Iterator[dict[str, Any]]:
    for method, boards in snapshot.data.get("boards", {}).items():
        for category, board in boards.items():
            for row in board.get("models", []):
                yield {"method": method, "category": category or "all", **row}


def snapshot_export(snapshot: LeaderboardSnapshot) -> dict[str, Any]:
    return {
        "snapshot": snapshot.id,
        "created_at": snapshot.created_at.isoformat(),
        "refreshed_at": snapshot.refreshed_at.isoformat(),
        "method": snapshot.method,
        "params": snapshot.params,
        "vote_hash": snapshot.vote_hash,
        "votes_counted": snapshot.votes_counted,
        "votes_excluded": snapshot.votes_excluded,
        "categories": snapshot.data.get("categories", []),
        "boards": snapshot.data.get("boards", {}),
        "fairness": snapshot.data.get("fairness", {}),
    }


@dataclass(frozen=True)
class PageOptions:
    style: bool = False
    ipw: bool = False
    category: str = ALL
    show_deprecated: bool = False


HEATMAP_MODELS = 20
CI_PLOT_MODELS = 40
OVER_TIME_MODELS = 10


def leaderboard_page_data(*, snapshot: LeaderboardSnapshot, options: PageOptions) -> dict[str, Any]:
    """Everything the board partial shows for one method/category, from the snapshot alone:
    rows with model metadata, hidden deprecated models (named, never dropped) and SVG plots."""
    from arena import svg

    data = snapshot.data
    method = "style" if options.style else ("bt_ipw" if options.ipw else "bt")
    category = options.category if options.category in data.get("categories", []) else ALL
    board = data.get("boards", {}).get(method, {}).get(category) or {"models": []}
    meta = {m["model"]: m for m in data.get("fairness", {}).get("models", [])}
    rows, hidden = [], []
    for row in board.get("models", []):
        info = meta.get(row["model"], {})
        entry = {
            **row,
            "display_name": info.get("display_name") or row["model"],
            "organization": info.get("organization", ""),
            "license": info.get("license", ""),
            "deprecated": info.get("deprecated", False),
            "private": info.get("private", False),
            "plus": row["upper"] - row["rating"],
            "minus": row["rating"] - row["lower"],
        }
        if entry["deprecated"] and not options.show_deprecated:
            hidden.append(entry)
        else:
            rows.append(entry)
    label = {r["model"]: r["display_name"] for r in rows}
    plotted = [r["model"] for r in rows[:HEATMAP_MODELS]]
    winrate, battle_counts = board_matrices(data.get("cells", {}).get(category, []), plotted)
    labels = [label[m] for m in plotted]
    plots = {
        "ci": svg.interval_plot(
            [(r["display_name"], r["rating"], r["lower"], r["upper"]) for r in rows][
                :CI_PLOT_MODELS
            ],
            title="Ratings with 95% confidence intervals",
        ),
        "winrate": svg.heatmap(
            labels, winrate, title="Win rate of row model against column model", rate=True
        ),
        "battles": svg.heatmap(labels, battle_counts, title="Counted battles per pair", rate=False),
        "over_time": "",
    }
    if method == "bt" and category == ALL:
        top = [r["model"] for r in rows[:OVER_TIME_MODELS]]
        series: dict[str, list[tuple[float, float]]] = {
            label[m]: [
                (float(p["battles"]), float(p["ratings"][m]))
                for p in data.get("over_time", [])
                if m in p["ratings"]
            ]
            for m in top
        }
        plots["over_time"] = svg.line_chart(
            series, title="Bradley-Terry rating over time", x_label="counted votes so far"
        )
    return {
        "method": method,
        "category": category,
        "board": board,
        "rows": rows,
        "hidden": hidden,
        "plots": plots,
        "style_coefficients": board.get("style_coefficients", {}),
        "command": snapshot.params.get("commands", {}).get(f"{method}:{category}", ""),
    }
