"""Leaderboard rows and matrices: the shapes the command line and the web page publish."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .battles import Battles, FloatArray
from .bt import BothBad, Intervals, Ratings, Ties, bootstrap_bt, fit_bt, rank_ub, sandwich_intervals
from .counts import PairCounts, counts_from_battles
from .elo import bootstrap_elo, online_elo
from .style import fit_style

Method = Literal["bt", "elo", "style"]


def leaderboard(
    ratings: Ratings, intervals: Intervals, battles: FloatArray
) -> list[dict[str, Any]]:
    """Rows sorted by rating: model, rating, lower, upper, rank (UB), battles (ratings rounded to 4
    decimals so that exports compare byte for byte across platforms)."""
    ranks = rank_ub(intervals.lower, intervals.upper)
    rows = [
        {
            "model": model,
            "rating": round(float(ratings.rating[k]), 4),
            "lower": round(float(intervals.lower[k]), 4),
            "upper": round(float(intervals.upper[k]), 4),
            "rank": int(ranks[k]),
            "battles": int(battles[k]),
        }
        for k, model in enumerate(ratings.models)
    ]
    return sorted(rows, key=lambda row: (-row["rating"], row["model"]))


def battle_count_matrix(counts: PairCounts) -> FloatArray:
    """Symmetric (models x models) matrix of battles between each pair (raw counts)."""
    m = len(counts.models)
    total = counts.n.sum(axis=1)
    out = np.zeros((m, m))
    out[counts.i, counts.j] = total
    out[counts.j, counts.i] = total
    return out


def winrate_matrix(counts: PairCounts, *, bothbad: BothBad = "tie") -> FloatArray:
    """Observed share of points of row model against column model (ties half; NaN: never met)."""
    m = len(counts.models)
    w = counts.w
    tie = w[:, 2] + (w[:, 3] if bothbad == "tie" else 0.0)
    total = w[:, 0] + w[:, 1] + tie
    share = np.divide(w[:, 0] + tie / 2, total, out=np.full(len(total), np.nan), where=total > 0)
    out = np.full((m, m), np.nan)
    out[counts.i, counts.j] = share
    out[counts.j, counts.i] = 1.0 - share
    return out


def predicted_winrate_matrix(ratings: Ratings) -> FloatArray:
    """P(row beats column) implied by the ratings: 1 / (1 + 10^((R_col - R_row) / 400))."""
    r = ratings.rating
    out = 1.0 / (1.0 + 10.0 ** ((r[None, :] - r[:, None]) / 400.0))
    np.fill_diagonal(out, np.nan)
    return out


def ratings_over_time(
    battles: Battles, *, points: int = 10, ties: Ties = "half"
) -> list[dict[str, Any]]:
    """Bradley-Terry refit on the cumulative battles at ``points`` time quantiles."""
    order = battles.time_order()
    out: list[dict[str, Any]] = []
    for end in np.linspace(0, len(order), points + 1).astype(int)[1:]:
        mask = np.zeros(len(battles), dtype=bool)
        mask[order[:end]] = True
        subset = battles.select(mask)
        fit = fit_bt(counts_from_battles(subset), ties=ties)
        seen = counts_from_battles(subset).battles > 0
        stamp = battles.tstamp[order[end - 1]] if battles.tstamp is not None else float(end)
        out.append(
            {
                "until": float(stamp),
                "battles": int(end),
                "ratings": {
                    m: round(float(r), 4)
                    for m, r, s in zip(fit.models, fit.rating, seen, strict=True)
                    if s
                },
            }
        )
    return out


def compute_leaderboard(
    battles: Battles | PairCounts,
    *,
    method: Method = "bt",
    rounds: int = 1000,
    seed: int = 0,
    interval: Literal["bootstrap", "sandwich"] = "bootstrap",
    anchor: tuple[str, float] | None = None,
    ties: Ties = "half",
    bothbad: BothBad = "tie",
    category: str | None = None,
    ipw: bool = False,
) -> dict[str, Any]:
    """The published JSON object: method, parameters, counts and the sorted model rows.

    ``battles`` may be PairCounts (method "bt" only; ``category`` and ``ipw`` must then already be
    applied by whoever built the counts). Deterministic for a given seed.
    """
    result: dict[str, Any] = {
        "method": method,
        "bootstrap": rounds if interval == "bootstrap" else 0,
        "interval": interval,
        "seed": seed,
        "ties": ties,
        "bothbad": bothbad,
        "category": category,
        "ipw": ipw,
        "anchor": None if anchor is None else {"model": anchor[0], "rating": anchor[1]},
    }
    if isinstance(battles, PairCounts):
        if method != "bt" or category is not None or ipw:
            raise ValueError("counts only support method 'bt' without category or ipw")
        counts = battles
        result["skipped"] = 0
    else:
        result["skipped"] = battles.skipped
        battles = battles.in_category(category)
        counts = counts_from_battles(battles, ipw=ipw)
    result["battles"] = round(counts.total)
    present = counts.battles > 0
    if method == "bt":
        fit = fit_bt(counts, ties=ties, bothbad=bothbad, anchor=anchor)
        if interval == "sandwich":
            intervals = sandwich_intervals(counts, fit, ties=ties, bothbad=bothbad, anchor=anchor)
        else:
            intervals = bootstrap_bt(
                counts, fit, rounds=rounds, seed=seed, ties=ties, bothbad=bothbad, anchor=anchor
            )
        if fit.tie_param is not None:
            result["davidson_log_nu"] = round(fit.tie_param, 6)
    elif method == "elo":
        assert isinstance(battles, Battles)
        fit = online_elo(battles, bothbad=bothbad)
        intervals = bootstrap_elo(battles, rounds=rounds, seed=seed, bothbad=bothbad)
    else:
        assert isinstance(battles, Battles)
        style = fit_style(
            battles, rounds=rounds, seed=seed, anchor=anchor, bothbad=bothbad, ipw=ipw
        )
        fit, intervals = style.ratings, style.intervals
        result["battles_used"] = style.battles_used
        result["style_coefficients"] = {
            k: {
                "coef": round(v, 6),
                "lower": round(style.coefficient_lower[k], 6),
                "upper": round(style.coefficient_upper[k], 6),
            }
            for k, v in style.coefficients.items()
        }
    rows = leaderboard(fit, intervals, counts.battles)
    result["models"] = [row for row in rows if present[fit.models.index(row["model"])]]
    return result
