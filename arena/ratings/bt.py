"""Bradley-Terry ratings on the Elo scale, with bootstrap and sandwich intervals.

Convention (FastChat ``compute_mle_elo``): P(a beats b) = 1 / (1 + 10 ** ((R_b - R_a) / 400)),
i.e. R = 400 / ln(10) * theta for natural-log strengths theta. Ratings are centred on a mean of
1000, or shifted so that an anchor model has a given rating.

Ties count half a win for each side by default (``ties="half"``), or follow Davidson's model
(``ties="davidson"``): P(i) : P(j) : P(tie) = e^(d/2) : e^(-d/2) : e^kappa with d = theta_i - theta_j.
"Both bad" is a tie by default (``bothbad="tie"``) or dropped (``bothbad="exclude"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .battles import FloatArray
from .counts import PairCounts

SCALE = 400.0 / math.log(10.0)  # Elo points per nat of strength
INIT = 1000.0
Z95 = 1.959963984540054
Ties = Literal["half", "davidson"]
BothBad = Literal["tie", "exclude"]


@dataclass(frozen=True)
class Ratings:
    """Fitted ratings (Elo scale, centred or anchored) in the order of ``models``.

    ``theta`` is the raw strength vector (natural log); ``tie_param`` is Davidson's kappa (None
    for half ties); ``hessian`` is the penalised Hessian at the optimum (None for Elo).
    """

    models: tuple[str, ...]
    rating: FloatArray
    theta: FloatArray
    tie_param: float | None = None
    converged: bool = True
    hessian: FloatArray | None = None


@dataclass(frozen=True)
class Intervals:
    """95% intervals per model; ``samples`` holds the (rounds, models) bootstrap ratings."""

    lower: FloatArray
    upper: FloatArray
    method: Literal["bootstrap", "sandwich", "none"]
    rounds: int = 0
    samples: FloatArray | None = None


@dataclass(frozen=True)
class _Cells:
    """Outcome weights per pair for one fit: columns i wins, j wins, tie (tie unused if half)."""

    i: np.ndarray
    j: np.ndarray
    m: int
    win: FloatArray  # (..., P)
    loss: FloatArray
    tie: FloatArray
    davidson: bool


def _cells(
    counts: PairCounts, ties: Ties, bothbad: BothBad, table: FloatArray | None = None
) -> _Cells:
    t = counts.w if table is None else table
    tie = t[..., 2] + (t[..., 3] if bothbad == "tie" else 0.0)
    if ties == "half":
        return _Cells(
            counts.i,
            counts.j,
            len(counts.models),
            t[..., 0] + tie / 2,
            t[..., 1] + tie / 2,
            tie * 0.0,
            False,
        )
    return _Cells(counts.i, counts.j, len(counts.models), t[..., 0], t[..., 1], tie, True)


def _pair_terms(
    d: FloatArray, kappa: FloatArray | float, c: _Cells, hessian: bool
) -> tuple[
    FloatArray, FloatArray, FloatArray, FloatArray | None, FloatArray | None, FloatArray | None
]:
    """Per-pair negative log-likelihood, its derivatives in d (and kappa), summed over pairs for kappa.

    Returns nll (...), g_d (..., P), g_k (...), h_dd, h_dk (..., P), h_kk (...).
    """
    total = c.win + c.loss + c.tie
    if not c.davidson:
        p = 0.5 * (1.0 + np.tanh(0.5 * d))  # sigmoid without overflow
        zero = np.zeros(d.shape[:-1])
        # The objective is only needed by the line search of single fits (hessian=True).
        nll = (
            (c.win * np.logaddexp(0.0, -d) + c.loss * np.logaddexp(0.0, d)).sum(axis=-1)
            if hessian
            else zero
        )
        g_d = total * p - c.win
        h_dd = total * p * (1.0 - p) if hessian else None
        return (
            nll,
            g_d,
            zero,
            h_dd,
            (np.zeros_like(d) if hessian else None),
            (zero if hessian else None),
        )
    k = np.asarray(kappa)[..., None]
    half = 0.5 * d
    log_den = np.logaddexp(np.logaddexp(half, -half), k)
    pw, pl, pt = np.exp(half - log_den), np.exp(-half - log_den), np.exp(k - log_den)
    nll = (-(c.win - c.loss) * half - c.tie * k + total * log_den).sum(axis=-1)
    g_d = -(c.win - c.loss) / 2 + total * (pw - pl) / 2
    g_k = (-c.tie + total * pt).sum(axis=-1)
    if not hessian:
        return nll, g_d, g_k, None, None, None
    h_dd = total * ((pw + pl) / 4 - (pw - pl) ** 2 / 4)
    h_dk = total * (-pt * (pw - pl) / 2)
    h_kk = (total * (pt - pt**2)).sum(axis=-1)
    return nll, g_d, g_k, h_dd, h_dk, h_kk


def _assemble(
    c: _Cells, g_d: FloatArray, g_k: float, h: tuple[FloatArray, FloatArray, float] | None
):
    """Gradient (and Hessian) over the parameter vector theta (+ kappa) of one problem."""
    m = c.m
    dim = m + (1 if c.davidson else 0)
    grad = np.zeros(dim)
    grad[:m] = np.bincount(c.i, g_d, m) - np.bincount(c.j, g_d, m)
    if c.davidson:
        grad[m] = g_k
    if h is None:
        return grad, None
    h_dd, h_dk, h_kk = h
    hess = np.zeros((dim, dim))
    diag = np.bincount(c.i, h_dd, m) + np.bincount(c.j, h_dd, m)
    hess[np.arange(m), np.arange(m)] = diag
    np.add.at(hess, (c.i, c.j), -h_dd)
    np.add.at(hess, (c.j, c.i), -h_dd)
    if c.davidson:
        cross = np.bincount(c.i, h_dk, m) - np.bincount(c.j, h_dk, m)
        hess[:m, m] = cross
        hess[m, :m] = cross
        hess[m, m] = h_kk
    return grad, hess


def _penalty(m: int, dim: int, prior: float, scale: float) -> FloatArray:
    """Hessian of the penalty: ridge ``prior`` plus a sum-to-zero term that removes the null
    direction (theta + c gives the same likelihood) without moving the optimum."""
    pen = np.zeros((dim, dim))
    pen[:m, :m] = scale / m
    pen[np.arange(m), np.arange(m)] += prior
    return pen


def _objective(c: _Cells, x: FloatArray, pen: FloatArray, hessian: bool):
    m = c.m
    theta = x[:m]
    kappa = x[m] if c.davidson else 0.0
    d = theta[c.i] - theta[c.j]
    nll, g_d, g_k, h_dd, h_dk, h_kk = _pair_terms(d, kappa, c, hessian)
    h = (
        (h_dd, h_dk, float(h_kk))
        if hessian and h_dd is not None and h_dk is not None and h_kk is not None
        else None
    )
    grad, hess = _assemble(c, g_d, float(g_k), h)
    value = float(nll) + 0.5 * float(x @ pen @ x)
    grad = grad + pen @ x
    if hess is not None:
        hess = hess + pen
    return value, grad, hess


def _newton(c: _Cells, x0: FloatArray, prior: float, max_iter: int = 100, tol: float = 1e-10):
    """Damped Newton with backtracking; the objective is convex, so this converges globally."""
    x = x0.copy()
    total = float((c.win + c.loss + c.tie).sum())
    pen = _penalty(c.m, len(x), prior, max(total, 1.0) / max(c.m, 1))
    value, grad, hess = _objective(c, x, pen, True)
    converged = False
    for _ in range(max_iter):
        assert hess is not None
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:
            trial = x - t * step
            new_value, new_grad, new_hess = _objective(c, trial, pen, True)
            if new_value <= value - 1e-4 * t * float(grad @ step) or t < 1e-10:
                break
            t *= 0.5
        x, value, grad, hess = trial, new_value, new_grad, new_hess
        if np.max(np.abs(t * step), initial=0.0) < tol:
            converged = True
            break
    assert hess is not None
    return x, hess, converged


def _to_ratings(theta: FloatArray, anchor_index: int | None, anchor_rating: float) -> FloatArray:
    """Elo-scale ratings from strengths (last axis = models): mean 1000, or the anchor's rating."""
    r = SCALE * theta
    if anchor_index is None:
        return r - r.mean(axis=-1, keepdims=True) + INIT
    return r - r[..., anchor_index : anchor_index + 1] + anchor_rating


