"""Battle logs: loading the arena's public JSON / JSON Lines format into numpy arrays.

A battle log is a JSON array or JSON Lines file of objects with ``model_a``, ``model_b`` and
``winner`` (one of ``model_a``, ``model_b``, ``tie``, ``tie (bothbad)``). Optional fields are read
when present: ``weight``, ``pair_prob`` (sampling probability of the pair, for inverse-propensity
weighting), ``tstamp``, ``category`` / ``categories`` and, when style features are requested,
``conv_metadata`` or ``conversation_a`` / ``conversation_b``. Everything else is ignored.

No Django imports here: the module is used by the command line, the benchmark and the web app.
"""

from __future__ import annotations

import gc
import itertools
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
        )

    def in_category(self, category: str | None) -> Battles:
        """Battles whose category list contains ``category`` (all battles for None)."""
        if category is None:
            return self
        mask = self.categories.get(category)
        if mask is None:
            mask = np.zeros(len(self), dtype=bool)
        return self.select(mask)

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

    def __init__(self, style: bool) -> None:
        self.style = style
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

    def add(
        self,
        a: IntArray,
        b: IntArray,
        outcome: npt.NDArray[np.int8],
        numbers: Mapping[str, FloatArray],
        cats: Sequence[tuple[int, str]],
        style: tuple[FloatArray, FloatArray] | None,
    ) -> None:
        count = len(a)
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
    for key in _OPTIONAL_NUMBERS:
        values = [row.get(key) for row in rows]
        if any(v is not None for v in values):
            numbers[key] = np.array([_number(v, key) for v in values], dtype=np.float64)
    cats = [(i, c) for i, row in enumerate(rows) for c in _row_categories(row)]
    style = None
    if cols.style:
        pairs = [_row_style(row) for row in rows]
        style = (
            np.array([p[0] for p in pairs], dtype=np.float64).reshape(-1, len(STYLE_FEATURES)),
            np.array([p[1] for p in pairs], dtype=np.float64).reshape(-1, len(STYLE_FEATURES)),
        )
    cols.add(a, b, outcome, numbers, cats, style)


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
    lines = data.split(b"\n")
    for start in range(0, len(lines), _BLOCK_LINES):
        block = lines[start : start + _BLOCK_LINES]
        numbered = [(start + k + 1, line) for k, line in enumerate(block) if line.strip()]
        if not numbered:
            continue
        rows: list[Any] | None = None
        try:
            parsed = json.loads(b"[" + b",".join(line for _, line in numbered) + b"]")
            # A line holding "{...},{...}" would parse as two rows: only trust a 1:1 result.
            if len(parsed) == len(numbered):
                rows = parsed
        except ValueError:
            rows = None
        if rows is None:
            rows = []
            kept: list[tuple[int, bytes]] = []
            for number, line in numbered:
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    error = BattleLogError(number, f"invalid JSON: {exc}")
                    if not skip_bad:
                        # Report the first bad line: rows above may have bad fields.
                        _add_rows(cols, rows, [k for k, _ in kept], skip_bad)
                        raise error from None
                    cols.skip(error)
                    continue
                kept.append((number, line))
            numbered = kept
        _add_rows(cols, rows, [number for number, _ in numbered], skip_bad)


# A plain line: one object that starts with the three needed fields in the order the arena exports
# them, with plain string values, then any other fields. The group spans the three values: few
# distinct ones (pairs x outcomes).
_FAST_ROW = re.compile(
    rb'^\{"model_a": ?"([^"\\\n]+", ?"model_b": ?"[^"\\\n]+", ?"winner": ?"[^"\\\n]+)"'
    rb"(?:\}|, ?\"[^\n]*\})$",
    re.M,
)


