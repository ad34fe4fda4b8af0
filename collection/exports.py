"""Training-data formats of a dataset version's rows (pure: no Django).

- ``sft``: ``{"messages": [...]}``, the winning side of a battle and thumbs-up direct chats.
- ``dpo``: ``{"prompt": [...], "chosen": [{assistant}], "rejected": [{assistant}]}``, the
  conversational preference form TRL's DPOTrainer takes; battles with a winner.
- ``kto``: ``{"prompt": [...], "completion": [{assistant}], "label": bool}``, TRL's unpaired
  preference form: both sides of a decided battle (both bad: both False), and direct chats.
- ``battles``: the arena's public battle-log format (model_a, model_b, winner, conversation_a/b,
  turn, anony, language, tstamp, judge).

Each function maps one stored row to zero or more records, so an export streams row by row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

Row = dict[str, Any]
Message = dict[str, Any]

SIDES = ("model_a", "model_b")


def _side(row: Row, side: str) -> list[Message]:
    """One side's conversation out of a battle row's interleaved messages."""
    return [
        {"role": m["role"], "content": m["content"]}
        for m in row["messages"]
        if m["role"] != "assistant" or m.get("name") == side
    ]


def _split(conversation: list[Message]) -> tuple[list[Message], list[Message]]:
    """(prompt: everything up to the last user turn, completion: the answer after it)."""
    return conversation[:-1], conversation[-1:]


def _plain(messages: list[Message]) -> list[Message]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def sft(row: Row) -> Iterator[Row]:
    if row["source"] == "battles" and row["winner"] in SIDES:
        yield {"messages": _side(row, row["winner"])}
    elif row["source"] == "direct" and row["label"]:
        yield {"messages": _plain(row["messages"])}


def dpo(row: Row) -> Iterator[Row]:
    if row["source"] != "battles" or row["winner"] not in SIDES:
        return
    loser = SIDES[1 - SIDES.index(row["winner"])]
    prompt, chosen = _split(_side(row, row["winner"]))
    _, rejected = _split(_side(row, loser))
    yield {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def kto(row: Row) -> Iterator[Row]:
    if row["source"] == "direct":
        prompt, completion = _split(_plain(row["messages"]))
        yield {"prompt": prompt, "completion": completion, "label": bool(row["label"])}
        return
    if row["winner"] == "tie":
        return
    for side in SIDES:
        prompt, completion = _split(_side(row, side))
        yield {"prompt": prompt, "completion": completion, "label": row["winner"] == side}


def battles(row: Row) -> Iterator[Row]:
    if row["source"] != "battles":
        return
    yield {
        "model_a": row["model_a"],
        "model_b": row["model_b"],
        "winner": row["winner"],
        "conversation_a": _side(row, "model_a"),
        "conversation_b": _side(row, "model_b"),
        "turn": row["turn"],
        "anony": row["anony"],
        "language": row["language"],
        "tstamp": row["tstamp"],
        "judge": row["judge"],
    }


FORMATS: dict[str, Callable[[Row], Iterator[Row]]] = {
    "sft": sft,
    "dpo": dpo,
    "kto": kto,
    "battles": battles,
}


def records(format_name: str, rows: Iterable[Row]) -> Iterator[Row]:
    """Every record of ``format_name`` for ``rows``, in row order."""
    convert = FORMATS[format_name]
    for row in rows:
        yield from convert(row)
