"""Pair sampling: which two models an anonymous battle draws."""

from __future__ import annotations

from typing import Any

from arena import sampling
from arena.selectors import sampling_candidates
from modelhub.models import Modality, Model
from modelhub.selectors import models_available


def pair_sample(
    *, vision: bool, tools: bool = False, rng: Any = None
) -> tuple[Model, Model, float]:
    """Draw two models for an anonymous battle from the available pool (vision pool with an image;
    models with tools enabled for a tools battle). Raises sampling.NotEnoughModels when fewer than
    two can battle."""
    available = models_available(modality=Modality.IMAGE if vision else Modality.TEXT)
    pool = list(available.exclude(tools=[]) if tools else available)
    if len(pool) < 2:
        raise sampling.NotEnoughModels("fewer than two models are available")
    policy, candidates = sampling_candidates(pool, key=lambda m: str(m.id))
    left, right, probability = sampling.sample_pair(
        candidates,
        rng=rng,
        new_model_boost=policy.new_model_boost,
        new_model_until_votes=policy.new_model_until_votes,
        target_boost=policy.target_boost,
    )
    by_id = {str(m.id): m for m in pool}
    return by_id[left], by_id[right], probability
