"""Bradley-Terry ratings on the Elo scale, with bootstrap and sandwich intervals.

Convention (FastChat ``compute_mle_elo``): P(a beats b) = 1 / (1 + 10 ** ((R_b - R_a) / 400)),
i.e. R = 400 / ln(10) * theta for natural-log strengths theta. Ratings are centred on a mean of
1000, or shifted so that an anchor model has a given rating.

Ties count half a win for each side by default (``ties="half"``), or follow Davidson's model
(``ties="davidson"``): P(i) : P(j) : P(tie) = e^(d/2) : e^(-d/2) : e^kappa with d = theta_i - theta_j.
"Both bad" is a tie by default (``bothbad="tie"``), dropped (``bothbad="exclude"``), or a tie kind
of its own with its own Davidson parameter (``bothbad="davidson"``, which needs Davidson ties):
P(i) : P(j) : P(tie) : P(both bad) = e^(d/2) : e^(-d/2) : e^kappa : e^kappa_bothbad.

``prior`` is a ridge on the log-strengths (and tie parameters): a Gaussian prior N(0, 1/prior).
``fit_bt`` defaults to a tiny one (the maximum-likelihood fit on real data); the published boards
use ``DEFAULT_PRIOR``, about two virtual ties of every model against an average one (each tie
adds 1/4 to the curvature at equal strength), the weak prior of Bayeselo. It keeps a model that
won (or lost) every battle at a finite, modest rating instead of an estimate the data do not bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.linalg import cho_factor, cho_solve
from scipy.sparse import csr_matrix

from .battles import FloatArray, IntArray
from .counts import PairCounts

SCALE = 400.0 / math.log(10.0)  # Elo points per nat of strength
INIT = 1000.0
Z95 = 1.959963984540054
Ties = Literal["half", "davidson"]
BothBad = Literal["tie", "exclude", "davidson"]
DEFAULT_PRIOR = 0.5  # two virtual ties against an average model, in ridge units (see above)
Floats = npt.NDArray[np.floating[Any]]  # float64, or float32 for bootstrap draws


@dataclass(frozen=True)
class Ratings:
    """Fitted ratings (Elo scale, centred or anchored) in the order of ``models``.

    ``theta`` is the raw strength vector (natural log); ``tie_param`` is Davidson's kappa (None
    for half ties) and ``bothbad_param`` the one of "both bad" when it is fitted apart; ``hessian`` is the penalised Hessian at the optimum (None for Elo).
    """

    models: tuple[str, ...]
    rating: FloatArray
    theta: FloatArray
    tie_param: float | None = None
    bothbad_param: float | None = None
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
    """Outcome weights per pair (pairs on axis 0; a trailing axis holds bootstrap rounds).

    With half ties, ``win``/``loss`` already include half of the ties and ``ties`` is unused.
    With Davidson ties, ``ties`` holds one array per tie kind (each with its own parameter).
    """

    i: IntArray
    j: IntArray
    m: int
    win: Floats
    loss: Floats
    ties: tuple[Floats, ...]
    total: Floats
    davidson: bool

    @property
    def kinds(self) -> int:
        """Tie parameters of the model (0 with half ties)."""
        return len(self.ties) if self.davidson else 0


def check_ties(ties: Ties, bothbad: BothBad) -> None:
    if bothbad == "davidson" and ties != "davidson":
        raise ValueError(
            "bothbad 'davidson' fits a tie parameter of its own: it needs Davidson ties"
        )


def _outcomes(table: FloatArray, bothbad: BothBad) -> FloatArray:
    """(P, 4) per-outcome table -> (P, 2 + tie kinds): i wins, j wins, then the tie columns (both
    bad merged into ties, dropped, or kept as a column of its own)."""
    if bothbad == "davidson":
        return table[:, :4].copy()
    tie = table[:, 2] + (table[:, 3] if bothbad == "tie" else 0.0)
    return np.stack([table[:, 0], table[:, 1], tie], axis=1)


def _cells(counts: PairCounts, ties: Ties, win: Floats, loss: Floats, *tie: Floats) -> _Cells:
    m = len(counts.models)
    tied = sum(tie[1:], tie[0])
    total = win + loss + tied
    if ties == "half":
        half = tied / 2
        return _Cells(counts.i, counts.j, m, win + half, loss + half, tie, total, False)
    return _Cells(counts.i, counts.j, m, win, loss, tie, total, True)


def _sigmoid(d: FloatArray) -> FloatArray:
    with np.errstate(over="ignore"):
        out = np.exp(-d)
    out += 1.0
    return np.reciprocal(out, out=out)


def _pair_terms(d: FloatArray, kappa: Any, c: _Cells, hessian: bool):
    """Per-pair derivatives of the negative log-likelihood in d = theta_i - theta_j.

    Pairs are on axis 0 (d is (P,) or (P, rounds)); ``kappa`` holds one tie parameter per tie kind
    (each a scalar or (rounds,)). Returns g_d, g_k (per tie kind, summed over pairs) and, if
    ``hessian``, (nll, h_dd, h_dk per kind, h_kk (kinds x kinds)).
    """
    total = c.total
    if not c.davidson:
        p = _sigmoid(d)
        g_d = total * p - c.win
        if not hessian:
            return g_d, [], None
        nll = float((c.win * np.logaddexp(0.0, -d) + c.loss * np.logaddexp(0.0, d)).sum())
        return g_d, [], (nll, total * p * (1.0 - p), [], np.zeros((0, 0)))
    half = 0.5 * d
    log_den = np.logaddexp(half, -half)
    for k in kappa:
        log_den = np.logaddexp(log_den, k)
    pw, pl = np.exp(half - log_den), np.exp(-half - log_den)
    pt = [np.exp(k - log_den) for k in kappa]
    g_d = total * (pw - pl) / 2 - (c.win - c.loss) / 2
    g_k = [(total * p - tie).sum(axis=0) for p, tie in zip(pt, c.ties, strict=True)]
    if not hessian:
        return g_d, g_k, None
    nll = float((-(c.win - c.loss) * half + total * log_den).sum())
    nll -= float(sum((tie * k).sum() for tie, k in zip(c.ties, kappa, strict=True)))
    h_dd = total * ((pw + pl) / 4 - (pw - pl) ** 2 / 4)
    h_dk = [total * (-p * (pw - pl) / 2) for p in pt]
    h_kk = np.array(
        [
            [float((total * ((p if a == b else 0.0) - p * q)).sum()) for b, q in enumerate(pt)]
            for a, p in enumerate(pt)
        ]
    )
    return g_d, g_k, (nll, h_dd, h_dk, h_kk)


def _scatter(c: _Cells, per_pair: FloatArray) -> FloatArray:
    """Sum per-pair values into models: +v at i, -v at j."""
    return (np.bincount(c.i, per_pair, c.m) - np.bincount(c.j, per_pair, c.m)).astype(np.float64)


def _hessian(c: _Cells, h_dd: FloatArray, h_dk: list[FloatArray], h_kk: FloatArray) -> FloatArray:
    m = c.m
    dim = m + c.kinds
    hess = np.zeros((dim, dim))
    diag = np.bincount(c.i, h_dd, m) + np.bincount(c.j, h_dd, m)
    hess[np.arange(m), np.arange(m)] = diag
    np.add.at(hess, (c.i, c.j), -h_dd)
    np.add.at(hess, (c.j, c.i), -h_dd)
    for k, h in enumerate(h_dk):
        cross = _scatter(c, h)
        hess[:m, m + k] = cross
        hess[m + k, :m] = cross
    hess[m:, m:] = h_kk
    return hess


def _penalty(m: int, dim: int, prior: float, scale: float) -> FloatArray:
    """Hessian of the penalty: ridge ``prior`` on every parameter (strengths and tie parameters),
    plus a sum-to-zero term that removes the null direction (theta + c gives the same likelihood)
    without moving the optimum."""
    pen = np.zeros((dim, dim))
    pen[:m, :m] = scale / m
    pen[np.arange(dim), np.arange(dim)] += prior
    return pen


def _objective(c: _Cells, x: FloatArray, pen: FloatArray) -> tuple[float, FloatArray, FloatArray]:
    m = c.m
    g_d, g_k, second = _pair_terms(x[c.i] - x[c.j], list(x[m:]), c, True)
    assert second is not None
    nll, h_dd, h_dk, h_kk = second
    grad = np.append(_scatter(c, g_d), g_k)
    value = nll + 0.5 * float(x @ pen @ x)
    return value, grad + pen @ x, _hessian(c, h_dd, h_dk, h_kk) + pen


def _pen_scale(c: _Cells) -> float:
    return max(float(c.total.sum()), 1.0) / max(c.m, 1)


def _newton(c: _Cells, x0: FloatArray, prior: float, max_iter: int = 100, tol: float = 1e-10):
    """Damped Newton with backtracking; the objective is convex, so this converges globally."""
    x = x0.copy()
    pen = _penalty(c.m, len(x), prior, _pen_scale(c))
    value, grad, hess = _objective(c, x, pen)
    converged = False
    for _ in range(max_iter):
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:
            trial = x - t * step
            new_value, new_grad, new_hess = _objective(c, trial, pen)
            if new_value <= value - 1e-4 * t * float(grad @ step) or t < 1e-10:
                break
            t *= 0.5
        x, value, grad, hess = trial, new_value, new_grad, new_hess
        if np.max(np.abs(t * step), initial=0.0) < tol:
            converged = True
            break
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

    ``prior`` is a ridge on strengths that keeps ratings finite for a model that never lost (or
    never won) and splits disconnected comparison graphs; at the default it moves ratings by far
    less than 0.001 on real data (the maximum-likelihood fit). ``DEFAULT_PRIOR`` is the weak prior
    the published boards use.
    """
    check_ties(ties, bothbad)
    c = _cells(counts, ties, *_outcomes(counts.w, bothbad).T)
    dim = c.m + c.kinds
    x, hess, converged = _newton(c, np.zeros(dim), prior)
    index, value = _anchor(counts.models, anchor)
    return Ratings(
        models=counts.models,
        rating=_to_ratings(x[: c.m], index, value),
        theta=x[: c.m],
        tie_param=float(x[c.m]) if c.davidson else None,
        bothbad_param=float(x[c.m + 1]) if c.kinds > 1 else None,
        converged=converged,
        hessian=hess,
    )


