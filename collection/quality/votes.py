"""Voter quality on the public battle log: reliability per judge and anomalous voters.

No Django imports: the command line, the benchmark and the web app share this module.

Reliability (Crowd-BT, Chen et al. 2013): judge ``k`` agrees with the Bradley-Terry preference
with probability ``eta_k`` and flips it otherwise, so a decisive vote for ``w`` over ``l`` has
probability ``eta_k * s + (1 - eta_k) * (1 - s)`` with ``s = sigmoid(theta_w - theta_l)``. With the
strengths fitted on the whole log, each ``eta_k`` follows by EM (a few vectorised passes over the
votes). Gold answers (honeypots, whose right answer is known) are votes with ``s = 1``: a right one
is certain agreement, a wrong one certain disagreement. 1 is a perfect judge, 0.5 a coin.

Anomalies (each flag holds the judge's votes out of the published board until staff review):
- one-sided: a judge's votes won by one model are far more than that model's share of all votes
  predicts (exact binomial tail, Bonferroni over models). A script that recognises a model and
  only votes when it is on the page, for it, is caught after a handful of votes; accounts with
  fewer are tested as a group (far more accounts whose every vote went to one model than chance
  gives).
- too fast: most timed votes came sooner after the judge's previous vote than the two answers can
  be read (``READ_TOKENS_PER_S``, ten times a brisk reading speed).
- sequential test (Chiang et al. 2024, "Chatbot Arena", section on anomalous users): each vote's
  p-value under the Bradley-Terry model fitted on everyone (how likely a result at least as good
  for the underdog is), combined with Fisher's method over the judge's first ``j`` votes and
  compared with the chi-square quantile at a few checkpoints, Bonferroni over the checkpoints.
  It catches judges whose votes pull the board together or turn it around (coins, contrarians).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from arena.ratings.battles import A_WINS, B_WINS, Battles, FloatArray, IntArray
from arena.ratings.bt import DEFAULT_PRIOR, fit_bt
from arena.ratings.counts import counts_from_battles

ALPHA = 0.001  # family-wise false-flag rate per judge and test
CHECKPOINTS = (5, 10, 20, 50, 100, 200, 500, 1000)
READ_TOKENS_PER_S = 50.0
MIN_ONE_SIDED = 4  # fewer votes for one model are never called one-sided
MIN_TOO_FAST = 5
PRIOR_AGREE, PRIOR_DISAGREE = 2.0, 1.0  # Beta prior on eta: mean 2/3, worth three votes
EM_ROUNDS = 50


@dataclass(frozen=True)
class GoldAnswers:
    """Gold items each judge answered, and how many of them right."""

    answered: Mapping[str, int]
    right: Mapping[str, int]

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, object]]) -> GoldAnswers:
        """Rows ``{"judge", "winner", "gold"}``: what the judge chose and the known answer."""
        answered: dict[str, int] = {}
        right: dict[str, int] = {}
        for number, row in enumerate(rows, 1):
            judge, winner, gold = row.get("judge"), row.get("winner"), row.get("gold")
            if (
                not isinstance(judge, str)
                or not isinstance(winner, str)
                or not isinstance(gold, str)
            ):
                raise ValueError(f"gold row {number}: judge, winner and gold must be strings")
            answered[judge] = answered.get(judge, 0) + 1
            right[judge] = right.get(judge, 0) + int(winner == gold)
        return cls(answered, right)


@dataclass(frozen=True)
class VoterReport:
    judge: str
    votes: int
    reliability: float
    flagged: bool
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "judge": self.judge,
            "votes": self.votes,
            "reliability": round(self.reliability, 4),
            "flagged": self.flagged,
            "reasons": self.reasons,
        }


def _sigmoid(x: FloatArray) -> FloatArray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def one_sided(
    battles: Battles, judge: IntArray, judges: int, alpha: float = ALPHA
) -> dict[int, list[str]]:
    """Judges whose votes favour one model beyond its share of all wins: {judge: [reason]}.

    Under the null a judge's vote is a draw from the whole log, so the votes won by model ``m``
    among a judge's ``n`` are Binomial(n, share of all votes won by m). Only (judge, model) pairs
    with at least ``MIN_ONE_SIDED`` such votes are tested (a sparse set).
    """
    m = len(battles.models)
    if len(battles) == 0:
        return {}
    winner = np.where(
        battles.outcome == A_WINS, battles.a, np.where(battles.outcome == B_WINS, battles.b, -1)
    )
    decided = winner >= 0
    share = np.bincount(winner[decided], minlength=m) / max(len(battles), 1)
    n_votes = np.bincount(judge, minlength=judges)
    key = judge[decided] * m + winner[decided]
    cells, wins = np.unique(key, return_counts=True)
    keep = wins >= MIN_ONE_SIDED
    cells, wins = cells[keep], wins[keep]
    who, model = cells // m, cells % m
    p = stats.binom.sf(wins - 1, n_votes[who], share[model])
    out: dict[int, list[str]] = {}
    for k in np.flatnonzero(p < alpha / m):
        w, mod = int(who[k]), int(model[k])
        out.setdefault(w, []).append(
            f"one-sided: {int(wins[k])} of {int(n_votes[w])} votes won by {battles.models[mod]}"
            f" (expected {n_votes[w] * share[mod]:.1f}, p={p[k]:.1e})"
        )
    return out


def one_sided_group(
    battles: Battles, judge: IntArray, judges: int, alpha: float = ALPHA
) -> dict[int, list[str]]:
    """Accounts too small to test one by one, tested as a group: {judge: [reason]}.

    An account whose every vote (two or more) was won by the same model is unremarkable alone;
    under the null, an account of ``n`` votes is one for model ``m`` with probability
    ``share_m ** n``. When far more accounts are all for ``m`` than those chances add up to
    (Poisson tail, Bonferroni over models), each of them is flagged: rigged votes spread over many
    new accounts, a couple each, land here.
    """
    m = len(battles.models)
    if len(battles) == 0:
        return {}
    winner = np.where(
        battles.outcome == A_WINS, battles.a, np.where(battles.outcome == B_WINS, battles.b, -1)
    )
    share = np.bincount(winner[winner >= 0], minlength=m) / len(battles)
    n_votes = np.bincount(judge, minlength=judges)
    low = np.full(judges, m, dtype=np.int64)
    high = np.full(judges, -1, dtype=np.int64)
    np.minimum.at(low, judge, winner)
    np.maximum.at(high, judge, winner)
    sized = n_votes >= 2
    all_for = sized & (low == high) & (low >= 0)
    observed = np.bincount(low[all_for], minlength=m)
    sizes, accounts = np.unique(n_votes[sized], return_counts=True)
    expected = (accounts[:, None] * share[None, :] ** sizes[:, None]).sum(axis=0)
    p = stats.poisson.sf(observed - 1, expected)
    out: dict[int, list[str]] = {}
    for model in np.flatnonzero((p < alpha / m) & (observed >= MIN_ONE_SIDED)):
        name = battles.models[model]
        for w in np.flatnonzero(all_for & (low == model)):
            out[int(w)] = [
                f"one-sided group: one of {int(observed[model])} accounts whose every vote was"
                f" won by {name} (expected {expected[model]:.1f}, p={p[model]:.1e})"
            ]
    return out


def too_fast(battles: Battles, judge: IntArray, order: IntArray) -> dict[int, list[str]]:
    """Judges most of whose timed votes came sooner than the answers can be read."""
    if battles.tstamp is None or battles.style_a is None or battles.style_b is None:
        return {}
    j = judge[order]
    gap = np.diff(battles.tstamp[order], prepend=np.nan)
    gap[np.r_[True, j[1:] != j[:-1]]] = np.nan  # a judge's first vote has no previous one
    tokens = battles.style_a[order, 0] + battles.style_b[order, 0]
    timed = ~np.isnan(gap) & ~np.isnan(tokens)
    fast = timed & (gap * READ_TOKENS_PER_S < tokens)
    n_timed = np.bincount(j[timed], minlength=judge.max(initial=-1) + 1)
    n_fast = np.bincount(j[fast], minlength=len(n_timed))
    out: dict[int, list[str]] = {}
    for w in np.flatnonzero((n_fast >= MIN_TOO_FAST) & (2 * n_fast >= n_timed)):
        out[int(w)] = [
            f"too fast: {int(n_fast[w])} of {int(n_timed[w])} timed votes came sooner than"
            f" their answers can be read at {READ_TOKENS_PER_S:g} tokens/s"
        ]
    return out


def vote_p_values(battles: Battles, theta: FloatArray) -> FloatArray:
    """Per vote: how likely, under the fitted model, a result at least as good for the underdog
    (the model of lower strength) is: its win, then a tie, then the favourite's win. Mid-p values
    (half the cast outcome's own probability): near uniform for an honest vote, small for upsets.
    """
    tie_rate = float(np.mean(battles.outcome >= 2)) if len(battles) else 0.0
    s = _sigmoid(theta[battles.a] - theta[battles.b])
    upset = (1.0 - tie_rate) * np.minimum(s, 1.0 - s)
    underdog_won = np.where(s < 0.5, battles.outcome == A_WINS, battles.outcome == B_WINS)
    tied = battles.outcome >= 2
    return np.where(
        underdog_won,
        upset / 2,
        np.where(tied, upset + tie_rate / 2, (1.0 + upset + tie_rate) / 2),
    )


def sequential_test(
    p_values: FloatArray, judge: IntArray, order: IntArray, alpha: float = ALPHA
) -> dict[int, list[str]]:
    """Fisher's combination over each judge's first j votes (in time order) at CHECKPOINTS."""
    j = judge[order]
    stat = -2.0 * np.log(np.maximum(p_values[order], 1e-300))
    starts = np.flatnonzero(np.r_[True, j[1:] != j[:-1]])
    cum = np.cumsum(stat)
    before = np.r_[0.0, cum][starts]  # cumulated statistic before each judge's first vote
    counts = np.diff(np.r_[starts, len(j)])
    out: dict[int, list[str]] = {}
    for point in CHECKPOINTS:
        reach = counts >= point
        if not reach.any():
            break
        total = cum[starts[reach] + point - 1] - before[reach]
        limit = stats.chi2.isf(alpha / len(CHECKPOINTS), 2 * point)
        for k in np.flatnonzero(total > limit):
            w = int(j[starts[reach][k]])
            if w not in out:
                out[w] = [
                    f"sequential test: the first {point} votes are unlikely under the board's"
                    f" model (Fisher statistic {total[k]:.0f} > {limit:.0f})"
                ]
    return out


def reliability(
    battles: Battles,
    theta: FloatArray,
    judge: IntArray,
    judges: int,
    gold_answered: FloatArray | None = None,
    gold_right: FloatArray | None = None,
) -> FloatArray:
    """Crowd-BT agreement ``eta`` per judge (EM with the strengths held at ``theta``)."""
    decisive = battles.outcome <= B_WINS
    win = np.where(battles.outcome == A_WINS, battles.a, battles.b)[decisive]
    lose = np.where(battles.outcome == A_WINS, battles.b, battles.a)[decisive]
    s = _sigmoid(theta[win] - theta[lose])
    who = judge[decisive]
    n = np.bincount(who, minlength=judges).astype(np.float64)
    answered = np.zeros(judges) if gold_answered is None else gold_answered
    right = np.zeros(judges) if gold_right is None else gold_right
    eta = np.full(judges, PRIOR_AGREE / (PRIOR_AGREE + PRIOR_DISAGREE))
    for _ in range(EM_ROUNDS):
        e = eta[who]
        agree = e * s
        r = agree / (agree + (1 - e) * (1 - s))
        new = (PRIOR_AGREE + np.bincount(who, r, judges) + right) / (
            PRIOR_AGREE + PRIOR_DISAGREE + n + answered
        )
        if np.max(np.abs(new - eta), initial=0.0) < 1e-6:
            eta = new
            break
        eta = new
    return eta


def assess_voters(
    battles: Battles, gold: GoldAnswers | None = None, *, alpha: float = ALPHA
) -> list[VoterReport]:
    """One report per judge of the log (rows without a judge count for the model fit only).

    Order: the one-sided and too-fast tests need no model; the strengths are then fitted on the
    votes of judges they did not flag (so a rigged model does not skew everyone's p-values), and
    the sequential test and reliabilities use that fit.
    """
    if battles.judge is None:
        raise ValueError("the battle log was read without judges")
    names = list(battles.judges)
    if gold is not None:
        names += sorted(set(gold.answered) - set(names))
    count = len(names)
    has_judge = battles.judge >= 0
    voted = battles.select(has_judge)
    judge = voted.judge
    assert judge is not None
    # Each judge's votes in time order (file order breaks ties).
    order = np.lexsort((voted.time_order().argsort(), judge)).astype(np.int64)
    reasons: dict[int, list[str]] = {}
    for found in (
        one_sided(voted, judge, count, alpha),
        one_sided_group(voted, judge, count, alpha),
        too_fast(voted, judge, order),
    ):
        for k, why in found.items():
            reasons.setdefault(k, []).extend(why)
    flagged_rows = np.isin(battles.judge, np.fromiter(reasons, np.int64, len(reasons)))
    clean = battles.select(~flagged_rows)
    theta = (
        fit_bt(counts_from_battles(clean), prior=DEFAULT_PRIOR).theta
        if len(clean)
        else np.zeros(len(battles.models))
    )
    for k, why in sequential_test(vote_p_values(voted, theta), judge, order, alpha).items():
        reasons.setdefault(k, []).extend(why)
    answered = right = None
    if gold is not None:
        answered = np.array([gold.answered.get(n, 0) for n in names], dtype=np.float64)
        right = np.array([gold.right.get(n, 0) for n in names], dtype=np.float64)
    eta = reliability(voted, theta, judge, count, answered, right)
    votes = np.bincount(judge, minlength=count)
    return [
        VoterReport(
            judge=name,
            votes=int(votes[k]),
            reliability=float(eta[k]),
            flagged=k in reasons,
            reasons=reasons.get(k, []),
        )
        for k, name in enumerate(names)
    ]
