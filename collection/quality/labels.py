"""Label quality: Dawid-Skene reliabilities and Krippendorff's alpha. No Django imports.

Dawid-Skene (1979): each contributor has a confusion matrix (the chance they give label ``l`` to an
item whose true label is ``k``); EM alternates the items' label posteriors and the matrices. Gold
items keep their known label. A contributor's reliability is their expected accuracy, the
diagonal of their matrix weighted by the label frequencies.

Krippendorff's alpha: 1 - observed / expected disagreement, from the coincidence matrix of the
values given to the same item (nominal, ordinal or interval distances); 1 is perfect agreement, 0
what chance gives.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Level = Literal["nominal", "ordinal", "interval"]
SMOOTHING = 0.5  # pseudo-counts per cell of a confusion matrix: no certain zero from few labels


@dataclass(frozen=True)
class LabelFit:
    """Dawid-Skene result: ``posterior[i, k]`` for items, ``reliability`` per contributor."""

    items: tuple[Hashable, ...]
    contributors: tuple[Hashable, ...]
    labels: tuple[Hashable, ...]
    posterior: FloatArray
    confusion: FloatArray
    reliability: FloatArray
    counts: npt.NDArray[np.int64]


def _codes(values: Sequence[Hashable]) -> tuple[tuple[Hashable, ...], npt.NDArray[np.int64]]:
    names = tuple(dict.fromkeys(values))
    index = {v: k for k, v in enumerate(names)}
    return names, np.fromiter(map(index.__getitem__, values), np.int64, len(values))


def dawid_skene(
    items: Sequence[Hashable],
    contributors: Sequence[Hashable],
    labels: Sequence[Hashable],
    *,
    gold: Mapping[Any, Any] | None = None,
    rounds: int = 100,
) -> LabelFit:
    """Fit Dawid-Skene on label triples ``(items[t], contributors[t], labels[t])``."""
    item_names, item = _codes(items)
    who_names, who = _codes(contributors)
    label_names, label = _codes(list(labels) + list((gold or {}).values()))
    label = label[: len(items)]
    n_items, n_who, n_labels = len(item_names), len(who_names), len(label_names)
    clamp = np.zeros((n_items, n_labels))
    clamped = np.zeros(n_items, dtype=bool)
    item_index = {v: k for k, v in enumerate(item_names)}
    label_index = {v: k for k, v in enumerate(label_names)}
    for name, value in (gold or {}).items():
        if name in item_index:
            clamp[item_index[name], label_index[value]] = 1.0
            clamped[item_index[name]] = True
    # Start from the vote shares of each item.
    post = np.zeros((n_items, n_labels))
    np.add.at(post, (item, label), 1.0)
    post /= post.sum(axis=1, keepdims=True)
    post[clamped] = clamp[clamped]
    confusion = np.zeros((n_who, n_labels, n_labels))
    for _ in range(rounds):
        prior = (post.sum(axis=0) + 1.0) / (n_items + n_labels)
        confusion = np.full((n_who, n_labels, n_labels), SMOOTHING)
        for given in range(n_labels):
            rows = label == given
            np.add.at(confusion[:, :, given], who[rows], post[item[rows]])
        confusion /= confusion.sum(axis=2, keepdims=True)
        log = np.tile(np.log(prior), (n_items, 1))
        np.add.at(log, item, np.log(confusion[who, :, label]))
        log -= log.max(axis=1, keepdims=True)
        new = np.exp(log)
        new /= new.sum(axis=1, keepdims=True)
        new[clamped] = clamp[clamped]
        done = np.max(np.abs(new - post)) < 1e-6
        post = new
        if done:
            break
    prior = post.mean(axis=0)
    accuracy = np.einsum("k,wkk->w", prior, confusion)
    return LabelFit(
        items=item_names,
        contributors=who_names,
        labels=label_names,
        posterior=post,
        confusion=confusion,
        reliability=accuracy,
        counts=np.bincount(who, minlength=n_who),
    )


def krippendorff_alpha(
    items: Sequence[Hashable], values: Sequence[Hashable | float], *, level: Level = "nominal"
) -> float:
    """Krippendorff's alpha of the values given to items (one entry per value given).

    Items with a single value carry no pairing and are left out. NaN when fewer than two values
    are pairable or when every pairable value is the same (no expected disagreement).
    """
    _, item = _codes(items)
    names, value = _codes(list(values))
    n_values = len(names)
    table = np.zeros((int(item.max(initial=-1)) + 1, n_values))
    np.add.at(table, (item, value), 1.0)
    per_item = table.sum(axis=1)
    table = table[per_item >= 2]
    per_item = per_item[per_item >= 2]
    if table.size == 0:
        return float("nan")
    # Coincidences: each ordered pair of values within an item, weighted 1 / (values - 1).
    weighted = table / (per_item - 1)[:, None]
    coincide = weighted.T @ table - np.diag(weighted.sum(axis=0))
    marginal = coincide.sum(axis=1)
    total = marginal.sum()
    if level == "nominal":
        dist = 1.0 - np.eye(n_values)
    elif level == "interval":
        numbers = np.array(names, dtype=np.float64)
        dist = (numbers[:, None] - numbers[None, :]) ** 2
    else:
        order = np.argsort(np.array(names, dtype=np.float64))
        ranked = np.empty(n_values)
        cum = np.cumsum(marginal[order]) - marginal[order] / 2
        ranked[order] = cum
        dist = (ranked[:, None] - ranked[None, :]) ** 2
    observed = float((coincide * dist).sum()) / total
    expected = float((np.outer(marginal, marginal) * dist).sum()) / (total * (total - 1))
    if expected == 0:
        return float("nan")
    return 1.0 - observed / expected
