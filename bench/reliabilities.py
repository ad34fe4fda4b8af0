"""The reliability refresh's estimation at the size it reads: contributors' reliabilities from
the last 50,000 quest answers (rankings and labels, with gold answers), in memory.

Simulated contributors of known accuracy (honest, careless, spammers, and a coordinated group
that always picks the wrong reply) answer ranking items of two replies and label items, three to
five answers per item, plus a few gold items each. Times `collection.reliabilities.estimates`
(Crowd-BT on rankings, Dawid-Skene on labels, Krippendorff's alpha per contributor) and reports
the Spearman correlation of the estimates with the true accuracies.

    .venv/bin/python bench/reliabilities.py --answers 50000 --contributors 2000

The last line is one JSON object: answers, contributors, seconds, spearman.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from _harness import setup_django


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=int, default=50_000)
    parser.add_argument("--contributors", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    setup_django()
    from scipy import stats

    from collection.reliabilities import Answers, estimates

    rng = np.random.default_rng(args.seed)
    n = args.contributors
    kind = rng.choice(4, n, p=[0.7, 0.15, 0.1, 0.05])  # honest, careless, spammer, coordinated
    accuracy = np.select(
        [kind == 0, kind == 1, kind == 2],
        [rng.uniform(0.85, 1.0, n), rng.uniform(0.6, 0.8, n), np.full(n, 0.5)],
        0.0,
    )
    rows: list[tuple[int, int, int, str, dict[str, object]]] = []
    gold: list[tuple[int, int, str, dict[str, object], bool]] = []
    item = 0
    while len(rows) < args.answers:
        item += 1
        label = item % 3 == 0
        truth = "factual_error" if rng.random() < 0.5 else "helpful"
        for user in rng.choice(n, int(rng.integers(3, 6)), replace=False).tolist():
            right = rng.random() < accuracy[user]
            if label:
                given = (
                    truth if right else ("helpful" if truth == "factual_error" else "factual_error")
                )
                answer: dict[str, object] = {
                    "labels": [given],
                    "rating": 2 if given != "helpful" else 5,
                }
                rows.append((len(rows), user, item, "label", answer))
            else:
                rows.append(
                    (len(rows), user, item, "rank", {"order": ["a", "b"] if right else ["b", "a"]})
                )
    for user in range(n):
        for _gold in range(3):
            item += 1
            gold.append((user, item, "rank", {"top": "a"}, bool(rng.random() < accuracy[user])))
    data = Answers(rows=rows, gold=gold)
    start = time.perf_counter()
    found = estimates(data)
    seconds = time.perf_counter() - start
    users = sorted(found)
    rho = float(stats.spearmanr([found[u].value for u in users], accuracy[users]).statistic)
    print(f"{len(rows)} answers from {n} contributors: {seconds:.2f} s, spearman {rho:.3f}")
    print(json.dumps({"answers": len(rows), "contributors": n, "seconds": round(seconds, 3),
                      "spearman": round(rho, 3)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
