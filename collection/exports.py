"""Training-data formats of a dataset version's rows, as JSON Lines or Parquet (pure: no Django).

- ``sft``: ``{"messages": [...]}``: the winning side of a battle, thumbs-up direct chats and
  reference answers a review accepted.
- ``dpo``: ``{"prompt": [...], "chosen": [{assistant}], "rejected": [{assistant}]}``, the
  conversational preference form TRL's DPOTrainer takes: battles with a winner, and every pair of
  a ranked quest's replies the crowd ranked apart.
- ``kto``: ``{"prompt": [...], "completion": [{assistant}], "label": bool}``, TRL's unpaired
  preference form: both sides of a decided battle (both bad: both False), direct chats, accepted
  reference answers (True), and a ranked quest's best reply (True) and those ranked below it.
- Synthetic rows (a version whose source is augmentation rows): an LLM judge's pairs on which
  both orders agreed give ``dpo`` records and ``kto`` records (preferred True, the other False),
  each carrying the row's ``synthetic`` mark (kind, model, prompt, generation, origin) in JSON
  Lines; the Parquet files keep each format's fixed columns.
- ``battles``: the arena's public battle-log format (model_a, model_b, winner, conversation_a/b,
  turn, anony, language, tstamp, judge).
- ``trees``: ranked quest replies as conversation trees in the shape Open-Assistant exports:
  ``{"message_tree_id", "tree_state", "prompt": {"message_id", "text", "role": "prompter",
  "replies": [{"message_id", "parent_id", "text", "role": "assistant", "rank", ...}]}}``, rank 0
  the best.

Each function maps one stored row to zero or more records, so an export streams row by row;
``parquet_chunks`` writes one row group at a time and hands back the bytes it wrote, so memory
stays flat whatever the version's size.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from itertools import combinations
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

Row = dict[str, Any]
Message = dict[str, Any]

SIDES = ("model_a", "model_b")
ROWS_PER_GROUP = 1000
MANIFEST_KEY = "ludus.manifest"


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


def _ranked(row: Row) -> tuple[list[Message], dict[str, Message]]:
    """A rank quest row's prompt and its replies by key."""
    prompt = [_plain(row["messages"])[0]]
    replies = {
        m["name"]: {"role": "assistant", "content": m["content"]}
        for m in row["messages"]
        if m["role"] == "assistant"
    }
    return prompt, replies


def _quest(row: Row, kind: str) -> bool:
    return row["source"] == "quests" and row.get("kind") == kind


def sft(row: Row) -> Iterator[Row]:
    if row["source"] == "battles" and row["winner"] in SIDES:
        yield {"messages": _side(row, row["winner"])}
    elif (row["source"] == "direct" and row["label"]) or _quest(row, "reference"):
        yield {"messages": _plain(row["messages"])}


def _judged(row: Row) -> bool:
    """A synthetic judge row with a preference (both orders agreed on one answer)."""
    return row["source"] == "synthetic" and "chosen" in row and "rejected" in row


