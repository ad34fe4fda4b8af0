"""The contract every pipeline step keeps, and the record of what the steps did.

A row is one conversation in the OpenAI messages shape, ``{"id": ..., "messages": [{"role",
"content"}, ...], ...}``; every other field rides along untouched. A message's content is a string
or a list of parts (``{"type": "text", "text": ...}``, ``{"type": "image_url", ...}``): steps read
and rewrite the text parts only.

A step is an object with a ``name``, a ``params()`` dict (everything needed to re-run it the same
way) and ``__call__(rows, log)``, a generator over the kept rows. Steps never mutate a row they
were given: a changed row is a new dict. Each dropped or changed row is written to the ``Log``
with a reason, so a dataset version can say what every step removed and why.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Row = dict[str, Any]
Message = dict[str, Any]


class Step(Protocol):
    name: str

    def params(self) -> dict[str, Any]: ...

    def __call__(self, rows: Iterable[Row], log: Log) -> Iterator[Row]: ...


@dataclass(frozen=True)
class Event:
    """One row dropped or changed by one step; ``detail`` says which part and how."""

    id: Any
    step: str
    action: str  # "dropped" | "changed"
    reason: str
    detail: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "step": self.step, "action": self.action, "reason": self.reason}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class StepStats:
    name: str
    params: dict[str, Any]
    rows_in: int = 0
    rows_out: int = 0
    seconds: float = 0.0  # wall time inside this step's own code (upstream steps excluded)
    dropped: Counter[str] = field(default_factory=Counter)
    changed: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": self.params,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "seconds": round(self.seconds, 3),
            "dropped": dict(self.dropped),
            "changed": dict(self.changed),
        }


class Log:
    """Counts per step and reason, and (with ``keep_events``) every event in order."""

    def __init__(self, *, keep_events: bool = True) -> None:
        self.keep_events = keep_events
        self.events: list[Event] = []
        self.steps: dict[str, StepStats] = {}

    def _stats(self, step: str) -> StepStats:
        if step not in self.steps:
            self.steps[step] = StepStats(step, {})
        return self.steps[step]

    def drop(self, step: str, row: Row, reason: str, **detail: Any) -> None:
        self._stats(step).dropped[reason] += 1
        if self.keep_events:
            self.events.append(Event(row.get("id"), step, "dropped", reason, detail or None))

    def change(self, step: str, row: Row, reason: str, **detail: Any) -> None:
        self._stats(step).changed[reason] += 1
        if self.keep_events:
            self.events.append(Event(row.get("id"), step, "changed", reason, detail or None))

    def dropped(self) -> list[Event]:
        return [e for e in self.events if e.action == "dropped"]

    def changed(self) -> list[Event]:
        return [e for e in self.events if e.action == "changed"]

    def report(self) -> dict[str, Any]:
        return {
            "steps": [s.as_dict() for s in self.steps.values()],
            "dropped": [e.as_dict() for e in self.events if e.action == "dropped"],
            "changed": [e.as_dict() for e in self.events if e.action == "changed"],
        }


def _counted(step: Step, rows: Iterable[Row], log: Log) -> Iterator[Row]:
    """Run one step, counting rows in and out and the time spent in the step's own code."""
    stats = log._stats(step.name)
    clock = time.perf_counter
    upstream = 0.0

    def feed() -> Iterator[Row]:
        nonlocal upstream
        source = iter(rows)
        while True:
            began = clock()
            try:
                row = next(source)
            except StopIteration:
                upstream += clock() - began
                return
            upstream += clock() - began
            stats.rows_in += 1
            yield row

    inner = step(feed(), log)
    while True:
        upstream = 0.0
        began = clock()
        try:
            row = next(inner)
        except StopIteration:
            stats.seconds += clock() - began - upstream
            return
        stats.seconds += clock() - began - upstream
        stats.rows_out += 1
        yield row


def stream(steps: Sequence[Step], rows: Iterable[Row], log: Log) -> Iterator[Row]:
    """Chain the steps lazily: rows flow through one at a time (a step that needs the whole input,
    such as down-sampling, spools it to a temporary file, not memory)."""
    for step in steps:
        log._stats(step.name).params = step.params()  # report steps in the order they run
        rows = _counted(step, rows, log)
    return iter(rows)


def apply(
    steps: Step | Sequence[Step], rows: Iterable[Row], *, keep_events: bool = True
) -> tuple[list[Row], Log]:
    """The kept rows, in order, and the log of what each step dropped or changed."""
    log = Log(keep_events=keep_events)
    kept = list(stream([steps] if callable(steps) else steps, rows, log))  # type: ignore[list-item]
    return kept, log


# --- text helpers shared by the steps ---------------------------------------------------------


def message_text(message: Message) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def role_text(row: Row, role: str) -> str:
    """Every ``role`` turn's text, joined by newlines."""
    return "\n".join(message_text(m) for m in row.get("messages") or () if m.get("role") == role)


def row_text(row: Row) -> str:
    return "\n".join(message_text(m) for m in row.get("messages") or ())


def map_text(row: Row, fix: Callable[[str], str]) -> Row | None:
    """A copy of ``row`` with ``fix`` applied to every text in its messages, or None when nothing
    changed (so an unchanged row keeps its identity)."""
    messages = row.get("messages") or []
    new_messages: list[Message] = []
    changed = False
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            fixed = fix(content)
            if fixed != content:
                message = {**message, "content": fixed}
                changed = True
        elif isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "text":
                    fixed = fix(str(part.get("text", "")))
                    if fixed != part.get("text"):
                        part = {**part, "text": fixed}
                        changed = True
                parts.append(part)
            message = {**message, "content": parts}
        new_messages.append(message)
    return {**row, "messages": new_messages} if changed else None
