"""What the leaderboard page shows for one method and category, read from a snapshot alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from arena import svg
from arena.leaderboard.boards import ALL
from arena.ratings import PairCounts, battle_count_matrix, winrate_matrix

HEATMAP_MODELS = 20
CI_PLOT_MODELS = 40
OVER_TIME_MODELS = 10
BOTHBAD_LABELS = {
    "tie": "counted as a tie",
    "exclude": "left out of the fit",
    "davidson": "a tie kind of its own (Davidson's model, its own tie parameter)",
}
METHOD_TITLES = {
    "bt": "Ratings",
    "bt_ipw": "Sampling-adjusted ratings (IPW)",
    "elo": "Online Elo ratings",
    "style": "Style-controlled ratings",
}


@dataclass(frozen=True)
class PageOptions:
    style: bool = False
    ipw: bool = False
    elo: bool = False
    category: str = ALL
    show_deprecated: bool = False

    @property
    def method(self) -> str:
        if self.elo:
            return "elo"
        if self.style:
            return "style"
        return "bt_ipw" if self.ipw else "bt"


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


def _plots(
    data: dict[str, Any], method: str, category: str, ranked: list[dict[str, Any]], everyone: list
) -> dict[str, str]:
    """Intervals and ratings over time of the ranked models only (a provisional rating is too
    uncertain to draw as a point); the observed win rates and counts of every shown model."""
    label = {r["model"]: r["display_name"] for r in everyone}
    plotted = [r["model"] for r in everyone[:HEATMAP_MODELS]]
    winrate, battle_counts = board_matrices(data.get("cells", {}).get(category, []), plotted)
    labels = [label[m] for m in plotted]
    plots = {
        "ci": svg.interval_plot(
            [(r["display_name"], r["rating"], r["lower"], r["upper"]) for r in ranked][
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
    if method == "bt" and category == ALL and ranked:
        series: dict[str, list[tuple[float, float]]] = {
            label[m]: [
                (float(p["battles"]), float(p["ratings"][m]))
                for p in data.get("over_time", [])
                if m in p["ratings"]
            ]
            for m in [r["model"] for r in ranked[:OVER_TIME_MODELS]]
        }
        plots["over_time"] = svg.line_chart(
            series, title="Bradley-Terry rating over time", x_label="counted votes so far"
        )
    return plots


def leaderboard_page_data(*, snapshot: Any, options: PageOptions) -> dict[str, Any]:
    """Everything the board partial shows for one method/category, from the snapshot alone:
    ranked rows, provisional rows (fewer counted votes than the threshold: no rank), hidden
    deprecated models (named, never dropped), how "both bad" counts, and SVG plots."""
    data = snapshot.data
    method = options.method
    category = options.category if options.category in data.get("categories", []) else ALL
    elo_all_only = method == "elo" and category != ALL
    if elo_all_only:  # online Elo is published for all categories together (see boards.py)
        category = ALL
    board = data.get("boards", {}).get(method, {}).get(category) or {"models": []}
    meta = {m["model"]: m for m in data.get("fairness", {}).get("models", [])}
    ranked, provisional, hidden = [], [], []
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
        elif row.get("provisional"):
            provisional.append(entry)
        else:
            ranked.append(entry)
    params = snapshot.params
    return {
        "method": method,
        "method_title": METHOD_TITLES[method],
        "elo_all_only": elo_all_only,
        "category": category,
        "board": board,
        "rows": ranked,
        "provisional": provisional,
        "hidden": hidden,
        "min_votes": params.get("min_votes", 0),
        "bothbad": params.get("bothbad", "tie"),
        "bothbad_label": BOTHBAD_LABELS.get(params.get("bothbad", "tie"), ""),
        "plots": _plots(data, method, category, ranked, ranked + provisional),
        "style_coefficients": board.get("style_coefficients", {}),
        "command": params.get("commands", {}).get(f"{method}:{category}", ""),
    }
