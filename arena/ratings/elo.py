"""Online Elo in time order (for display; Bradley-Terry is the estimate to trust)."""

from __future__ import annotations

import itertools

import numpy as np

from .battles import A_WINS, B_WINS, BOTHBAD, Battles, FloatArray
from .bt import BothBad, Intervals, Ratings


def _elo_pass(
    m: int,
    a: list[int],
    b: list[int],
    score: list[float],
    k: float,
    base: float,
    scale: float,
    init: float,
) -> list[float]:
    rating = [init] * m
    for i, j, s in zip(a, b, score, strict=True):
        ri, rj = rating[i], rating[j]
        expected = 1.0 / (1.0 + base ** ((rj - ri) / scale))
        delta = k * (s - expected)
        rating[i] = ri + delta
        rating[j] = rj - delta
    return rating


def _scores(battles: Battles, bothbad: BothBad) -> tuple[np.ndarray, FloatArray]:
    order = battles.time_order()
    outcome = battles.outcome[order]
    if bothbad == "exclude":
        order = order[outcome != BOTHBAD]
        outcome = battles.outcome[order]
    score = np.where(outcome == A_WINS, 1.0, np.where(outcome == B_WINS, 0.0, 0.5))
    return order, score


def online_elo(
    battles: Battles,
    *,
    k: float = 4.0,
    base: float = 10.0,
    scale: float = 400.0,
    init: float = 1000.0,
    bothbad: BothBad = "tie",
) -> Ratings:
    """Sequential Elo over battles sorted by ``tstamp`` (file order when absent); ties score 0.5."""
    order, score = _scores(battles, bothbad)
    rating = np.array(
        _elo_pass(
            len(battles.models),
            battles.a[order].tolist(),
            battles.b[order].tolist(),
            score.tolist(),
            k,
            base,
            scale,
            init,
        )
    )
    return Ratings(models=battles.models, rating=rating, theta=rating / scale * np.log(base))


def elo_trajectory(
    battles: Battles, *, points: int = 20, k: float = 4.0, bothbad: BothBad = "tie"
) -> list[tuple[float, FloatArray]]:
    """Online Elo ratings after each of ``points`` equal slices of the time-ordered battles.

    Returns (tstamp or battle index at the end of the slice, ratings) pairs.
    """
    order, score = _scores(battles, bothbad)
    n = len(order)
    m = len(battles.models)
    rating = [1000.0] * m
    out: list[tuple[float, FloatArray]] = []
    edges = np.linspace(0, n, max(points, 1) + 1).astype(int)
    a, b, s = battles.a[order].tolist(), battles.b[order].tolist(), score.tolist()
    for lo, hi in itertools.pairwise(edges):
        for i, j, sc in zip(a[lo:hi], b[lo:hi], s[lo:hi], strict=True):
            delta = k * (sc - 1.0 / (1.0 + 10.0 ** ((rating[j] - rating[i]) / 400.0)))
            rating[i] += delta
            rating[j] -= delta
        stamp = (
            float(battles.tstamp[order[hi - 1]]) if battles.tstamp is not None and hi else float(hi)
        )
        out.append((stamp, np.array(rating)))
    return out


def bootstrap_elo(
    battles: Battles, *, rounds: int = 100, seed: int = 0, k: float = 4.0, bothbad: BothBad = "tie"
) -> Intervals:
    """Percentile intervals of online Elo over battles resampled with replacement (time order kept).

    Cost is rounds x battles Python steps (about 0.5 s per round per million battles).
    """
    order, score = _scores(battles, bothbad)
    n = len(order)
    if rounds <= 0 or n == 0:
        rating = online_elo(battles, k=k, bothbad=bothbad).rating
        return Intervals(rating, rating.copy(), "none")
    rng = np.random.default_rng(seed)
    a, b = battles.a[order], battles.b[order]
    samples = np.empty((rounds, len(battles.models)))
    for r in range(rounds):
        pick = np.sort(rng.integers(0, n, n))
        samples[r] = _elo_pass(
            len(battles.models),
            a[pick].tolist(),
            b[pick].tolist(),
            score[pick].tolist(),
            k,
            10.0,
            400.0,
            1000.0,
        )
    lower, upper = np.percentile(samples, [2.5, 97.5], axis=0)
    return Intervals(lower, upper, "bootstrap", rounds, samples)
