"""The filtering pipeline: pure steps over conversations, no Django.

Usage from code::

    from collection.pipeline import apply, build_steps
    kept, log = apply(build_steps(["normalize", "dedup", "pii"]), rows)
    log.report()  # per step: params, rows in/out, counts per reason; every dropped/changed row

and from the command line: ``python -m collection.pipeline run --steps ... --input IN.jsonl
--output OUT.jsonl [--report REPORT.json]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .core import Event, Log, Row, Step, apply, stream
from .dedup import Downsample, ExactDedup, NearDedup
from .normalize import Normalize
from .pii import RedactPII, redact
from .quality import QualityFilter
from .tags import DetectLanguage, TagOffensive

STEPS: dict[str, Callable[..., Step]] = {
    "normalize": Normalize,
    "dedup": ExactDedup,
    "neardup": NearDedup,
    "downsample": Downsample,
    "pii": RedactPII,
    "lang": DetectLanguage,
    "toxicity": TagOffensive,
    "quality": QualityFilter,
}


def build_steps(
    names: Sequence[str], params: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Step]:
    """Steps by name, in the order given, each built with its keyword parameters from
    ``params[name]``; an unknown name or parameter raises ValueError."""
    params = params or {}
    unknown = [name for name in [*names, *params] if name not in STEPS]
    if unknown:
        raise ValueError(f"unknown step(s) {', '.join(unknown)}; known: {', '.join(STEPS)}")
    steps = []
    for name in names:
        try:
            steps.append(STEPS[name](**params.get(name, {})))
        except TypeError as error:
            raise ValueError(f"step {name}: {error}") from None
    return steps


__all__ = [
    "STEPS",
    "DetectLanguage",
    "Downsample",
    "Event",
    "ExactDedup",
    "Log",
    "NearDedup",
    "Normalize",
    "QualityFilter",
    "RedactPII",
    "Row",
    "Step",
    "TagOffensive",
    "apply",
    "build_steps",
    "redact",
    "stream",
]