def _anchor(models: tuple[str, ...], anchor: tuple[str, float] | None) -> tuple[int | None, float]:
    if anchor is None:
        return None, INIT
    name, rating = anchor
    if name not in models:
        raise ValueError(f"anchor model {name!r} has no battles")
    return models.index(name), float(rating)


def fit_bt(
    counts: PairCounts,
    *,
    ties: Ties = "half",
    bothbad: BothBad = "tie",
    anchor: tuple[str, float] | None = None,
    prior: float = 1e-6,
) -> Ratings:
    """Maximum-likelihood Bradley-Terry (or Davidson) ratings from counts.

    ``prior`` is a tiny ridge on strengths that keeps ratings finite for a model that never lost
    (or never won) and splits disconnected comparison graphs; at the default it moves ratings by
    far less than 0.001 on real data.
    """
    c = _cells(counts, ties, bothbad)
    dim = c.m + (1 if c.davidson else 0)
    x, hess, converged = _newton(c, np.zeros(dim), prior)
    index, value = _anchor(counts.models, anchor)
    return Ratings(
        models=counts.models,
        rating=_to_ratings(x[: c.m], index, value),
        theta=x[: c.m],
        tie_param=float(x[c.m]) if c.davidson else None,
        converged=converged,
        hessian=hess,
    )