def _parse_lines_arrow(cols: _Columns, data: bytes) -> bool:
    """Read plain JSON Lines with pyarrow's JSON reader (C++, multithreaded), when installed.

    Only the needed keys are parsed (others are ignored, whatever they hold). Returns False,
    having added no rows, on anything unusual (malformed JSON, a missing or null needed field, an
    unknown winner, an optional number present on some lines only): the other readers then take
    the file and report precise line numbers.
    """
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.json as pj
    except ImportError:
        return False
    fields = [(key, pa.string()) for key in ("model_a", "model_b", "winner")]
    fields += [(key, pa.float64()) for key in _OPTIONAL_NUMBERS if f'"{key}"'.encode() in data]
    try:
        table = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(use_threads=True, block_size=1 << 24),
            parse_options=pj.ParseOptions(
                explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False
    if table.num_rows == 0 or any(table.column(name).null_count for name in table.column_names):
        return False
    model_a = table.column("model_a").combine_chunks()
    model_b = table.column("model_b").combine_chunks()
    names = pc.unique(pa.concat_arrays([model_a, model_b])).to_pylist()
    if "" in names:
        return False
    value_set = pa.array(names, pa.string())
    local_a = pc.index_in(model_a, value_set=value_set).to_numpy()
    local_b = pc.index_in(model_b, value_set=value_set).to_numpy()
    winners = list(WINNER_CODES)
    winner_ids = pc.index_in(table.column("winner").combine_chunks(), value_set=pa.array(winners))
    if winner_ids.null_count or np.any(local_a == local_b):
        return False
    numbers = {
        key: table.column(key).to_numpy().astype(np.float64)
        for key in _OPTIONAL_NUMBERS
        if key in table.column_names
    }
    if "pair_prob" in numbers and not np.all(
        (numbers["pair_prob"] > 0) & (numbers["pair_prob"] <= 1)
    ):
        return False
    if "weight" in numbers and not np.all(numbers["weight"] >= 0):
        return False
    # Only now, with every row valid, are names interned (a failed attempt leaves cols untouched).
    index = np.asarray(cols.codes(names), dtype=np.int64)
    codes = np.array([WINNER_CODES[w] for w in winners], dtype=np.int8)
    cols.add(index[local_a], index[local_b], codes[winner_ids.to_numpy()], numbers, [], None)
    return True


def _parse_lines_fast(cols: _Columns, data: bytes) -> bool:
    """Pattern-based reading of plain JSON Lines: one regular expression pass for the battles,
    one per optional number field present.

    Returns False (having added no rows) unless every line is plain (see ``_FAST_ROW``), each
    needed key occurs once per line, and each optional number field present occurs once per line
    as a plain number; the JSON parser then reads the file. Other fields are not validated here
    (``strict=True`` makes every row go through the JSON parser).
    """
    lines = data.count(b"\n") + 1
    keys = _FAST_ROW.findall(data)
    if len(keys) != lines:
        return False
    if any(data.count(b'"' + key + b'":') != lines for key in (b"model_a", b"model_b", b"winner")):
        return False
    numbers: dict[str, FloatArray] = {}
    for key in _OPTIONAL_NUMBERS:
        token = b'"' + key.encode() + b'":'
        if token not in data:
            continue
        # [^\n]* eats the rest of the line: at most one value per line.
        found = re.findall(re.escape(token) + rb" ?(-?[0-9][0-9.eE+-]*) ?[,}][^\n]*", data)
        if len(found) != lines or data.count(token) != lines:
            return False
        try:
            numbers[key] = np.fromiter(map(float, found), np.float64, lines)
        except ValueError:
            return False
        if key == "pair_prob" and not np.all((numbers[key] > 0) & (numbers[key] <= 1)):
            return False
        if key == "weight" and not np.all(numbers[key] >= 0):
            return False
    # One dict pass: each row gets the row number where its (model_a, model_b, winner) first
    # occurs; np.unique turns those into dense ids.
    first_seen: dict[bytes, int] = {}
    first = np.fromiter(map(first_seen.setdefault, keys, itertools.count()), np.int64, lines)
    distinct, row_key = np.unique(first, return_inverse=True)
    try:
        # 'A", "model_b": "B", "winner": "W' splits on quotes into A, -, -, -, B, -, -, -, W.
        parts = [keys[k].split(b'"') for k in distinct.tolist()]
        names = {raw: raw.decode() for part in parts for raw in (part[0], part[4])}
        index = dict(zip(names, cols.codes(list(names.values())).tolist(), strict=True))
        codes = np.array([(index[part[0]], index[part[4]]) for part in parts], dtype=np.int64)
        outcome_of = np.array([WINNER_CODES[part[8].decode()] for part in parts], dtype=np.int8)
    except (KeyError, UnicodeDecodeError, ValueError):
        return False
    a, b = codes[row_key, 0], codes[row_key, 1]
    if np.any(a == b):
        return False
    cols.add(a, b, outcome_of[row_key], numbers, [], None)
    return True


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
    strict: bool = False,
) -> Battles:
    """Read battles from a path, raw bytes, or an iterable of row mappings.

    JSON array or JSON Lines is detected from the first character. Malformed rows raise
    BattleLogError naming the line (for mappings: the 1-based position), unless ``skip_bad`` is
    set, in which case they are skipped and counted in ``Battles.skipped``. ``style`` also reads
    style features (``conv_metadata`` or the conversations). ``strict`` sends every row through
    the JSON parser; otherwise plain JSON Lines files (each line starting with ``model_a``,
    ``model_b``, ``winner``, as the arena exports them) are read by pattern, several times faster.
    """
    cols = _Columns(style)
    with _no_gc():
        if isinstance(source, bytes | str | os.PathLike):
            data = source if isinstance(source, bytes) else _read(source)
            text = data.strip()
            if text.startswith(b"["):
                try:
                    rows = json.loads(text)
                except ValueError as exc:
                    line = getattr(exc, "lineno", 1)
                    raise BattleLogError(line, f"invalid JSON: {exc}") from None
                if not isinstance(rows, list):
                    raise BattleLogError(1, "a JSON array of battles was expected")
                try:
                    _add_rows(cols, rows, range(1, len(rows) + 1), skip_bad)
                except BattleLogError as error:
                    line = _element_line(text, error.line - 1)
                    raise BattleLogError(line, error.reason) from None
            else:
                plain = not (strict or style or b'"categor' in text)
                if not (
                    plain and (_parse_lines_arrow(cols, text) or _parse_lines_fast(cols, text))
                ):
                    cols = _Columns(style)  # the failed fast path may have interned names
                    _parse_lines(cols, data, skip_bad)
        else:
            rows = list(source)
            _add_rows(cols, rows, range(1, len(rows) + 1), skip_bad)
        return cols.finish()


def _read(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()
