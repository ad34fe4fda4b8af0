"""A simulated arena with voters of known accuracy and a coordinated group, for tests and bench.

Models have Bradley-Terry strengths; pairs are drawn with Zipf-like popularity; each honest judge
casts the Bradley-Terry outcome and flips it (a and b) with probability ``1 - accuracy``. The
coordinated group recognises one mid-ranked model: its accounts vote only in battles that show
it, always for it. Gold answers are right with a judge's accuracy (the group answers at random).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from arena.ratings.battles import A_WINS, B_WINS, BOTHBAD, TIE, Battles, FloatArray

from .votes import GoldAnswers

# Judge kinds and the range their accuracy is drawn from.
KINDS: dict[str, tuple[float, float]] = {
    "honest": (0.85, 1.0),
    "careless": (0.6, 0.8),
    "spammer": (0.5, 0.5),
}


@dataclass(frozen=True)
class Simulation:
    battles: Battles
    strength: FloatArray
    target: int
    kind: tuple[str, ...]  # per judge, in ``battles.judges`` order; "attacker" for the group
    accuracy: FloatArray  # per judge: the chance a vote agrees with the model's preference
    gold: GoldAnswers

    @property
    def attackers(self) -> npt.NDArray[np.bool_]:
        return np.array([k == "attacker" for k in self.kind])


def simulate(
    *,
    battles: int,
    models: int,
    voters: dict[str, int],
    attack_votes: int = 0,
    attackers: int = 0,
    camouflage: int = 0,
    gold_per_judge: int = 0,
    activity_sigma: float = 1.0,
    seed: int = 0,
) -> Simulation:
    """``voters`` maps a kind of KINDS to a number of judges; ``battles`` honest votes are spread
    over them (log-normal activity), then ``attack_votes`` are spread evenly over ``attackers``,
    each of whom also casts ``camouflage`` ordinary votes (right nine times in ten) to blend in."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 0.8, models)
    target = int(np.argsort(strength)[models // 2])
    popularity = 1.0 / np.arange(1, models + 1) ** 0.8
    popularity = rng.permutation(popularity / popularity.sum())
    kinds = [kind for kind, count in voters.items() for _ in range(count)]
    accuracy = np.concatenate([rng.uniform(*KINDS[kind], voters[kind]) for kind in voters])
    activity = rng.lognormal(0.0, activity_sigma, len(kinds))
    judge = rng.choice(len(kinds), battles, p=activity / activity.sum())
    vote_accuracy = accuracy[judge]
    if attack_votes and camouflage:
        judge = np.r_[judge, len(kinds) + np.arange(attackers * camouflage) % attackers]
        vote_accuracy = np.r_[vote_accuracy, np.full(attackers * camouflage, 0.9)]
        battles += attackers * camouflage
    a, b = _pairs(rng, battles, popularity)
    u = rng.random(battles)
    truth = np.where(rng.random(battles) < 1 / (1 + np.exp(strength[b] - strength[a])), 0, 1)
    flip = rng.random(battles) >= vote_accuracy
    outcome = np.where(flip, 1 - truth, truth)
    outcome = np.where(u < 0.15, TIE, outcome)
    outcome = np.where(u < 0.03, BOTHBAD, outcome).astype(np.int8)
    tstamp = np.sort(rng.uniform(0.0, 1e7, battles))
    if attack_votes:
        other = popularity.copy()
        other[target] = 0.0
        opponent = rng.choice(models, attack_votes, p=other / other.sum())
        target_is_a = rng.random(attack_votes) < 0.5
        a = np.r_[a, np.where(target_is_a, target, opponent)]
        b = np.r_[b, np.where(target_is_a, opponent, target)]
        outcome = np.r_[outcome, np.where(target_is_a, A_WINS, B_WINS).astype(np.int8)]
        judge = np.r_[judge, len(kinds) + np.arange(attack_votes) % attackers]
        tstamp = np.r_[tstamp, rng.uniform(0.0, 1e7, attack_votes)]
        kinds += ["attacker"] * attackers
        accuracy = np.r_[accuracy, np.full(attackers, 0.5)]
    order = np.argsort(tstamp, kind="stable")
    names = tuple(f"judge-{k:06d}" for k in range(len(kinds)))
    right = rng.binomial(gold_per_judge, accuracy)
    return Simulation(
        battles=Battles(
            models=tuple(f"model-{k:03d}" for k in range(models)),
            a=a[order],
            b=b[order],
            outcome=outcome[order],
            tstamp=tstamp[order],
            judges=names,
            judge=judge[order].astype(np.int64),
        ),
        strength=strength,
        target=target,
        kind=tuple(kinds),
        accuracy=accuracy,
        gold=GoldAnswers(
            answered={n: gold_per_judge for n in names} if gold_per_judge else {},
            right={n: int(r) for n, r in zip(names, right, strict=True)} if gold_per_judge else {},
        ),
    )


def _pairs(
    rng: np.random.Generator, n: int, popularity: npt.NDArray[np.floating]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    m = len(popularity)
    a = rng.choice(m, n, p=popularity)
    b = rng.choice(m, n, p=popularity)
    same = a == b
    while same.any():
        b[same] = rng.choice(m, int(same.sum()), p=popularity)
        same = a == b
    return a.astype(np.int64), b.astype(np.int64)


def battle_rows(battles: Battles) -> list[dict[str, object]]:
    """The battles as rows of the public battle-log format (with judge and tstamp)."""
    winners = ("model_a", "model_b", "tie", "tie (bothbad)")
    judges = battles.judges
    judge = battles.judge if battles.judge is not None else np.full(len(battles), -1)
    tstamp = battles.tstamp if battles.tstamp is not None else np.arange(len(battles), dtype=float)
    return [
        {
            "model_a": battles.models[a],
            "model_b": battles.models[b],
            "winner": winners[o],
            "tstamp": t,
            **({"judge": judges[j]} if j >= 0 else {}),
        }
        for a, b, o, t, j in zip(
            battles.a.tolist(),
            battles.b.tolist(),
            battles.outcome.tolist(),
            tstamp.tolist(),
            judge.tolist(),
            strict=True,
        )
    ]
