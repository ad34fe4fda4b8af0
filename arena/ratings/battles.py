"""Battle logs: loading the arena's public JSON / JSON Lines format into numpy arrays.

One reader per format: a JSON array or JSON Lines, both decoded with orjson; the rows then go
through one validation and column-building path.

A battle log is a JSON array or JSON Lines file of objects with ``model_a``, ``model_b`` and
``winner`` (one of ``model_a``, ``model_b``, ``tie``, ``tie (bothbad)``). Optional fields are read
when present: ``weight``, ``pair_prob`` (sampling probability of the pair, for inverse-propensity
weighting), ``tstamp``, ``category`` / ``categories``, when style features are requested ``conv_metadata``
or ``conversation_a`` / ``conversation_b``, and when judges are requested ``judge`` (who voted).
Everything else is ignored.

No Django imports here: the module is used by the command line, the benchmark and the web app.
"""

from __future__ import annotations

import gc
import json
import operator
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# Outcome codes, shared with counts.py. BOTHBAD stays distinct from TIE in storage so that a method
# can treat it as a tie or exclude it.
A_WINS, B_WINS, TIE, BOTHBAD = 0, 1, 2, 3
WINNER_CODES: dict[str, int] = {
    "model_a": A_WINS,
    "model_b": B_WINS,
    "tie": TIE,
    "tie (bothbad)": BOTHBAD,
}
WINNER_NAMES: tuple[str, ...] = ("model_a", "model_b", "tie", "tie (bothbad)")
STYLE_FEATURES: tuple[str, ...] = ("length", "headers", "lists", "bold")

_OPTIONAL_NUMBERS = ("weight", "pair_prob", "tstamp")
_BLOCK_LINES = 50_000