def _x(r: Ratings) -> FloatArray:
    return r.theta if r.tie_param is None else np.append(r.theta, r.tie_param)


def bootstrap_bt(
    counts: PairCounts,
    fit: Ratings,
    *,
    rounds: int = 1000,
    seed: int = 0,
    ties: Ties = "half",
    bothbad: BothBad = "tie",
    anchor: tuple[str, float] | None = None,
    prior: float = 1e-6,
    chunk: int = 250,
) -> Intervals:
    """Percentile 95% intervals from a multinomial bootstrap of the count cells.

    Each round redraws all battles at once: cell counts ~ Multinomial(N, n_cell / N). Weighted
    cells keep their mean weight per battle. All rounds are solved together: a chord-Newton
    iteration from the full-data optimum with its (fixed) inverse Hessian, vectorised over an
    (rounds, models) matrix; rounds that do not converge fast (tiny samples) finish with a full
    Newton solve of their own. Deterministic for a given seed.
    """
    m = len(counts.models)
    index, value = _anchor(counts.models, anchor)
    n_cells = counts.n.copy()
    if bothbad == "exclude":
        n_cells[:, 3] = 0.0
    flat_n = n_cells.ravel()
    live = np.flatnonzero(flat_n > 0)
    total = int(round(flat_n[live].sum()))
    if rounds <= 0 or total == 0:
        return Intervals(fit.rating.copy(), fit.rating.copy(), "none")
    mean_w = counts.w.ravel()[live] / flat_n[live]
    probs = flat_n[live] / flat_n[live].sum()
    rng = np.random.default_rng(seed)
    assert fit.hessian is not None
    hinv = np.linalg.inv(fit.hessian)
    x_hat = _x(fit)
    dim = len(x_hat)
    davidson = ties == "davidson"
    pen = _penalty(m, dim, prior, max(float(counts.w.sum()), 1.0) / max(m, 1))
    # Incidence matrix: gradient over models = per-pair derivative @ inc (dense is fastest here).
    inc = np.zeros((len(counts.i), m))
    inc[np.arange(len(counts.i)), counts.i] = 1.0
    inc[np.arange(len(counts.i)), counts.j] = -1.0
    samples = np.empty((rounds, m))
    for start in range(0, rounds, chunk):
        r = min(chunk, rounds - start)
        draws = rng.multinomial(total, probs, size=r).astype(np.float64)
        table = np.zeros((r, counts.n.size))
        table[:, live] = draws * mean_w
        c = _cells(counts, ties, bothbad, table.reshape(r, -1, 4))
        x = np.repeat(x_hat[None, :], r, axis=0)
        done = np.zeros(r, dtype=bool)
        for _ in range(40):
            theta = x[:, :m]
            d = theta[:, counts.i] - theta[:, counts.j]
            _, g_d, g_k, _, _, _ = _pair_terms(d, x[:, m] if davidson else 0.0, c, False)
            grad = np.empty((r, dim))
            grad[:, :m] = g_d @ inc
            if davidson:
                grad[:, m] = g_k
            grad += x @ pen
            step = grad @ hinv
            x -= step
            done = np.max(np.abs(step), axis=1) < 1e-9
            if done.all():
                break
        for k in np.flatnonzero(~done):
            ck = _Cells(c.i, c.j, m, c.win[k], c.loss[k], c.tie[k], davidson)
            x[k], _, _ = _newton(ck, x[k], prior)
        samples[start : start + r] = _to_ratings(x[:, :m], index, value)
    lower, upper = np.percentile(samples, [2.5, 97.5], axis=0)
    return Intervals(lower, upper, "bootstrap", rounds, samples)


