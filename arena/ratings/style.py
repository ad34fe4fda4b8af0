"""Style control: Bradley-Terry ratings fitted jointly with answer-style covariates.

Per battle, each style count (length, headers, list items, bold) becomes (a - b) / (a + b + 1),
standardised over battles; the logistic model is
    logit P(a beats b) = theta_a - theta_b + sum_f beta_f * style_f
with ties as y = 0.5. Ratings then answer "who wins at equal style", and beta says how much each
style feature (per standard deviation) sways votes.

Battles cannot be collapsed into cells (the covariates are continuous), so every step works on
the battle rows, but never on a dense battles x models design matrix: each row touches two
models, so gradients and Hessians are np.bincount scatters over the ordered-pair index a*M + b.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .battles import A_WINS, B_WINS, BOTHBAD, STYLE_FEATURES, Battles, FloatArray, IntArray
from .bt import SCALE, BothBad, Intervals, Ratings, _anchor, _to_ratings, fit_bt
from .counts import battle_weights, counts_from_battles


@dataclass(frozen=True)
class StyleFit:
    """Style-controlled ratings, intervals, and style coefficients (logit per standard deviation)."""

    ratings: Ratings
    intervals: Intervals
    coefficients: dict[str, float]
    coefficient_lower: dict[str, float]
    coefficient_upper: dict[str, float]
    battles_used: int


@dataclass(frozen=True)
class _Design:
    m: int
    q: IntArray  # a * m + b
    s: FloatArray  # (n, F) standardised features
    y: FloatArray
    w: FloatArray


def style_design(
    battles: Battles, *, bothbad: BothBad = "tie", ipw: bool = False
) -> tuple[_Design, np.ndarray]:
    """Design rows for style control and the mask of battles used (those with style features)."""
    if battles.style_a is None or battles.style_b is None:
        raise ValueError("no style features: load battles with style=True from logs that have them")
    mask = np.isfinite(battles.style_a).all(axis=1) & np.isfinite(battles.style_b).all(axis=1)
    if bothbad == "exclude":
        mask &= battles.outcome != BOTHBAD
    weight = battle_weights(battles, ipw=ipw)[mask]
    sa, sb = battles.style_a[mask], battles.style_b[mask]
    diff = (sa - sb) / (sa + sb + 1.0)
    std = diff.std(axis=0)
    diff = (diff - diff.mean(axis=0)) / np.where(std > 0, std, 1.0)
    outcome = battles.outcome[mask]
    y = np.where(outcome == A_WINS, 1.0, np.where(outcome == B_WINS, 0.0, 0.5))
    m = len(battles.models)
    q = battles.a[mask] * m + battles.b[mask]
    w = weight / weight.mean() if len(weight) else weight
    return _Design(m, q.astype(np.int64), np.ascontiguousarray(diff), y, w), mask


def _newton_step(
    d: _Design, x: FloatArray, prior: float, pen_scale: float
) -> tuple[FloatArray, float]:
    """One Newton step; returns the step and the penalised objective at x."""
    grad, value, hess = _newton_parts(d, x, prior, pen_scale)
    return np.linalg.solve(hess, grad), value


def _newton_parts(
    d: _Design, x: FloatArray, prior: float, pen_scale: float
) -> tuple[FloatArray, float, FloatArray]:
    """Gradient, objective and Hessian of the penalised negative log-likelihood at x."""
    m, f = d.m, d.s.shape[1]
    theta, beta = x[:m], x[m:]
    z = (theta[:, None] - theta[None, :]).ravel()[d.q] + d.s @ beta
    p = 0.5 * (1.0 + np.tanh(0.5 * z))
    value = float(d.w @ (np.logaddexp(0.0, z) - d.y * z))
    r = d.w * (p - d.y)
    h = d.w * p * (1.0 - p)
    mm = m * m
    rq = np.bincount(d.q, r, mm).reshape(m, m)
    hq = np.bincount(d.q, h, mm).reshape(m, m)
    grad = np.empty(m + f)
    grad[:m] = rq.sum(axis=1) - rq.sum(axis=0)
    grad[m:] = d.s.T @ r
    hess = np.zeros((m + f, m + f))
    hess[:m, :m] = np.diag(hq.sum(axis=1) + hq.sum(axis=0)) - hq - hq.T
    for k in range(f):
        hs = np.bincount(d.q, h * d.s[:, k], mm).reshape(m, m)
        cross = hs.sum(axis=1) - hs.sum(axis=0)
        hess[:m, m + k] = cross
        hess[m + k, :m] = cross
    hess[m:, m:] = (d.s * h[:, None]).T @ d.s
    # Ridge `prior` keeps unseen directions finite; the sum-to-zero term fixes theta's free shift.
    hess[:m, :m] += pen_scale / m
    grad[:m] += pen_scale / m * theta.sum()
    hess[np.arange(m + f), np.arange(m + f)] += prior
    grad += prior * x
    value += 0.5 * prior * float(x @ x) + 0.5 * pen_scale / m * float(theta.sum()) ** 2
    return grad, value, hess


def _gradient(d: _Design, x: FloatArray, prior: float, pen_scale: float) -> FloatArray:
    m = d.m
    theta = x[:m]
    z = (theta[:, None] - theta[None, :]).ravel()[d.q] + d.s @ x[m:]
    r = d.w * (0.5 * (1.0 + np.tanh(0.5 * z)) - d.y)
    rq = np.bincount(d.q, r, m * m).reshape(m, m)
    grad = np.concatenate([rq.sum(axis=1) - rq.sum(axis=0), d.s.T @ r]) + prior * x
    grad[:m] += pen_scale / m * theta.sum()
    return grad


def _hessian(d: _Design, x: FloatArray, prior: float, pen_scale: float) -> FloatArray:
    return _newton_parts(d, x, prior, pen_scale)[2]


def _solve(
    d: _Design, x0: FloatArray, prior: float, line_search: bool, max_iter: int = 50
) -> FloatArray:
    x = x0.copy()
    pen_scale = max(float(d.w.sum()), 1.0) / max(d.m, 1)
    step, value = _newton_step(d, x, prior, pen_scale)
    for _ in range(max_iter):
        t = 1.0
        while line_search:
            new_step, new_value = _newton_step(d, x - t * step, prior, pen_scale)
            if new_value <= value + 1e-12 * abs(value) or t < 1e-8:
                break
            t *= 0.5
        x = x - t * step
        if np.max(np.abs(t * step), initial=0.0) < 1e-9:
            break
        if line_search:
            step, value = new_step, new_value
        else:
            step, value = _newton_step(d, x, prior, pen_scale)
    return x


def fit_style(
    battles: Battles,
    *,
    rounds: int = 100,
    seed: int = 0,
    anchor: tuple[str, float] | None = None,
    bothbad: BothBad = "tie",
    ipw: bool = False,
    prior: float = 1e-6,
) -> StyleFit:
    """Style-controlled ratings with bootstrap intervals (battles resampled with replacement).

    Rounds run one after another, each warm-started at the full-data optimum, where Newton's
    method needs 2-3 steps; memory stays at a few arrays of the battle count.
    """
    design, mask = style_design(battles, bothbad=bothbad, ipw=ipw)
    m, f = design.m, design.s.shape[1]
    # Warm start from plain Bradley-Terry on the same battles: far fewer Newton steps on 1M rows.
    plain = fit_bt(counts_from_battles(battles.select(mask)), prior=prior)
    x_hat = _solve(design, np.concatenate([plain.theta, np.zeros(f)]), prior, line_search=True)
    index, value = _anchor(battles.models, anchor)
    rating = _to_ratings(x_hat[:m], index, value)
    n = len(design.y)
    rng = np.random.default_rng(seed)
    samples = np.empty((max(rounds, 0), m + f))
    # Chord Newton: every round reuses the full-data Hessian (a resample's Hessian differs from it
    # by O(1/sqrt(n))), so a step costs one gradient: a gather, a sigmoid and one bincount.
    pen_scale = max(float(design.w.sum()), 1.0) / max(m, 1)
    hinv = np.linalg.inv(_hessian(design, x_hat, prior, pen_scale))
    for r in range(max(rounds, 0)):
        drawn = np.bincount(rng.integers(0, n, n), minlength=n)
        keep = np.flatnonzero(drawn)
        sub = _Design(
            m, design.q[keep], design.s[keep], design.y[keep], design.w[keep] * drawn[keep]
        )
        x = x_hat.copy()
        for _ in range(30):
            step = hinv @ _gradient(sub, x, prior, pen_scale)
            x -= step
            if np.max(np.abs(step)) < 1e-9:
                break
        else:
            x = _solve(sub, x, prior, line_search=True)
        samples[r] = x
    if rounds > 0:
        rating_samples = _to_ratings(samples[:, :m], index, value)
        lower, upper = np.percentile(rating_samples, [2.5, 97.5], axis=0)
        c_lo, c_hi = np.percentile(samples[:, m:], [2.5, 97.5], axis=0)
        intervals = Intervals(lower, upper, "bootstrap", rounds, rating_samples)
    else:
        intervals = Intervals(rating.copy(), rating.copy(), "none")
        c_lo, c_hi = x_hat[m:], x_hat[m:]
    names = STYLE_FEATURES[:f]
    return StyleFit(
        ratings=Ratings(battles.models, rating, x_hat[:m], converged=True),
        intervals=intervals,
        coefficients={k: float(v) for k, v in zip(names, x_hat[m:], strict=True)},
        coefficient_lower={k: float(v) for k, v in zip(names, c_lo, strict=True)},
        coefficient_upper={k: float(v) for k, v in zip(names, c_hi, strict=True)},
        battles_used=int(mask.sum()),
    )


__all__ = ["SCALE", "StyleFit", "fit_style", "style_design"]
