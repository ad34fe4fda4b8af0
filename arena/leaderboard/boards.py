"""The boards of one snapshot, fitted from its count rows and battle lines (no database).

BT boards come from the SQL counts; inverse-propensity-weighted BT boards (each battle weighted by
1/the probability its pair was sampled with, which undoes adaptive sampling), online Elo, style
boards and ratings over time need per-battle data, parsed from the export lines exactly as the
command line parses the file. ``commands`` names the command line that reproduces each board."""

from __future__ import annotations

import contextlib
import gc
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np

from arena.categories import OWN_BOARD_ONLY, on_board
from arena.leaderboard.selectors import CountRow
from arena.ratings import PairCounts, compute_leaderboard, load_battles, ratings_over_time
from arena.ratings.battles import WINNER_CODES, WINNER_NAMES

OVER_TIME_POINTS = 10
ALL = ""  # the board key of "all categories"
METHODS = ("bt", "bt_ipw", "elo", "style")


def commands(params: dict[str, Any], categories: list[str]) -> dict[str, str]:
    """The command lines that reproduce each board from the snapshot's battles.jsonl."""
    base = "python -m arena.ratings battles.jsonl"
    shared = (
        f" --seed {params['seed']} --ties {params['ties']} --bothbad {params['bothbad']}"
        f" --prior {params['prior']:g} --min-votes {params['min_votes']}"
    )
    out = {}
    overall = "".join(f" --exclude-category {c}" for c in OWN_BOARD_ONLY)
    for category in [ALL, *categories]:
        suffix = shared + (f" --category {category}" if category else overall)
        out[f"bt:{category}"] = f"{base} --bootstrap {params['rounds']}{suffix}"
        out[f"bt_ipw:{category}"] = f"{base} --bootstrap {params['rounds']}{suffix} --ipw"
        if category == ALL:
            out["elo:"] = f"{base} --method elo --bootstrap {params['elo_rounds']}{suffix}"
        out[f"style:{category}"] = (
            f"{base} --method style --bootstrap {params['style_rounds']}{suffix}"
        )
    return out


def _board(source: Any, key: str, **kwargs: Any) -> dict[str, Any]:
    """One board, or the reason it could not be fitted (too few battles, say)."""
    try:
        return compute_leaderboard(source, **kwargs) | {"category": key or None}
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
        return {"error": str(exc), "models": []}


def boards_fit(
    count_rows: list[CountRow], lines: list[bytes], params: dict[str, Any]
) -> dict[str, Any]:
    """Boards per method and category, matrices' cells per category and ratings over time."""
    models = sorted({name for row in count_rows for name in row[:2]})
    categories = sorted({c for row in count_rows for c in row[3]})
    battles = load_battles(b"".join(lines), style=True) if lines else None
    boards: dict[str, dict[str, Any]] = {method: {} for method in METHODS}
    cells: dict[str, list[list[Any]]] = {}
    shared = {
        "seed": params["seed"],
        "ties": params["ties"],
        "bothbad": params["bothbad"],
        "prior": params["prior"],
        "min_votes": params["min_votes"],
    }
    bt = shared | {"method": "bt", "rounds": params["rounds"], "interval": params["interval"]}
    for category in [ALL, *categories]:
        merged: dict[tuple[str, str, str], int] = defaultdict(int)
        for a, b, winner, cats, n in count_rows:
            if on_board(category, cats):
                merged[(a, b, winner)] += n
        rows = [(a, b, w, n) for (a, b, w), n in sorted(merged.items())]
        cells[category] = [list(r) for r in rows]
        # The full model list, as the command line keeps every model of the file in a category.
        # The overall board leaves out the categories ranked on their own board only.
        apart = {} if category else {"exclude_categories": OWN_BOARD_ONLY}
        counts = PairCounts.from_rows(rows, models=models)
        boards["bt"][category] = _board(counts, category, **bt, **apart)
        if battles is None:
            continue
        in_category = category or None
        bt_apart = bt | apart
        boards["bt_ipw"][category] = _board(
            battles, category, **bt_apart, category=in_category, ipw=True
        )
        if category == ALL:
            # Online Elo's bootstrap replays every vote per round in Python (about 0.5 s per
            # round per million votes): published for all categories together only.
            boards["elo"][category] = _board(
                battles, category, **shared, **apart, method="elo", rounds=params["elo_rounds"]
            )
        boards["style"][category] = _board(
            battles,
            category,
            **shared,
            **apart,
            method="style",
            rounds=params["style_rounds"],
            category=in_category,
        )
    overall = battles.outside(OWN_BOARD_ONLY) if battles else None
    over_time = (
        ratings_over_time(overall, points=OVER_TIME_POINTS, prior=params["prior"])
        if overall
        else []
    )
    return {"boards": boards, "categories": categories, "cells": cells, "over_time": over_time}