def sandwich_intervals(
    counts: PairCounts,
    fit: Ratings,
    *,
    ties: Ties = "half",
    bothbad: BothBad = "tie",
    anchor: tuple[str, float] | None = None,
) -> Intervals:
    """Wald 95% intervals from the robust (sandwich) covariance H^-1 J H^-1.

    J sums squared per-battle scores, computed per cell from the sums of squared weights, so it
    stays valid under weighting and mild misspecification (e.g. ties-as-half).
    """
    m = len(counts.models)
    assert fit.hessian is not None
    x = _x(fit)
    davidson = ties == "davidson"
    d = fit.theta[counts.i] - fit.theta[counts.j]
    w2 = counts.w2
    tie_w2 = w2[:, 2] + (w2[:, 3] if bothbad == "tie" else 0.0)
    outcome_w2 = [w2[:, 0], w2[:, 1], tie_w2]
    if not davidson:
        p = 0.5 * (1.0 + np.tanh(0.5 * d))
        scores_d = [p - 1.0, p, p - 0.5]
        scores_k = [np.zeros_like(d)] * 3
    else:
        kappa = float(x[m])
        half = 0.5 * d
        log_den = np.logaddexp(np.logaddexp(half, -half), kappa)
        pw, pl, pt = np.exp(half - log_den), np.exp(-half - log_den), np.exp(kappa - log_den)
        base = (pw - pl) / 2
        scores_d = [base - 0.5, base + 0.5, base]
        scores_k = [pt, pt, pt - 1.0]
    j_dd = sum(w * s * s for w, s in zip(outcome_w2, scores_d, strict=True))
    j_dk = sum(w * s * k for w, s, k in zip(outcome_w2, scores_d, scores_k, strict=True))
    j_kk = float(sum((w * k * k).sum() for w, k in zip(outcome_w2, scores_k, strict=True)))
    c = _Cells(
        counts.i, counts.j, m, np.zeros_like(d), np.zeros_like(d), np.zeros_like(d), davidson
    )
    _, meat = _assemble(c, np.zeros_like(d), 0.0, (np.asarray(j_dd), np.asarray(j_dk), j_kk))
    assert meat is not None
    bread = np.linalg.inv(fit.hessian)
    cov = bread @ meat @ bread
    index, _ = _anchor(counts.models, anchor)
    # Ratings are a linear map of theta: centring (or anchoring) then scaling.
    transform = np.eye(m) - (1.0 / m if index is None else np.eye(m)[:, [index]].T)
    cov_r = SCALE**2 * transform @ cov[:m, :m] @ transform.T
    sd = np.sqrt(np.clip(np.diag(cov_r), 0.0, None))
    return Intervals(fit.rating - Z95 * sd, fit.rating + Z95 * sd, "sandwich")


def rank_ub(lower: FloatArray, upper: FloatArray) -> np.ndarray:
    """Rank (UB): 1 + number of models whose lower bound exceeds this model's upper bound."""
    return 1 + (lower[None, :] > upper[:, None]).sum(axis=1)
