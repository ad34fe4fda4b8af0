"""Command line: ``python -m collection.pipeline run --steps normalize,dedup,... --input IN.jsonl
--output OUT.jsonl [--report REPORT.json]``.

Rows stream from the input to the output (JSON Lines, each row keeps its ``id`` and every other
field); the report holds each step's parameters and counts and every dropped or changed row with
its reason. A progress bar shows on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from collection.jsonl import LineError, json_objects

from . import STEPS, Log, Row, build_steps, stream


def read_rows(handle: IO[bytes]) -> Iterator[Row]:
    for number, row in json_objects(handle):
        if "id" not in row or not isinstance(row.get("messages"), list):
            raise LineError(f'line {number}: expected {{"id": ..., "messages": [...]}}')
        yield row


def _param(text: str) -> tuple[str, str, Any]:
    key, sep, value = text.partition("=")
    step, dot, name = key.partition(".")
    if not sep or not dot or not step or not name:
        raise argparse.ArgumentTypeError("expected STEP.NAME=VALUE")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value  # a bare word is a string
    return step, name, parsed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m collection.pipeline", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run steps over a JSON Lines file")
    run.add_argument(
        "--steps",
        required=True,
        help=f"comma-separated, run in the order given: {', '.join(STEPS)}",
    )
    run.add_argument("--input", required=True, help="JSON Lines rows ('-' for stdin)")
    run.add_argument("--output", required=True, help="JSON Lines kept rows ('-' for stdout)")
    run.add_argument("--report", help="JSON report: per-step counts, dropped and changed rows")
    run.add_argument(
        "--param",
        action="append",
        type=_param,
        default=[],
        metavar="STEP.NAME=VALUE",
        help="a step parameter, VALUE as JSON (e.g. neardup.threshold=0.7, lang.keep='[\"en\"]')",
    )
    run.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    params: dict[str, dict[str, Any]] = {}
    for step, name, value in args.param:
        params.setdefault(step, {})[name] = value
    try:
        steps = build_steps([s.strip() for s in args.steps.split(",") if s.strip()], params)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    log = Log()
    source = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
    sink = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
    try:
        rows: Any = read_rows(source)
        if sys.stderr.isatty() and not args.no_progress:
            from tqdm import tqdm

            rows = tqdm(rows, unit=" rows", desc="pipeline", file=sys.stderr)
        for row in stream(steps, rows, log):
            sink.write(orjson.dumps(row))
            sink.write(b"\n")
    except LineError as error:
        print(f"error: {args.input}: {error}", file=sys.stderr)
        return 1
    finally:
        if source is not sys.stdin.buffer:
            source.close()
        if sink is not sys.stdout.buffer:
            sink.close()

    report = log.report()
    if args.report:
        Path(args.report).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    for stats in report["steps"]:
        reasons = {**stats["dropped"], **stats["changed"]}
        summary = ", ".join(f"{k} {v}" for k, v in reasons.items()) or "no change"
        print(
            f"{stats['name']}: {stats['rows_in']} in, {stats['rows_out']} out ({summary})",
            file=sys.stderr,
        )
    return 0
