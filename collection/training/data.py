"""A dataset version's rows as training records, and its held-out split (pure: no Django).

The split is decided per row by a hash of its id, so it is the same on every run, on every host,
and whatever order the rows come in; a version's test split never trains the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from collection import exports

Row = dict[str, Any]
Message = dict[str, Any]


def is_test(row: Row, test_fraction: float) -> bool:
    digest = hashlib.sha256(f"heldout:{row.get('id', '')}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def split(rows: Iterable[Row], test_fraction: float) -> tuple[list[Row], list[Row]]:
    """(train rows, test rows). With two rows or more, at least one of each."""
    train: list[Row] = []
    test: list[Row] = []
    for row in rows:
        (test if is_test(row, test_fraction) else train).append(row)
    if not test and len(train) > 1:
        test.append(train.pop())
    if not train and len(test) > 1:
        train.append(test.pop(0))
    return train, test


def records(method: str, rows: Iterable[Row]) -> list[Row]:
    """The method's training records (the dataset exports' ``sft`` or ``dpo`` format)."""
    return list(exports.records(method, rows))


def conversation(method: str, record: Row) -> list[Message]:
    """The whole conversation a record teaches (DPO: the prompt and the chosen answer)."""
    if method == "dpo":
        return [*record["prompt"], *record["chosen"]]
    return list(record["messages"])


def prompt(method: str, record: Row) -> list[Message]:
    """The record's prompt: everything before its last answer."""
    if method == "dpo":
        return list(record["prompt"])
    return list(record["messages"][:-1])