def live_params(params: dict[str, Any]) -> dict[str, Any]:
    """A live snapshot's parameters: the full snapshot's, with sandwich intervals for its
    Bradley-Terry boards (a bootstrap would not fit in the live refit's budget)."""
    return params | {"live_interval": "sandwich"}


def live_commands(params: dict[str, Any], categories: list[str]) -> dict[str, str]:
    """The live snapshot's command lines: its Bradley-Terry boards with ``--interval sandwich``;
    the other boards are its base snapshot's, reproduced from that snapshot's battles."""
    out = commands(params, categories)
    for category in [ALL, *categories]:
        out[f"bt:{category}"] = out[f"bt:{category}"].replace(
            f"--bootstrap {params['rounds']}", "--interval sandwich"
        )
    return out


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    # The cells are tens of thousands of small lists that all survive: the cyclic collector
    # would rescan them (and the base snapshot's) over and over without freeing anything
    # (measured: three times the whole refit).
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def live_boards_fit(
    base: dict[str, Any], added: list[CountRow], params: dict[str, Any]
) -> dict[str, Any]:
    with _no_gc():
        return _live_boards_fit(base, added, params)


def _live_boards_fit(
    base: dict[str, Any], added: list[CountRow], params: dict[str, Any]
) -> dict[str, Any]:
    """A live snapshot's data: the base snapshot's count cells plus the counted votes added since
    (``added``), refitted as Bradley-Terry with sandwich intervals per category; every other board,
    the ratings over time and the fairness report are the base's (they need per-battle data).

    Cells are merged as arrays (a key per model pair and outcome, summed with bincount): the fit
    itself takes a few tens of milliseconds at 100 models, and parsing rows one by one in Python
    would cost several times that per board."""
    categories = sorted(set(base.get("categories", [])) | {c for row in added for c in row[3]})
    base_cells: dict[str, list[list[Any]]] = base.get("cells", {})
    models = sorted(
        {str(row[k]) for row in base_cells.get(ALL, []) for k in (0, 1)}
        | {name for row in added for name in row[:2]}
    )
    m = len(models)
    index = {name: k for k, name in enumerate(models)}
    names, winners = np.array(models, dtype=object), np.array(WINNER_NAMES, dtype=object)

    def keys(rows: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        key = np.fromiter(
            ((index[r[0]] * m + index[r[1]]) * 4 + WINNER_CODES[r[2]] for r in rows),
            np.int64,
            len(rows),
        )
        return key, np.fromiter((r[-1] for r in rows), np.float64, len(rows))

    bt = {
        "method": "bt",
        "interval": "sandwich",
        "seed": params["seed"],
        "ties": params["ties"],
        "bothbad": params["bothbad"],
        "prior": params["prior"],
        "min_votes": params["min_votes"],
    }
    cells: dict[str, list[list[Any]]] = {}
    bt_boards: dict[str, dict[str, Any]] = {}
    for category in [ALL, *categories]:
        base_key, base_n = keys(base_cells.get(category, []))
        new_key, new_n = keys([r for r in added if on_board(category, r[3])])
        table = np.bincount(
            np.concatenate([base_key, new_key]), np.concatenate([base_n, new_n]), m * m * 4
        )
        present = np.flatnonzero(table)  # sorted by (model_a, model_b, outcome): as the full fit
        pair, outcome = np.divmod(present, 4)
        a, b = np.divmod(pair, m)
        n = table[present].astype(np.float64)
        cells[category] = list(
            map(
                list,
                zip(
                    names[a].tolist(),
                    names[b].tolist(),
                    winners[outcome].tolist(),
                    n.astype(np.int64).tolist(),
                    strict=True,
                ),
            )
        )
        counts = PairCounts.from_codes(models, a, b, outcome.astype(np.int8), n)
        bt_boards[category] = _board(counts, category, **bt)
    boards = {method: dict(base.get("boards", {}).get(method, {})) for method in METHODS}
    boards["bt"] = bt_boards
    return {**base, "boards": boards, "categories": categories, "cells": cells}
