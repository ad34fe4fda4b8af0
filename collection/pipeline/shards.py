"""The pipeline split into shards that run in parallel, with the same output as one stream.

Steps of two kinds: a row step (normalize, pii, lang, toxicity, quality) looks at one row at a
time, so any shard can run it; a global step (dedup, neardup, downsample) compares every row with
the rows before it, so it runs in three parts: each shard computes its rows' keys (the costly part:
hashing, MinHash signatures), one pass over every shard's keys in input order decides what to drop
(the same rule the step applies as a stream), and each shard then applies those decisions.

A plan is a list of stages. Stage ``k`` of shard ``i`` reads shard ``i``'s output of stage
``k - 1``, drops what the previous stage's global step decided (``applies``), runs its row steps
and computes the keys of its own global step (``barrier``). Between two stages, the barrier's
decision pass runs once. The last stage has no barrier; its output, shard after shard, is the
pipeline's output, row for row what ``stream`` gives on the whole input.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .core import Log, Row, Step, stream

GLOBAL_STEPS = frozenset({"dedup", "neardup", "downsample"})

Decision = tuple[int, str, dict[str, Any]]


class GlobalStep(Step, Protocol):
    def keys(self, rows: Sequence[Row]) -> list[Any]: ...

    def decide(self, items: Callable[[], Iterable[tuple[Any, Any]]]) -> Iterator[Decision]: ...


@dataclass(frozen=True)
class Stage:
    steps: tuple[int, ...]  # positions in the step list of the row steps this stage runs
    barrier: int | None  # position of the global step whose keys this stage computes
    applies: int | None  # position of the global step whose decisions this stage applies

    def as_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "barrier": self.barrier, "applies": self.applies}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stage:
        return cls(tuple(data["steps"]), data["barrier"], data["applies"])


def plan(names: Sequence[str]) -> list[Stage]:
    """The stages for a step list: row steps gathered up to each global step."""
    stages: list[Stage] = []
    pending: list[int] = []
    applies: int | None = None
    for position, name in enumerate(names):
        if name in GLOBAL_STEPS:
            stages.append(Stage(tuple(pending), position, applies))
            pending, applies = [], position
        else:
            pending.append(position)
    stages.append(Stage(tuple(pending), None, applies))
    return stages


@dataclass
class StageResult:
    rows: list[Row]
    keys: list[Any] | None  # [row id, key] per row when the stage has a barrier
    stats: dict[str, dict[str, Any]]  # per step name: rows_in, rows_out, seconds, dropped, changed


def run_stage(
    stage: Stage,
    steps: Sequence[Step],
    rows: Sequence[Row],
    drops: Mapping[str, Sequence[Any]],
) -> StageResult:
    """One shard's share of one stage. ``drops`` maps a row's index in ``rows`` (as a string, as
    JSON stores it) to the ``[reason, detail]`` the previous global step decided."""
    log = Log(keep_events=False)
    if stage.applies is not None:
        applied = steps[stage.applies]
        stats = log._stats(applied.name)
        stats.rows_in = len(rows)
        kept = []
        for index, row in enumerate(rows):
            drop = drops.get(str(index))
            if drop is None:
                kept.append(row)
            else:
                stats.dropped[drop[0]] += 1
        stats.rows_out = len(kept)
        rows = kept
    out = list(stream([steps[i] for i in stage.steps], rows, log))
    keys = None
    if stage.barrier is not None:
        barrier: GlobalStep = steps[stage.barrier]  # type: ignore[assignment]
        began = time.perf_counter()
        keys = [[row.get("id"), key] for row, key in zip(out, barrier.keys(out), strict=True)]
        log._stats(barrier.name).seconds += time.perf_counter() - began
    per_step = {s.name: s.as_dict() for s in log.steps.values()}
    for entry in per_step.values():
        entry.pop("params", None)
    return StageResult(out, keys, per_step)


def decide(
    step: Step, shard_keys: Callable[[], Iterable[Sequence[Sequence[Any]]]]
) -> list[dict[str, list[Any]]]:
    """The global pass of ``step`` over every shard's keys, in shard order: per shard, the drops
    ``run_stage`` of the next stage takes. ``shard_keys`` returns a fresh iterator each call (a
    step may read the keys twice)."""
    sizes: list[int] = []

    def items() -> Iterator[tuple[Any, Any]]:
        sizes.clear()
        for keys in shard_keys():
            sizes.append(len(keys))
            yield from keys  # type: ignore[misc]  # [row id, key] pairs, as JSON stores them

    decisions = list(step.decide(items))  # type: ignore[attr-defined]
    drops: list[dict[str, list[Any]]] = [{} for _ in sizes]
    shard, start = 0, 0
    for index, reason, detail in decisions:
        while index >= start + sizes[shard]:
            start += sizes[shard]
            shard += 1
        drops[shard][str(index - start)] = [reason, detail]
    return drops


def merge_stats(
    steps: Sequence[Step], per_unit: Iterable[Mapping[str, Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """Per-step totals over every shard and stage, in the order the steps run (as ``Log.report``
    gives them for one stream)."""
    totals: dict[str, dict[str, Any]] = {}
    for step in steps:
        totals.setdefault(
            step.name,
            {
                "name": step.name,
                "params": step.params(),
                "rows_in": 0,
                "rows_out": 0,
                "seconds": 0.0,
                "dropped": Counter(),
                "changed": Counter(),
            },
        )
    for unit in per_unit:
        for name, stats in unit.items():
            total = totals[name]
            for field in ("rows_in", "rows_out", "seconds"):
                total[field] += stats.get(field, 0)
            for field in ("dropped", "changed"):
                total[field].update(stats.get(field) or {})
    for total in totals.values():
        total["seconds"] = round(total["seconds"], 3)
        total["dropped"], total["changed"] = dict(total["dropped"]), dict(total["changed"])
    return list(totals.values())


def run_sharded(steps: Sequence[Step], names: Sequence[str], shards: list[list[Row]]) -> list[Row]:
    """Every stage over in-memory shards, one after the other (the product runs the shards of a
    stage on many workers; this is the same sequence of calls, for tests and the command line)."""
    drops: list[dict[str, list[Any]]] = [{} for _ in shards]
    for stage in plan(names):
        results = [run_stage(stage, steps, rows, d) for rows, d in zip(shards, drops, strict=True)]
        shards = [result.rows for result in results]
        if stage.barrier is not None:
            keys = [r.keys or [] for r in results]
            drops = decide(steps[stage.barrier], lambda keys=keys: keys)  # type: ignore[misc]
        else:
            drops = [{} for _ in shards]
    return [row for rows in shards for row in rows]
