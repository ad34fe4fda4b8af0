"""Datasets: a version's manifest and its freeze sent to the pipeline workers (collection.shards
runs it in shards: sources -> pipeline -> stored rows, report, hash, datasheet), reproducing a
version from its manifest in one stream, and revoking a deleted account's sources.

A stored row is one conversation in the OpenAI messages shape with its origin alongside:

- ``battles``: one row per vote on a two-model battle. ``messages`` interleaves each user turn with
  both answers, ``{"role": "assistant", "name": "model_a" | "model_b", ...}``, so every pipeline
  step (PII redaction above all) sees every text; ``winner``, ``model_a``/``model_b`` and the rest of
  the battle-log fields ride along.
- ``direct``: one row per thumbs vote on a direct chat: ``messages`` and ``label`` (thumbs up).
- ``quests``: accepted reference answers and ranked quest replies.
- ``synthetic``: the rows augmentation jobs made from frozen versions, each keeping its
  ``synthetic`` mark (kind, model, prompt, generation, the row it was made from).

Arena data is read through arena's selectors only, up to the manifest's cut-off time, so re-running
a manifest reads the same rows and gives the same content hash.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import itertools
import json
import subprocess
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Max, ProtectedError, QuerySet
from django.utils import timezone

from arena import selectors as arena_selectors
from collection.models import (
    Assignment,
    AssignmentState,
    Augmentation,
    AugmentationStatus,
    AugmentedRow,
    Dataset,
    DatasetRow,
    DatasetRun,
    DatasetSource,
    DatasetVersion,
    QuestItem,
    QuestType,
    RevokedSource,
    VersionStatus,
)
from collection.pipeline import Log, build_steps, stream

Row = dict[str, Any]
BATCH = 500
# Freezing runs where the pipeline workers are: a worker host added is throughput added.
PIPELINE_QUEUE = "pipeline"
# The freeze task (collection.tasks.dataset_freeze, which runs collection.shards), by name.
FREEZE_TASK = "collection.tasks.dataset_freeze"
SHARD_ROWS = 2000
# A dataset's preview runs its pipeline on at most this many of the newest source rows' order.
PREVIEW_ROWS = 5000


class DatasetError(Exception):
    """A dataset that cannot be frozen as configured (the message is shown to staff)."""


# -- sources ----------------------------------------------------------------------------------


def _battle_row(entry: dict[str, Any]) -> Row:
    messages: list[dict[str, Any]] = []
    side_a, side_b = entry["conversation_a"], entry["conversation_b"]
    for index in range(0, len(side_a), 2):
        messages.append({"role": "user", "content": side_a[index]["content"]})
        for name, side in (("model_a", side_a), ("model_b", side_b)):
            messages.append(
                {"role": "assistant", "name": name, "content": side[index + 1]["content"]}
            )
    return {
        "id": f"battle:{entry['battle_id']}:{entry['turn']}",
        "source": DatasetSource.BATTLES.value,
        "messages": messages,
        **{
            key: entry[key]
            for key in ("model_a", "model_b", "winner", "turn", "anony", "language", "tstamp")
        },
        "judge": entry["judge"],
        "battle_id": entry["battle_id"],
    }


def _direct_row(entry: dict[str, Any]) -> Row:
    return {
        "id": f"direct:{entry['battle_id']}:{entry['turn']}",
        "source": DatasetSource.DIRECT.value,
        "messages": entry["conversation"],
        "model": entry["model"],
        "label": entry["up"],
        "language": entry["language"],
        "tstamp": entry["tstamp"],
        "battle_id": entry["battle_id"],
    }


def _reference_rows(*, until: datetime) -> Iterator[Row]:
    """Reference answers whose latest review (up to ``until``) accepted them: SFT examples."""
    reviews = (
        Assignment.objects.filter(
            item__type=QuestType.REVIEW,
            item__reviewed__isnull=False,
            state=AssignmentState.SUBMITTED,
            submitted_at__lte=until,
        )
        .order_by("item__reviewed_id", "submitted_at", "id")
        .values_list("item__reviewed_id", "answer")
    )
    verdicts = {
        reference_id: (answer or {}).get("verdict") for reference_id, answer in reviews.iterator()
    }
    accepted = sorted(i for i, verdict in verdicts.items() if verdict == "accept")
    references = Assignment.objects.filter(id__in=accepted).select_related("item").order_by("id")
    for reference in references.iterator(chunk_size=BATCH):
        answer: dict[str, Any] = reference.answer or {}
        yield {
            "id": f"reference:{reference.id}",
            "source": DatasetSource.QUESTS.value,
            "kind": "reference",
            "source_key": f"answer:{reference.id}",
            "messages": [
                {"role": "user", "content": reference.item.prompt},
                {"role": "assistant", "content": answer["text"]},
            ],
            "quest_item": reference.item_id,
        }


def _rank_rows(*, until: datetime) -> Iterator[Row]:
    """Rank quests that reached consensus by ``until``: the prompt with its replies (interleaved
    like a battle's, so every pipeline step sees every text) and the crowd's ranking, best first
    (by Borda points; ties in the order shown)."""
    items = (
        QuestItem.objects.filter(type=QuestType.RANK, consensus__isnull=False)
        .annotate(done_at=Max("assignments__submitted_at"))
        .filter(done_at__lte=until)
        .order_by("id")
    )
    for item in items.iterator(chunk_size=BATCH):
        consensus: dict[str, Any] = item.consensus or {}
        points = consensus.get("points", {})
        keys = [reply["key"] for reply in item.replies]
        ranking = sorted(keys, key=lambda k: (-points.get(k, 0), keys.index(k)))
        yield {
            "id": f"rank:{item.id}",
            "source": DatasetSource.QUESTS.value,
            "kind": "rank",
            "source_key": f"battle:{item.battle_id}" if item.battle_id else f"quest:{item.id}",
            "messages": [
                {"role": "user", "content": item.prompt},
                *[
                    {"role": "assistant", "name": reply["key"], "content": reply["text"]}
                    for reply in item.replies
                ],
            ],
            "ranking": ranking,
            "points": {key: points.get(key, 0) for key in keys},
            "all_bad": consensus.get("top") == "all_bad",
            "quest_item": item.id,
        }


def quest_rows(*, until: datetime) -> Iterator[Row]:
    yield from _reference_rows(until=until)
    yield from _rank_rows(until=until)


def synthetic_rows(*, until: datetime) -> Iterator[Row]:
    """The rows of augmentation jobs finished by ``until``, by job then position, each keeping
    its ``synthetic`` mark. A row answers to the source key of the frozen row it was made from,
    so revoking or rejecting that source leaves the synthetic row out too."""
    jobs = (
        Augmentation.objects.filter(status=AugmentationStatus.DONE, finished_at__lte=until)
        .order_by("id")
        .values_list("id", "version_id")
    )
    for job_id, version_id in jobs:
        made = (
            AugmentedRow.objects.filter(augmentation_id=job_id)
            .order_by("position")
            .values_list("data", flat=True)
        )
        stored = made.iterator(chunk_size=BATCH)
        while chunk := list(itertools.islice(stored, BATCH)):
            origins = {row["synthetic"]["of"] for row in chunk}
            keys = dict(
                DatasetRow.objects.filter(version_id=version_id, data__id__in=list(origins))
                .values_list("data__id", "source_key")
                .iterator()
            )
            for row in chunk:
                origin = row["synthetic"]["of"]
                yield row | {
                    "source": DatasetSource.SYNTHETIC.value,
                    "source_key": keys.get(origin, f"augmentation:{job_id}"),
                    "augmentation": job_id,
                }


def source_key(row: Row) -> str:
    """What a row came from, for revocation and review: its battle, or a quest answer's own key."""
    return row.get("source_key") or f"battle:{row['battle_id']}"


def source_rows(*, sources: Iterable[str], until: datetime) -> Iterator[Row]:
    """The rows of the named sources up to ``until``, without revoked ones or ones a curator
    rejected, in a fixed order."""
    from collection.review import edits_by_key, rejected_keys

    revoked = set(RevokedSource.objects.values_list("key", flat=True)) | rejected_keys()
    edits = edits_by_key()
    for name in sources:
        rows: Iterator[Row]
        if name == DatasetSource.BATTLES:
            rows = map(_battle_row, arena_selectors.dataset_battle_rows(until=until))
        elif name == DatasetSource.DIRECT:
            rows = map(_direct_row, arena_selectors.dataset_direct_rows(until=until))
        elif name == DatasetSource.QUESTS:
            rows = quest_rows(until=until)
        elif name == DatasetSource.SYNTHETIC:
            rows = synthetic_rows(until=until)
        else:
            raise DatasetError(f"unknown source {name!r}; known: {', '.join(DatasetSource)}")
        for row in rows:
            key = source_key(row)
            # A quest row also answers to its item's own key (a low-agreement review).
            keys = list(dict.fromkeys([key, f"quest:{row.get('quest_item', '')}"]))
            if any(k in revoked for k in keys):
                continue
            for k in keys:
                if k in edits:
                    row = _edited(row, edits[k])
            yield row


def _edited(row: Row, edits: list[dict[str, str]]) -> Row:
    """A row with a curator's redactions and edits applied to each message's text."""
    from collection.review import edits_apply

    messages = [
        m | {"content": edits_apply(m["content"], edits)} if isinstance(m["content"], str) else m
        for m in row["messages"]
    ]
    return row | {"messages": messages}


# -- hashing and the code version ---------------------------------------------------------------


def row_bytes(row: Row) -> bytes:
    """The canonical JSON Lines form of a row (what the content hash covers)."""
    return json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


class ContentHasher:
    """sha256 over the rows' canonical JSON Lines, in order (a version's content hash)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def add(self, row: Row) -> None:
        self.digest.update(row_bytes(row) + b"\n")

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def code_version() -> str:
    """The git commit of the checkout when there is one, else the installed package's version."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"git:{commit}"
    except (OSError, subprocess.SubprocessError):
        try:
            return f"ludus:{importlib.metadata.version('ludus')}"
        except importlib.metadata.PackageNotFoundError:
            return "unknown"


# -- running a manifest -----------------------------------------------------------------------


def manifest_run(manifest: dict[str, Any]) -> tuple[Iterator[Row], Log]:
    """The pipeline's kept rows for a manifest (lazily) and the log it fills as they flow."""
    steps = build_steps(manifest["steps"], manifest.get("params") or {})
    until = datetime.fromisoformat(manifest["until"])
    log = Log(keep_events=False)
    return stream(steps, source_rows(sources=manifest["sources"], until=until), log), log


def manifest_hash(manifest: dict[str, Any]) -> str:
    """Re-run a manifest and return the content hash of what it produces (reproducibility)."""
    rows, _ = manifest_run(manifest)
    hasher = ContentHasher()
    for row in rows:
        hasher.add(row)
    return hasher.hexdigest()


def dataset_preview(*, dataset: Dataset, limit: int = PREVIEW_ROWS) -> dict[str, Any]:
    """What freezing ``dataset`` now would do, counted per step, on the first ``limit`` rows its
    sources give (in the freeze's order): rows in and out of each step, and what each dropped or
    changed and why. Nothing is stored."""
    try:
        steps = build_steps(dataset.steps, dataset.params)
    except ValueError as error:
        raise DatasetError(str(error)) from None
    unknown = [s for s in dataset.sources if s not in DatasetSource.values]
    if unknown or not dataset.sources:
        raise DatasetError(f"Choose sources among {', '.join(DatasetSource.values)}.")
    read = 0

    def counted() -> Iterator[Row]:
        nonlocal read
        rows = source_rows(sources=dataset.sources, until=timezone.now())
        for row in itertools.islice(rows, limit + 1):
            read += 1
            if read > limit:
                return
            yield row

    log = Log(keep_events=False)
    kept = sum(1 for _ in stream(steps, counted(), log))
    return {
        "rows_read": min(read, limit),
        "rows_kept": kept,
        "limited": read > limit,
        "limit": limit,
        "steps": [stats.as_dict() for stats in log.steps.values()],
    }


# -- services ---------------------------------------------------------------------------------


def dataset_version_create(*, dataset: Dataset, shard_rows: int | None = None) -> DatasetVersion:
    """A new pending version of ``dataset`` whose manifest fixes everything the freeze will read
    (sources, cut-off time, steps, parameters); enqueues the freeze on the pipeline queue, which
    cuts it into shards of ``shard_rows`` rows (collection.shards; the rows, not the result,
    depend on it)."""
    try:
        build_steps(dataset.steps, dataset.params)
    except ValueError as error:
        raise DatasetError(str(error)) from None
    unknown = [s for s in dataset.sources if s not in DatasetSource.values]
    if unknown or not dataset.sources:
        raise DatasetError(f"Choose sources among {', '.join(DatasetSource.values)}.")
    with transaction.atomic():
        Dataset.objects.select_for_update().get(id=dataset.id)
        last = dataset.versions.aggregate(n=Max("number"))["n"] or 0
        version = DatasetVersion.objects.create(
            dataset=dataset,
            number=last + 1,
            manifest={
                "dataset": dataset.name,
                "sources": list(dataset.sources),
                "until": timezone.now().isoformat(),
                "steps": list(dataset.steps),
                "params": dict(dataset.params),
                "licence": dataset.licence,
                "code_version": code_version(),
            },
        )
        DatasetRun.objects.create(version=version, shard_rows=shard_rows or SHARD_ROWS)
        # By the task's name: the tasks call these services, the services import no task.
        transaction.on_commit(
            lambda: current_app.send_task(FREEZE_TASK, args=(version.id,), queue=PIPELINE_QUEUE)
        )
    return version


def dataset_version_delete(*, version: DatasetVersion) -> None:
    """Delete a version and its rows (a version being frozen, or one a fine-tuning job used,
    stays: what was trained on must remain traceable)."""
    with transaction.atomic():
        locked = DatasetVersion.objects.select_for_update().filter(id=version.id).first()
        if locked is None:
            return
        if locked.status in (VersionStatus.PENDING, VersionStatus.RUNNING):
            raise DatasetError("This version is being frozen; delete it once it is done.")
        try:
            locked.delete()  # its rows go with it
        except ProtectedError:
            raise DatasetError("A fine-tuning job used this version; it stays.") from None


def contributor_revoke(*, user_id: int) -> int:
    """Take every battle the account started or voted in out of all datasets (before the account
    is deleted: afterwards nothing ties the battles to it). Returns how many sources were revoked."""
    keys = [f"battle:{i}" for i in arena_selectors.battle_ids_of_user(user_id=user_id)]
    keys += [  # the reference answers they wrote
        f"answer:{i}"
        for i in Assignment.objects.filter(
            user_id=user_id, item__type=QuestType.REFERENCE
        ).values_list("id", flat=True)
    ]
    before = RevokedSource.objects.count()
    RevokedSource.objects.bulk_create(
        [RevokedSource(key=key) for key in keys], ignore_conflicts=True
    )
    return RevokedSource.objects.count() - before


# -- selectors --------------------------------------------------------------------------------


def version_rows(*, version: DatasetVersion) -> Iterator[Row]:
    """A frozen version's rows in order, leaving out revoked ones (flat memory)."""
    queryset = (
        DatasetRow.objects.filter(version=version)
        .exclude(source_key__in=RevokedSource.objects.values("key"))
        .order_by("position")
        .values_list("data", flat=True)
    )
    yield from queryset.iterator(chunk_size=BATCH)


def version_revoked_count(*, version: DatasetVersion) -> int:
    return DatasetRow.objects.filter(
        version=version, source_key__in=RevokedSource.objects.values("key")
    ).count()


def versions_frozen() -> QuerySet[DatasetVersion]:
    return DatasetVersion.objects.filter(status=VersionStatus.DONE).select_related("dataset")


# -- the datasheet ------------------------------------------------------------------------------


def datasheet(version: DatasetVersion) -> str:
    """A Markdown datasheet: what the version is, where its rows come from, what the pipeline
    removed or changed and why, its languages, licence and consent."""
    manifest, report = version.manifest, version.report
    lines = [
        f"# {manifest['dataset']} v{version.number}",
        "",
        f"{version.dataset.description}".strip() or "A dataset frozen from Ludus.",
        "",
        "## What",
        f"- Rows: {version.row_count} (read {version.rows_read})",
        f"- Content hash (sha256 over canonical JSON Lines): `{version.content_hash}`",
        f"- Code version: `{manifest['code_version']}`",
        "",
        "## Where from",
        *[
            f"- {DatasetSource(s).label}, cast up to {manifest['until']}"
            for s in manifest["sources"]
        ],
        "",
        "## Filters",
    ]
    for step in report.get("steps", []):
        params = json.dumps(step["params"], sort_keys=True)
        lines.append(
            f"- **{step['name']}** `{params}`: {step['rows_in']} in, {step['rows_out']} out"
        )
        for action in ("dropped", "changed"):
            for reason, n in sorted(step[action].items()):
                lines.append(f"  - {action} {n}: {reason}")
    if not report.get("steps"):
        lines.append("- none")
    lines += [
        "",
        "## Languages",
        *[f"- {lang}: {n}" for lang, n in report.get("languages", {}).items()],
        "",
        "## Licence",
        f"{manifest['licence']}.",
        "",
        "## Consent",
        "Every row comes from people who used the arena under its terms, which say that prompts,"
        " answers and votes may be published for research. Rows of a person who deletes their"
        " account are revoked: later versions leave them out, and downloads of this version do too.",
        "",
    ]
    return "\n".join(lines)