def _x(r: Ratings) -> FloatArray:
    kappas = [k for k in (r.tie_param, r.bothbad_param) if k is not None]
    return np.append(r.theta, kappas)


# Cells expected to hold at least this many battles are redrawn from the normal approximation to
# the Poisson distribution (mean and variance n); smaller cells get exact Poisson draws.
NORMAL_FROM = 10.0


def poisson_resample(
    rng: np.random.Generator, n: FloatArray, rounds: int
) -> npt.NDArray[np.float32]:
    """(len(n), rounds) Poisson bootstrap draws of cell counts ``n`` (float32).

    Cells with n >= NORMAL_FROM use n + sqrt(n) * z (clipped at 0): the normal approximation of
    Poisson(n), about 5x cheaper to draw; smaller cells are drawn exactly.
    """
    out = rng.standard_normal((len(n), rounds), dtype=np.float32)
    out *= np.sqrt(n, dtype=np.float32)[:, None]
    out += n.astype(np.float32)[:, None]
    np.maximum(out, 0.0, out=out)
    small = np.flatnonzero((n > 0) & (n < NORMAL_FROM))
    out[small] = rng.poisson(n[small, None], (len(small), rounds))
    return out


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
    chunk: int = 100,
    tol: float = 1e-6,
) -> Intervals:
    """Percentile 95% intervals from a Poisson bootstrap of the count cells.

    Resampling: each round redraws every (pair, outcome) cell as Poisson(n_cell) (the cell sum of
    Poisson(1) weights per battle, the standard "Poisson bootstrap"). Since ratings do not change
    when all counts are scaled, this is the multinomial bootstrap with a total that is itself
    Poisson(N) (so +-0.1% at 1M battles): the same intervals. Cells of NORMAL_FROM battles or more
    are drawn from the normal approximation N(n, n) of Poisson(n) (see ``poisson_resample``);
    tests compare the intervals with an exact multinomial bootstrap. Weighted cells keep their mean
    weight per battle.

    Solving: all rounds of a chunk at once, warm-started at the full-data optimum, by a chord
    iteration x <- x - H^-1 g(x) with the full-data Hessian H factored once: each step is a
    sparse (pairs x models) product, a sigmoid and a sparse product back, over a (pairs x rounds)
    array (with half ties, the change of each win probability from the shared start is computed in
    float32 and added to the float64 start gradient). Rounds converge (max step < ``tol`` in
    log-strength units) in a few steps; any that do
    not (tiny samples) finish with a full Newton solve of their own. Deterministic for a given
    seed and chunk.
    """
    m = len(counts.models)
    index, value = _anchor(counts.models, anchor)
    n_cells = _outcomes(counts.n, bothbad)
    if rounds <= 0 or n_cells.sum() == 0:
        return Intervals(fit.rating.copy(), fit.rating.copy(), "none")
    mean_w = np.divide(
        _outcomes(counts.w, bothbad), n_cells, out=np.zeros_like(n_cells), where=n_cells > 0
    )
    assert fit.hessian is not None
    factor = cho_factor(fit.hessian)
    x_hat = _x(fit)
    dim = len(x_hat)
    full = _cells(counts, ties, *_outcomes(counts.w, bothbad).T)
    pen = _penalty(m, dim, prior, _pen_scale(full))
    pairs = len(counts.i)
    rows = np.repeat(np.arange(pairs), 2)
    inc = csr_matrix(
        (np.tile([1.0, -1.0], pairs), (rows, np.column_stack([counts.i, counts.j]).ravel())),
        shape=(pairs, m),
    )
    inc_t = inc.T.tocsr()
    d_hat = inc @ x_hat[:m]
    half_d_hat = (0.5 * d_hat).astype(np.float32)[:, None]
    t_hat = np.tanh(half_d_hat)
    rng = np.random.default_rng(seed)
    samples = np.empty((rounds, m))
    outcomes = n_cells.shape[1]
    for start in range(0, rounds, chunk):
        r = min(chunk, rounds - start)
        drawn = poisson_resample(rng, n_cells.ravel(), r).reshape(pairs, outcomes, r)
        drawn *= mean_w[:, :, None]
        c = _cells(counts, ties, *(drawn[:, k] for k in range(outcomes)))
        x = np.repeat(x_hat[:, None], r, axis=1)
        # Every round starts at x_hat, where all rounds share d and the pair probabilities.
        g_d, g_k, _h = _pair_terms(d_hat[:, None], list(x[m:]), c, False)
        g_first = g_d
        half_total = (0.5 * c.total).astype(np.float32)
        done = False
        for _ in range(30):
            grad = pen @ x
            grad[:m] += inc_t @ g_d
            for k, g in enumerate(g_k):
                grad[m + k] += g
            step = cho_solve(factor, grad)
            x -= step
            done_rounds = np.max(np.abs(step), axis=0) < tol
            done = bool(done_rounds.all())
            if done:
                break
            if c.davidson:
                g_d, g_k, _h = _pair_terms(inc @ x[:m], list(x[m:]), c, False)
                continue
            # Half ties: p - p_hat = (tanh(d/2) - t_hat) / 2 = tanh(e/2) (1 - tanh(d/2) t_hat) / 2
            # with e = d - d_hat: float32 keeps its relative precision, so g_d = g_first +
            # total (p - p_hat) stays accurate to ~1e-7 of the change.
            half_e = (inc @ (0.5 * (x[:m] - x_hat[:m, None]))).astype(np.float32)
            change = np.tanh(half_e + half_d_hat)
            change *= -t_hat
            change += 1.0
            change *= np.tanh(half_e, out=half_e)
            change *= half_total
            g_d = g_first + change
        if not done:
            for col in np.flatnonzero(~done_rounds):
                ck = _Cells(
                    c.i,
                    c.j,
                    m,
                    c.win[:, col],
                    c.loss[:, col],
                    tuple(t[:, col] for t in c.ties),
                    c.total[:, col],
                    c.davidson,
                )
                x[:, col], _, _ = _newton(ck, x[:, col], prior)
        samples[start : start + r] = _to_ratings(x[:m].T, index, value)
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
    check_ties(ties, bothbad)
    x = _x(fit)
    davidson = ties == "davidson"
    d = fit.theta[counts.i] - fit.theta[counts.j]
    outcome_w2 = list(_outcomes(counts.w2, bothbad).T)
    kinds = len(outcome_w2) - 2 if davidson else 0
    if not davidson:
        p = _sigmoid(d)
        scores_d = [p - 1.0, p, p - 0.5]
    else:
        # Outcomes: i wins, j wins, then one per tie kind; each tie kind has its parameter.
        kappas = x[m:]
        half = 0.5 * d
        log_den = np.logaddexp(half, -half)
        for kappa in kappas:
            log_den = np.logaddexp(log_den, kappa)
        pw, pl = np.exp(half - log_den), np.exp(-half - log_den)
        pt = [np.exp(kappa - log_den) for kappa in kappas]
        base = (pw - pl) / 2
        scores_d = [base - 0.5, base + 0.5] + [base] * kinds
    # scores_k[k][o]: the score of tie parameter k for outcome o.
    scores_k = [
        [pt[k] - (1.0 if o == 2 + k else 0.0) for o in range(len(outcome_w2))] for k in range(kinds)
    ]
    j_dd = sum(w * s * s for w, s in zip(outcome_w2, scores_d, strict=True))
    j_dk = [
        np.asarray(sum(w * s * k for w, s, k in zip(outcome_w2, scores_d, sk, strict=True)))
        for sk in scores_k
    ]
    j_kk = np.array(
        [
            [
                float(sum((w * a * b).sum() for w, a, b in zip(outcome_w2, ka, kb, strict=True)))
                for kb in scores_k
            ]
            for ka in scores_k
        ]
    ).reshape(kinds, kinds)
    c = _Cells(counts.i, counts.j, m, d, d, (d,) * kinds, d, davidson)  # only indices and kinds
    meat = _hessian(c, np.asarray(j_dd), j_dk, j_kk)
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
