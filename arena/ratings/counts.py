"""Sufficient statistics for pairwise models: battle counts per (pair, outcome)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .battles import A_WINS, B_WINS, WINNER_CODES, Battles, FloatArray, IntArray


@dataclass(frozen=True)
class PairCounts:
    """Battle counts per unordered pair ``i < j`` and outcome, seen from ``i``'s side.

    Columns of ``n`` / ``w`` / ``w2``: i wins, j wins, tie, both bad. ``n`` counts battles; ``w``
    sums their weights (equal to ``n`` without weighting) and ``w2`` sums squared weights (for the
    sandwich estimator). Which model was shown as ``model_a`` is dropped: the models have no
    position parameter, so these are sufficient statistics for every method here.
    """

    models: tuple[str, ...]
    i: IntArray
    j: IntArray
    n: FloatArray
    w: FloatArray
    w2: FloatArray

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[Sequence[object]],
        models: Sequence[str] | None = None,
    ) -> PairCounts:
        """Build from aggregate rows ``(model_a, model_b, winner, count[, weight_sum])``.

        This is the shape of ``SELECT model_a, model_b, winner, COUNT(*) ... GROUP BY 1, 2, 3``.
        Rows may repeat a key (they are summed). ``models`` fixes the model list (e.g. to keep
        models without battles); by default it is the sorted set of names seen. Without a weight
        sum, weights are 1; with one, every battle of a row is taken to carry the row's mean weight.
        """
        parsed: list[tuple[str, str, int, float, float]] = []
        for row in rows:
            model_a, model_b, winner, count = (str(row[0]), str(row[1]), str(row[2]), row[3])
            weight_sum = row[4] if len(row) > 4 else count
            if winner not in WINNER_CODES:
                raise ValueError(f"unknown winner {winner!r}")
            if model_a == model_b:
                raise ValueError(f"self battle for {model_a!r}")
            parsed.append((model_a, model_b, WINNER_CODES[winner], _num(count), _num(weight_sum)))
        names = (
            tuple(sorted({m for r in parsed for m in r[:2]})) if models is None else tuple(models)
        )
        index = {name: k for k, name in enumerate(names)}
        if len(parsed) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return _build(names, empty, empty, empty.astype(np.int8), np.zeros(0), np.zeros(0))
        a = np.array([index[r[0]] for r in parsed], dtype=np.int64)
        b = np.array([index[r[1]] for r in parsed], dtype=np.int64)
        outcome = np.array([r[2] for r in parsed], dtype=np.int8)
        count_arr = np.array([r[3] for r in parsed])
        weight_arr = np.array([r[4] for r in parsed])
        mean_w = np.divide(
            weight_arr, count_arr, out=np.zeros_like(weight_arr), where=count_arr > 0
        )
        return _build(names, a, b, outcome, count_arr, weight_arr, count_arr * mean_w**2)

    @classmethod
    def from_codes(
        cls,
        models: Sequence[str],
        a: IntArray,
        b: IntArray,
        outcome: np.ndarray,
        count: FloatArray,
    ) -> PairCounts:
        """Build from arrays: each row's model indices into ``models``, its outcome code
        (``WINNER_CODES``) and its count (weight 1 per battle); rows may repeat a key. The
        vectorised form of ``from_rows`` for callers that keep counts as arrays."""
        count = np.asarray(count, dtype=np.float64)
        return _build(tuple(models), a, b, outcome, count, count, count)

    @property
    def battles(self) -> FloatArray:
        """Battles per model (raw counts, all outcomes)."""
        total = self.n.sum(axis=1)
        m = len(self.models)
        return (np.bincount(self.i, total, m) + np.bincount(self.j, total, m)).astype(np.float64)

    @property
    def total(self) -> float:
        return float(self.n.sum())


def _num(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"counts must be numbers, got {value!r}")
    return float(value)


def _build(
    models: tuple[str, ...],
    a: IntArray,
    b: IntArray,
    outcome: np.ndarray,
    count: FloatArray,
    weight: FloatArray,
    weight_sq: FloatArray | None = None,
) -> PairCounts:
    m = len(models)
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    flipped = a > b
    # Seen from the lower index: "model_a wins" becomes "j wins" when model_a is the higher index.
    oc = outcome.astype(np.int64)
    oc = np.where(flipped & (oc == A_WINS), B_WINS, np.where(flipped & (oc == B_WINS), A_WINS, oc))
    key = (lo * m + hi) * 4 + oc
    size = m * m * 4

    def table(values: FloatArray) -> FloatArray:
        return np.bincount(key, values, size).reshape(m * m, 4).astype(np.float64)

    n = table(count)
    w = table(weight)
    w2 = table(weight**2 if weight_sq is None else weight_sq)
    present = np.flatnonzero(n.sum(axis=1) > 0)
    return PairCounts(
        models=models,
        i=(present // m).astype(np.int64),
        j=(present % m).astype(np.int64),
        n=n[present],
        w=w[present],
        w2=w2[present],
    )


def battle_weights(battles: Battles, *, ipw: bool = False) -> FloatArray:
    """Per-battle weights, normalised to mean 1: the ``weight`` field, times 1/``pair_prob`` if ipw.

    Inverse-propensity weighting undoes adaptive sampling: a pair shown with probability p stands
    for 1/p battles of a uniform design. Raises ValueError if ipw is asked and a battle lacks p.
    """
    weight = np.ones(len(battles)) if battles.weight is None else battles.weight.copy()
    if ipw:
        if battles.pair_prob is None or np.isnan(battles.pair_prob).any():
            raise ValueError("inverse-propensity weighting needs pair_prob on every battle")
        weight = weight / battles.pair_prob
    mean = weight.mean() if len(weight) else 1.0
    return weight / mean if mean > 0 else weight


def reliability_weight(reliability: float) -> float:
    """A vote's weight from its judge's reliability (the chance they agree with the board's model,
    see ``collection.quality``): 2 * reliability - 1, clipped to [0, 1]; 1 for a perfect judge, 0
    for a coin, whose votes carry no information about the models."""
    return min(max(2.0 * reliability - 1.0, 0.0), 1.0)


def counts_from_battles(battles: Battles, *, ipw: bool = False) -> PairCounts:
    """Aggregate battles into PairCounts (weighted by ``battle_weights``)."""
    weight = battle_weights(battles, ipw=ipw)
    return _build(
        battles.models, battles.a, battles.b, battles.outcome, np.ones(len(battles)), weight
    )