def dpo(row: Row) -> Iterator[Row]:
    if _judged(row):
        yield {
            "prompt": _plain(row["prompt"]),
            "chosen": row["chosen"],
            "rejected": row["rejected"],
            "synthetic": row["synthetic"],
        }
        return
    if _quest(row, "rank"):
        if row["all_bad"]:
            return
        prompt, replies = _ranked(row)
        points = row["points"]
        for better, worse in combinations(row["ranking"], 2):
            if points[better] > points[worse]:
                yield {"prompt": prompt, "chosen": [replies[better]], "rejected": [replies[worse]]}
        return
    if row["source"] != "battles" or row["winner"] not in SIDES:
        return
    loser = SIDES[1 - SIDES.index(row["winner"])]
    prompt, chosen = _split(_side(row, row["winner"]))
    _, rejected = _split(_side(row, loser))
    yield {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def kto(row: Row) -> Iterator[Row]:
    if _judged(row):
        for key, label in (("chosen", True), ("rejected", False)):
            yield {
                "prompt": _plain(row["prompt"]),
                "completion": row[key],
                "label": label,
                "synthetic": row["synthetic"],
            }
        return
    if row["source"] == "direct":
        prompt, completion = _split(_plain(row["messages"]))
        yield {"prompt": prompt, "completion": completion, "label": bool(row["label"])}
        return
    if _quest(row, "reference"):
        prompt, completion = _split(_plain(row["messages"]))
        yield {"prompt": prompt, "completion": completion, "label": True}
        return
    if _quest(row, "rank"):
        prompt, replies = _ranked(row)
        points, best = row["points"], row["ranking"][0]
        for key in row["ranking"]:
            good = not row["all_bad"] and key == best
            if good or row["all_bad"] or points[key] < points[best]:
                yield {"prompt": prompt, "completion": [replies[key]], "label": good}
        return
    if row["source"] != "battles" or row["winner"] == "tie":
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


def trees(row: Row) -> Iterator[Row]:
    if not _quest(row, "rank"):
        return
    prompt_id = f"quest-{row['quest_item']}"
    lang = row.get("lang") or ""
    texts = {m["name"]: m["content"] for m in row["messages"] if m["role"] == "assistant"}
    replies = [
        {
            "message_id": f"{prompt_id}-{key}",
            "parent_id": prompt_id,
            "text": texts[key],
            "role": "assistant",
            "lang": lang,
            "rank": rank,
            "points": row["points"][key],
            "synthetic": False,
            "replies": [],
        }
        for rank, key in enumerate(row["ranking"])
    ]
    yield {
        "message_tree_id": prompt_id,
        "tree_state": "ready_for_export",
        "prompt": {
            "message_id": prompt_id,
            "parent_id": None,
            "text": row["messages"][0]["content"],
            "role": "prompter",
            "lang": lang,
            "rank": None,
            "points": None,
            "synthetic": False,
            "all_bad": bool(row["all_bad"]),
            "replies": replies,
        },
    }


FORMATS: dict[str, Callable[[Row], Iterator[Row]]] = {
    "sft": sft,
    "dpo": dpo,
    "kto": kto,
    "battles": battles,
    "trees": trees,
}


def records(format_name: str, rows: Iterable[Row]) -> Iterator[Row]:
    """Every record of ``format_name`` for ``rows``, in row order."""
    convert = FORMATS[format_name]
    for row in rows:
        yield from convert(row)


# -- Parquet ----------------------------------------------------------------------------------

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
_NODE = [
    ("message_id", pa.string()),
    ("parent_id", pa.string()),
    ("text", pa.string()),
    ("role", pa.string()),
    ("lang", pa.string()),
    ("rank", pa.int64()),
    ("points", pa.int64()),
    ("synthetic", pa.bool_()),
]
# Replies are leaves (a ranked quest has one level): their own replies are always empty.
_REPLY = pa.struct([*_NODE, ("replies", pa.list_(pa.null()))])

SCHEMAS: dict[str, pa.Schema] = {
    "sft": pa.schema([("messages", _MESSAGES)]),
    "dpo": pa.schema([("prompt", _MESSAGES), ("chosen", _MESSAGES), ("rejected", _MESSAGES)]),
    "kto": pa.schema([("prompt", _MESSAGES), ("completion", _MESSAGES), ("label", pa.bool_())]),
    "battles": pa.schema(
        [
            ("model_a", pa.string()),
            ("model_b", pa.string()),
            ("winner", pa.string()),
            ("conversation_a", _MESSAGES),
            ("conversation_b", _MESSAGES),
            ("turn", pa.int64()),
            ("anony", pa.bool_()),
            ("language", pa.string()),
            ("tstamp", pa.float64()),
            ("judge", pa.string()),
        ]
    ),
    "trees": pa.schema(
        [
            ("message_tree_id", pa.string()),
            ("tree_state", pa.string()),
            (
                "prompt",
                pa.struct([*_NODE, ("all_bad", pa.bool_()), ("replies", pa.list_(_REPLY))]),
            ),
        ]
    ),
}


class _Sink(io.RawIOBase):
    """A write-only file that keeps what was written until it is drained."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def drain(self) -> bytes:
        out = b"".join(self.parts)
        self.parts = []
        return out


def parquet_chunks(
    format_name: str,
    rows: Iterable[Row],
    *,
    manifest: dict[str, Any],
    rows_per_group: int = ROWS_PER_GROUP,
) -> Iterator[bytes]:
    """``format_name``'s records of ``rows`` as one Parquet file, yielded in pieces: a row group
    is written (and its bytes handed on) every ``rows_per_group`` records, so memory stays flat.
    The version's manifest rides in the file's metadata under ``ludus.manifest``."""
    schema = SCHEMAS[format_name].with_metadata(
        {MANIFEST_KEY: json.dumps(manifest, ensure_ascii=False, sort_keys=True)}
    )
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    batch: list[Row] = []
    try:
        for record in records(format_name, rows):
            batch.append(record)
            if len(batch) >= rows_per_group:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
                if chunk := sink.drain():
                    yield chunk
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    finally:
        writer.close()
    yield sink.drain()
