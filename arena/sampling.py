"""Pair sampling for anonymous battles. Pure: no Django imports.

Each candidate has a weight; a pair's weight is the product of its two weights. The drawn pair's
probability (over unordered pairs) is returned so ratings can weight by inverse propensity.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import combinations


class NotEnoughModels(Exception):
    """Fewer than two models can battle right now."""


@dataclass(frozen=True)
class Candidate:
    key: str
    weight: float = 1.0
    votes: int = 0
    battles: int = 0
    target_battles: int | None = None


def effective_weight(
    candidate: Candidate,
    *,
    new_model_boost: float = 1.0,
    new_model_until_votes: int = 0,
    target_boost: float = 1.0,
) -> float:
    weight = candidate.weight if candidate.weight > 0 else 0.0
    if weight != weight or weight == float("inf"):  # NaN or infinite weights count as zero
        return 0.0
    if candidate.votes < new_model_until_votes:
        weight *= max(new_model_boost, 1.0)
    if candidate.target_battles is not None and candidate.battles < candidate.target_battles:
        weight *= max(target_boost, 1.0)
    return weight


def pair_distribution(candidates: list[Candidate], **policy: float) -> dict[tuple[str, str], float]:
    """Probability of each unordered pair (keys sorted within the pair). Models with zero weight
    are left out; when fewer than two have a positive weight, every pair is equally likely."""
    unique = {c.key: c for c in candidates}
    if len(unique) < 2:
        raise NotEnoughModels("fewer than two models are available")
    weights = {key: effective_weight(c, **policy) for key, c in unique.items()}  # type: ignore[arg-type]
    positive = sorted(key for key, w in weights.items() if w > 0)
    if len(positive) < 2:
        positive = sorted(unique)
        weights = dict.fromkeys(positive, 1.0)
    pairs = {(a, b): weights[a] * weights[b] for a, b in combinations(positive, 2)}
    total = sum(pairs.values())
    if total <= 0:
        return {pair: 1.0 / len(pairs) for pair in pairs}
    return {pair: w / total for pair, w in pairs.items()}


def sample_pair(
    candidates: list[Candidate], *, rng: random.Random | None = None, **policy: float
) -> tuple[str, str, float]:
    """Draw (left, right, probability of the unordered pair); sides are shuffled uniformly."""
    rng = rng or random.SystemRandom()
    distribution = pair_distribution(candidates, **policy)
    pairs = list(distribution)
    (a, b) = rng.choices(pairs, weights=[distribution[p] for p in pairs], k=1)[0]
    if rng.random() < 0.5:
        a, b = b, a
    return a, b, distribution[tuple(sorted((a, b)))]  # type: ignore[index]
