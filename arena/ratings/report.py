"""Leaderboard rows and matrices: the shapes the command line and the web page publish."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .battles import Battles, FloatArray
from .bt import (
    DEFAULT_PRIOR,
    BothBad,
    Intervals,
    Ratings,
    Ties,
    bootstrap_bt,
    check_ties,
    fit_bt,
    rank_ub,
    sandwich_intervals,
)
from .counts import PairCounts, counts_from_battles
from .elo import bootstrap_elo, online_elo
from .style import fit_style

Method = Literal["bt", "elo", "style"]


def leaderboard(
    ratings: Ratings,
    intervals: Intervals,
    battles: FloatArray,
    *,
    min_votes: int = 0,
    separated: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Rows sorted by rating: model, rating, lower, upper, rank (UB), battles, provisional and
    separated (ratings rounded to 4 decimals so that exports compare byte for byte across
    platforms).

    A model with fewer than ``min_votes`` battles is provisional: its rank is None, and it counts
    in no other model's rank. ``separated`` marks models whose rating the data do not bound (see
    ``separated_models``): the prior alone holds them.
    """
    provisional = battles < min_votes
    ranked = np.flatnonzero(~provisional)
    ranks = np.zeros(len(ratings.models), dtype=np.int64)
    ranks[ranked] = rank_ub(intervals.lower[ranked], intervals.upper[ranked])
    flags = np.zeros(len(ratings.models), dtype=bool) if separated is None else separated
    rows = [
        {
            "model": model,
            "rating": round(float(ratings.rating[k]), 4),
            "lower": round(float(intervals.lower[k]), 4),
            "upper": round(float(intervals.upper[k]), 4),
            "rank": None if provisional[k] else int(ranks[k]),
            "battles": int(battles[k]),
            "provisional": bool(provisional[k]),
            "separated": bool(flags[k]),
        }
        for k, model in enumerate(ratings.models)
    ]
    return sorted(rows, key=lambda row: (-row["rating"], row["model"]))


def separated_models(counts: PairCounts, *, bothbad: BothBad = "tie") -> np.ndarray:
    """Models whose rating the data leave unbounded: perfect separation.

    The maximum-likelihood Bradley-Terry fit exists only when the graph "i beat or tied j" is
    strongly connected. A model outside the largest strongly connected component (or every model,
    when no component is the single largest) won, or lost, all its battles against some group:
    without a prior its rating would run off to infinity. Models without battles are not flagged.
    """
    m = len(counts.models)
    tie = counts.n[:, 2] + (counts.n[:, 3] if bothbad != "exclude" else 0.0)
    beats_j = (counts.n[:, 0] + tie) > 0
    beats_i = (counts.n[:, 1] + tie) > 0
    src = np.concatenate([counts.i[beats_j], counts.j[beats_i]])
    dst = np.concatenate([counts.j[beats_j], counts.i[beats_i]])
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(m, m))
    _, label = connected_components(graph, directed=True, connection="strong")
    present = counts.battles > 0
    sizes = np.bincount(label[present], minlength=int(label.max(initial=0)) + 1)
    if len(sizes) == 0:
        return np.zeros(m, dtype=bool)
    largest = np.flatnonzero(sizes == sizes.max())
    inside = label == largest[0] if len(largest) == 1 else np.zeros(m, dtype=bool)
    return present & ~inside


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
    tie = w[:, 2] + (w[:, 3] if bothbad != "exclude" else 0.0)
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
    battles: Battles, *, points: int = 10, ties: Ties = "half", prior: float = DEFAULT_PRIOR
) -> list[dict[str, Any]]:
    """Bradley-Terry refit on the cumulative battles at ``points`` time quantiles."""
    order = battles.time_order()
    out: list[dict[str, Any]] = []
    for end in np.linspace(0, len(order), points + 1).astype(int)[1:]:
        mask = np.zeros(len(battles), dtype=bool)
        mask[order[:end]] = True
        subset = battles.select(mask)
        fit = fit_bt(counts_from_battles(subset), ties=ties, prior=prior)
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
    prior: float = DEFAULT_PRIOR,
    min_votes: int = 0,
    exclude_categories: Sequence[str] = (),
) -> dict[str, Any]:
    """The published JSON object: method, parameters, counts and the sorted model rows.

    ``battles`` may be PairCounts (method "bt" only; ``category`` and ``ipw`` must then already be
    applied by whoever built the counts; so must ``exclude_categories``, the categories whose
    battles are left out, as the arena's tools battles are of its overall board). ``prior`` is the ridge of the fits (``DEFAULT_PRIOR``: a
    weak prior that keeps separated models finite); models with fewer than ``min_votes`` battles
    are provisional (no rank). Elo and style control have no tie model: under ``bothbad
    "davidson"`` they count "both bad" as a tie, and say so in ``bothbad``. Deterministic for a
    given seed.
    """
    check_ties(ties, bothbad)
    if method != "bt" and bothbad == "davidson":
        bothbad = "tie"
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
        "prior": prior,
        "min_votes": min_votes,
    }
    if exclude_categories:
        result["exclude_categories"] = list(exclude_categories)
    if isinstance(battles, PairCounts):
        if method != "bt" or category is not None or ipw:
            raise ValueError("counts only support method 'bt' without category or ipw")
        counts = battles
        result["skipped"] = 0
    else:
        result["skipped"] = battles.skipped
        battles = battles.in_category(category).outside(exclude_categories)
        counts = counts_from_battles(battles, ipw=ipw)
    result["battles"] = round(counts.total)
    present = counts.battles > 0
    if not present.any():  # an empty log (a new arena, an empty category): an empty board
        result["separated"] = 0
        result["models"] = []
        return result
    if method == "bt":
        fit = fit_bt(counts, ties=ties, bothbad=bothbad, anchor=anchor, prior=prior)
        if interval == "sandwich":
            intervals = sandwich_intervals(counts, fit, ties=ties, bothbad=bothbad, anchor=anchor)
        else:
            intervals = bootstrap_bt(
                counts,
                fit,
                rounds=rounds,
                seed=seed,
                ties=ties,
                bothbad=bothbad,
                anchor=anchor,
                prior=prior,
            )
        if fit.tie_param is not None:
            result["davidson_log_nu"] = round(fit.tie_param, 6)
        if fit.bothbad_param is not None:
            result["davidson_log_nu_bothbad"] = round(fit.bothbad_param, 6)
    elif method == "elo":
        assert isinstance(battles, Battles)
        fit = online_elo(battles, bothbad=bothbad)
        intervals = bootstrap_elo(battles, rounds=rounds, seed=seed, bothbad=bothbad)
    else:
        assert isinstance(battles, Battles)
        style = fit_style(
            battles, rounds=rounds, seed=seed, anchor=anchor, bothbad=bothbad, ipw=ipw, prior=prior
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
    separated = separated_models(counts, bothbad=bothbad)
    result["separated"] = int(separated[present].sum())
    rows = leaderboard(fit, intervals, counts.battles, min_votes=min_votes, separated=separated)
    result["models"] = [row for row in rows if present[fit.models.index(row["model"])]]
    return result