class BattleLogError(ValueError):
    """A malformed battle row; ``line`` is 1-based (the element's line for a JSON array)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Battles:
    """Battles as columns. ``models`` is sorted; ``a``/``b`` index into it.

    ``outcome`` holds the codes A_WINS, B_WINS, TIE, BOTHBAD. Optional columns are None when no row
    had the field; NaN marks a row without it (``weight`` defaults to 1 instead).
    ``style_a``/``style_b`` are (n, 4) arrays of raw counts in STYLE_FEATURES order.
    ``judge`` indexes into ``judges`` (sorted names of who voted), -1 where a row has no judge
    (or one that is not a string); None when judges were not read.
    """

    models: tuple[str, ...]
    a: IntArray
    b: IntArray
    outcome: npt.NDArray[np.int8]
    weight: FloatArray | None = None
    pair_prob: FloatArray | None = None
    tstamp: FloatArray | None = None
    categories: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)
    style_a: FloatArray | None = None
    style_b: FloatArray | None = None
    skipped: int = 0
    skipped_examples: tuple[str, ...] = ()
    judges: tuple[str, ...] = ()
    judge: IntArray | None = None

    def __len__(self) -> int:
        return int(self.a.shape[0])

    def select(self, mask: npt.NDArray[np.bool_]) -> Battles:
        """The battles where ``mask`` is true, with the same model list."""

        def pick(x: FloatArray | None) -> FloatArray | None:
            return None if x is None else x[mask]

        return Battles(
            models=self.models,
            a=self.a[mask],
            b=self.b[mask],
            outcome=self.outcome[mask],
            weight=pick(self.weight),
            pair_prob=pick(self.pair_prob),
            tstamp=pick(self.tstamp),
            categories={k: v[mask] for k, v in self.categories.items()},
            style_a=pick(self.style_a),
            style_b=pick(self.style_b),
            skipped=self.skipped,
            skipped_examples=self.skipped_examples,
            judges=self.judges,
            judge=None if self.judge is None else self.judge[mask],
        )

    def in_category(self, category: str | None) -> Battles:
        """Battles whose category list contains ``category`` (all battles for None)."""
        if category is None:
            return self
        mask = self.categories.get(category)
        if mask is None:
            mask = np.zeros(len(self), dtype=bool)
        return self.select(mask)

    def outside(self, categories: Iterable[str]) -> Battles:
        """Battles whose category list contains none of ``categories``."""
        keep = np.ones(len(self), dtype=bool)
        for category in categories:
            mask = self.categories.get(category)
            if mask is not None:
                keep &= ~mask
        return self if keep.all() else self.select(keep)

    def time_order(self) -> IntArray:
        """Indices in time order (stable, so file order breaks ties and missing stamps)."""
        if self.tstamp is None:
            return np.arange(len(self), dtype=np.int64)
        key = np.where(np.isnan(self.tstamp), np.inf, self.tstamp)
        return np.argsort(key, kind="stable").astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Style features


_FENCE = re.compile(r"^(```|~~~).*?(?:^\1[^\n]*$|\Z)", re.M | re.S)
_TOKEN = re.compile(r"\w+|[^\w\s]")
_HEADER = re.compile(r"^ {0,3}#{1,6}(?:\s|$)", re.M)
_LIST = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+\S", re.M)
_BOLD = re.compile(r"\*\*[^*\n]+?\*\*|__[^_\n]+?__")


def style_features(text: str) -> dict[str, int]:
    """Style counts of one answer: tokens, markdown headers, list items and bold spans.

    Length counts word and punctuation tokens of the whole answer; headers, list items and bold
    are counted outside fenced code blocks, where ``#`` or ``*`` are code, not formatting.
    """
    prose = _FENCE.sub("", text)
    return {
        "length": len(_TOKEN.findall(text)),
        "headers": len(_HEADER.findall(prose)),
        "lists": len(_LIST.findall(prose)),
        "bold": len(_BOLD.findall(prose)),
    }


def _conversation_style(conversation: Any) -> list[float]:
    if not isinstance(conversation, list):
        raise ValueError("conversation must be a list of turns")
    totals = dict.fromkeys(STYLE_FEATURES, 0)
    for turn in conversation:
        if not isinstance(turn, Mapping) or turn.get("role") != "assistant":
            continue
        content = turn.get("content")
        if not isinstance(content, str):
            continue
        for key, value in style_features(content).items():
            totals[key] += value
    return [float(totals[k]) for k in STYLE_FEATURES]


def _meta_count(value: Any) -> float:
    # The public logs store header/list/bold counts as dicts of sub-counts; sum them.
    if isinstance(value, Mapping):
        return float(sum(float(v) for v in value.values()))
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("style counts must be numbers")
    return float(value)


def _metadata_style(meta: Any, side: str) -> list[float]:
    if not isinstance(meta, Mapping):
        raise ValueError("conv_metadata must be an object")
    return [
        _meta_count(meta[f"sum_assistant_{side}_tokens"]),
        _meta_count(meta[f"header_count_{side}"]),
        _meta_count(meta[f"list_count_{side}"]),
        _meta_count(meta[f"bold_count_{side}"]),
    ]


# ---------------------------------------------------------------------------------------------
# Row parsing


class _Columns:
    """Accumulates parsed rows, interning model names across blocks."""

    def __init__(self, style: bool, categories: bool = True, judges: bool = False) -> None:
        self.style = style
        self.judges = judges
        self.judge_names: dict[str, int] = {}
        self.judge: list[IntArray] = []
        # Fields no row has are not looked up row by row (set from the raw bytes of a file).
        self.categories = categories
        self.number_keys: tuple[str, ...] = _OPTIONAL_NUMBERS
        self.names: dict[str, int] = {}
        self.a: list[IntArray] = []
        self.b: list[IntArray] = []
        self.outcome: list[npt.NDArray[np.int8]] = []
        self.numbers: dict[str, list[FloatArray]] = {k: [] for k in _OPTIONAL_NUMBERS}
        self.seen_numbers: set[str] = set()
        self.cats: list[tuple[int, str]] = []
        self.style_a: list[FloatArray] = []
        self.style_b: list[FloatArray] = []
        self.n = 0
        self.skipped = 0
        self.examples: list[str] = []

    def codes(self, names: Sequence[Any]) -> IntArray:
        for name in dict.fromkeys(names):
            if name not in self.names:
                if not isinstance(name, str) or not name:
                    raise ValueError("model names must be non-empty strings")
                self.names[name] = len(self.names)
        return np.fromiter(map(self.names.__getitem__, names), np.int64, len(names))

    def judge_codes(self, judges: Sequence[Any]) -> IntArray:
        names = self.judge_names
        for name in dict.fromkeys(j for j in judges if isinstance(j, str)):
            if name not in names:
                names[name] = len(names)
        return np.fromiter(
            (names[j] if isinstance(j, str) else -1 for j in judges), np.int64, len(judges)
        )

    def add(
        self,
        a: IntArray,
        b: IntArray,
        outcome: npt.NDArray[np.int8],
        numbers: Mapping[str, FloatArray],
        cats: Sequence[tuple[int, str]],
        style: tuple[FloatArray, FloatArray] | None,
        judge: IntArray | None = None,
    ) -> None:
        count = len(a)
        if judge is not None:
            self.judge.append(judge)
        self.a.append(a)
        self.b.append(b)
        self.outcome.append(outcome)
        for key in _OPTIONAL_NUMBERS:
            if key in numbers:
                self.seen_numbers.add(key)
                self.numbers[key].append(numbers[key])
            else:
                self.numbers[key].append(np.full(count, np.nan))
        self.cats.extend((self.n + i, c) for i, c in cats)
        if style is not None:
            self.style_a.append(style[0])
            self.style_b.append(style[1])
        self.n += count

    def skip(self, error: BattleLogError) -> None:
        self.skipped += 1
        if len(self.examples) < 5:
            self.examples.append(str(error))

    def finish(self) -> Battles:
        # Sort model names so that results do not depend on the order battles arrive in.
        order = sorted(self.names, key=self.names.__getitem__)
        ranked = sorted(order)
        remap = np.empty(len(order), dtype=np.int64)
        for new, name in enumerate(ranked):
            remap[self.names[name]] = new

        def cat(parts: list[Any], dtype: Any) -> Any:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        a = remap[cat(self.a, np.int64)] if order else np.zeros(0, dtype=np.int64)
        b = remap[cat(self.b, np.int64)] if order else np.zeros(0, dtype=np.int64)
        numbers = {
            key: cat(self.numbers[key], np.float64) if key in self.seen_numbers else None
            for key in _OPTIONAL_NUMBERS
        }
        weight = numbers["weight"]
        if weight is not None:
            weight = np.where(np.isnan(weight), 1.0, weight)
        judge = None
        judge_names = tuple(sorted(self.judge_names))
        if self.judges:
            judge_remap = np.empty(len(judge_names) + 1, dtype=np.int64)
            judge_remap[-1] = -1  # code -1 (no judge) indexes the last slot
            for new, name in enumerate(judge_names):
                judge_remap[self.judge_names[name]] = new
            judge = judge_remap[cat(self.judge, np.int64)]
        categories: dict[str, npt.NDArray[np.bool_]] = {}
        for row, name in self.cats:
            mask = categories.setdefault(name, np.zeros(self.n, dtype=bool))
            mask[row] = True
        return Battles(
            models=tuple(ranked),
            a=a,
            b=b,
            outcome=cat(self.outcome, np.int8),
            weight=weight,
            pair_prob=numbers["pair_prob"],
            tstamp=numbers["tstamp"],
            categories=dict(sorted(categories.items())),
            style_a=np.concatenate(self.style_a) if self.style and self.style_a else None,
            style_b=np.concatenate(self.style_b) if self.style and self.style_b else None,
            skipped=self.skipped,
            skipped_examples=tuple(self.examples),
            judges=judge_names,
            judge=judge,
        )


def _number(value: Any, key: str) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number")
    result = float(value)
    if key == "pair_prob" and not 0.0 < result <= 1.0:
        raise ValueError("pair_prob must be in (0, 1]")
    if key == "weight" and not result >= 0.0:
        raise ValueError("weight must be non-negative")
    return result


def _numbers(values: list[Any], key: str) -> FloatArray:
    """``_number`` over a column at once (None becomes NaN)."""
    if not set(map(type, values)) <= {int, float, type(None)}:
        raise ValueError(f"{key} must be a number")
    array = np.array(values, dtype=np.float64)
    given = array[~np.isnan(array)]
    if key == "pair_prob" and not np.all((given > 0.0) & (given <= 1.0)):
        raise ValueError("pair_prob must be in (0, 1]")
    if key == "weight" and not np.all(given >= 0.0):
        raise ValueError("weight must be non-negative")
    return array


def _row_categories(row: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for key in ("category", "categories"):
        value = row.get(key)
        if value is None:
            continue
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{key} must be a string or a list of strings")
        found.extend(values)
    return list(dict.fromkeys(found))


def _row_style(row: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    meta = row.get("conv_metadata")
    if meta is not None:
        return _metadata_style(meta, "a"), _metadata_style(meta, "b")
    if "conversation_a" in row and "conversation_b" in row:
        return _conversation_style(row["conversation_a"]), _conversation_style(
            row["conversation_b"]
        )
    nan = [float("nan")] * len(STYLE_FEATURES)
    return nan, list(nan)


def _check_row(row: Any) -> None:
    if not isinstance(row, Mapping):
        raise ValueError("a battle must be a JSON object")
    for key in ("model_a", "model_b", "winner"):
        if key not in row:
            raise ValueError(f"missing field {key!r}")
    for key in ("model_a", "model_b"):
        if not isinstance(row[key], str) or not row[key]:
            raise ValueError(f"{key} must be a non-empty string")
    if row["model_a"] == row["model_b"]:
        raise ValueError("model_a and model_b are the same model")
    winner = row["winner"]
    if not isinstance(winner, str) or winner not in WINNER_CODES:
        raise ValueError(f"winner must be one of {', '.join(WINNER_NAMES)}; got {winner!r}")


def _add_rows_fast(cols: _Columns, rows: list[Any]) -> None:
    """Columnar extraction of valid rows; raises on anything unusual (the caller then goes slow)."""
    triples = list(map(operator.itemgetter("model_a", "model_b", "winner"), rows))
    if not triples:
        return
    ma, mb, win = zip(*triples, strict=True)
    a = cols.codes(ma)
    b = cols.codes(mb)
    outcome = np.fromiter(map(WINNER_CODES.__getitem__, win), np.int8, len(win))
    if np.any(a == b):
        raise ValueError("self battle")
    numbers: dict[str, FloatArray] = {}
    for key in cols.number_keys:
        values = [row.get(key) for row in rows]
        if values.count(None) < len(values):
            numbers[key] = _numbers(values, key)
    cats = (
        [(i, c) for i, row in enumerate(rows) for c in _row_categories(row)]
        if cols.categories
        else []
    )
    style = None
    if cols.style:
        pairs = [_row_style(row) for row in rows]
        style = (
            np.array([p[0] for p in pairs], dtype=np.float64).reshape(-1, len(STYLE_FEATURES)),
            np.array([p[1] for p in pairs], dtype=np.float64).reshape(-1, len(STYLE_FEATURES)),
        )
    judge = cols.judge_codes([row.get("judge") for row in rows]) if cols.judges else None
    cols.add(a, b, outcome, numbers, cats, style, judge)


def _add_rows(cols: _Columns, rows: list[Any], lines: Sequence[int], skip_bad: bool) -> None:
    """Add parsed rows; ``lines[k]`` is the line number of ``rows[k]`` for error messages."""
    try:
        _add_rows_fast(cols, rows)
        return
    except (KeyError, TypeError, ValueError):
        pass
    # Slow path: validate row by row to name the offending line, or to skip it.
    good: list[Any] = []
    for row, line in zip(rows, lines, strict=True):
        try:
            _check_row(row)
            for key in _OPTIONAL_NUMBERS:
                _number(row.get(key), key)
            _row_categories(row)
            if cols.style:
                _row_style(row)
        except (KeyError, TypeError, ValueError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
            error = BattleLogError(line, str(message))
            if not skip_bad:
                raise error from None
            cols.skip(error)
            continue
        good.append(row)
    _add_rows_fast(cols, good)


@contextmanager
def _no_gc() -> Iterator[None]:
    # Parsing allocates millions of small containers that all survive; the cyclic collector would
    # rescan them over and over (measured: it doubles parsing time) without freeing anything.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse_lines(cols: _Columns, data: bytes, skip_bad: bool) -> None:
    """JSON Lines, one object per line, decoded with orjson in blocks of lines."""
    lines = data.split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()  # the end of the last line, not a line
    for start in range(0, len(lines), _BLOCK_LINES):
        block = lines[start : start + _BLOCK_LINES]
        try:  # the common case: no blank or malformed line in the block
            _add_rows(
                cols,
                list(map(orjson.loads, block)),
                range(start + 1, start + len(block) + 1),
                skip_bad,
            )
            continue
        except orjson.JSONDecodeError:
            pass
        rows: list[Any] = []
        numbers: list[int] = []
        for number, line in enumerate(block, start + 1):
            if not line.strip():
                continue
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                error = BattleLogError(number, f"invalid JSON: {exc}")
                if not skip_bad:
                    # Report the first bad line: rows above may have bad fields.
                    _add_rows(cols, rows, numbers, skip_bad)
                    raise error from None
                cols.skip(error)
                continue
            numbers.append(number)
        _add_rows(cols, rows, numbers, skip_bad)


def _element_line(text: bytes, index: int) -> int:
    """Line number where element ``index`` of a JSON array starts (error path only)."""
    decoder = json.JSONDecoder()
    string = text.decode()
    position = string.index("[") + 1
    for _ in range(index + 1):
        while string[position] in " \t\r\n,":
            position += 1
        start = position
        _, position = decoder.raw_decode(string, position)
    return string.count("\n", 0, start) + 1


def load_battles(
    source: str | os.PathLike[str] | bytes | Iterable[Mapping[str, Any]],
    *,
    skip_bad: bool = False,
    style: bool = False,
    judges: bool = False,
) -> Battles:
    """Read battles from a path, raw bytes, or an iterable of row mappings.

    JSON array or JSON Lines is detected from the first character; both are decoded with orjson.
    Malformed rows raise BattleLogError naming the line (for mappings: the 1-based position),
    unless ``skip_bad`` is set, in which case they are skipped and counted in
    ``Battles.skipped``. ``style`` also reads style features (``conv_metadata`` or the
    conversations); ``judges`` also reads who voted (``judge``).
    """
    cols = _Columns(style, judges=judges)
    with _no_gc():
        if isinstance(source, bytes | str | os.PathLike):
            data = source if isinstance(source, bytes) else _read(source)
            cols.categories = b'"categor' in data
            cols.number_keys = tuple(k for k in _OPTIONAL_NUMBERS if f'"{k}"'.encode() in data)
            text = data.strip()
            if text.startswith(b"["):
                try:
                    rows = orjson.loads(text)
                except orjson.JSONDecodeError as exc:
                    raise BattleLogError(exc.lineno, f"invalid JSON: {exc}") from None
                if not isinstance(rows, list):
                    raise BattleLogError(1, "a JSON array of battles was expected")
                try:
                    _add_rows(cols, rows, range(1, len(rows) + 1), skip_bad)
                except BattleLogError as error:
                    line = _element_line(text, error.line - 1)
                    raise BattleLogError(line, error.reason) from None
            else:
                _parse_lines(cols, data, skip_bad)
        else:
            rows = list(source)
            _add_rows(cols, rows, range(1, len(rows) + 1), skip_bad)
        return cols.finish()


def _read(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()
