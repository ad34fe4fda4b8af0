"""Arena ratings: Bradley-Terry, Elo and style control from battle logs. No Django imports.

Typical use::

    battles = load_battles("battles.jsonl")
    counts = counts_from_battles(battles)          # or PairCounts.from_rows(sql_rows)
    fit = fit_bt(counts)
    intervals = bootstrap_bt(counts, fit, rounds=1000, seed=0)
    rows = leaderboard(fit, intervals, counts.battles)
"""

from .battles import STYLE_FEATURES, BattleLogError, Battles, load_battles, style_features
from .bt import DEFAULT_PRIOR, Intervals, Ratings, bootstrap_bt, fit_bt, rank_ub, sandwich_intervals
from .counts import PairCounts, battle_weights, counts_from_battles
from .elo import bootstrap_elo, elo_trajectory, online_elo
from .report import (
    battle_count_matrix,
    compute_leaderboard,
    leaderboard,
    predicted_winrate_matrix,
    ratings_over_time,
    separated_models,
    winrate_matrix,
)
from .style import StyleFit, fit_style

__all__ = [
    "DEFAULT_PRIOR",
    "STYLE_FEATURES",
    "BattleLogError",
    "Battles",
    "Intervals",
    "PairCounts",
    "Ratings",
    "StyleFit",
    "battle_count_matrix",
    "battle_weights",
    "bootstrap_bt",
    "bootstrap_elo",
    "compute_leaderboard",
    "counts_from_battles",
    "elo_trajectory",
    "fit_bt",
    "fit_style",
    "leaderboard",
    "load_battles",
    "online_elo",
    "predicted_winrate_matrix",
    "rank_ub",
    "ratings_over_time",
    "sandwich_intervals",
    "separated_models",
    "style_features",
    "winrate_matrix",
]
