"""Augmentation through the serving pool: synthetic rows made from a frozen version's rows.

- ``paraphrase``: the first prompt, rewritten by ``paraphrase_model``.
- ``replies``: a reply to the first prompt from each of ``reply_models`` (extra answers to pair).
- ``judge``: ``judge_model`` compares two answers to the prompt, once in each order (A/B, then
  B/A, against position bias); both verdicts are stored, and the pair's label is the answer both
  orders preferred ("inconsistent" when they disagree). The pairs are a source row's answer with
  each extra reply, or, without ``replies``, the source row's two answers (a battle's sides).

Every request goes through modelhub's ordinary path (``generations_create``: the model's queue,
its endpoints, stored replies) and the job waits for the replies in PostgreSQL. Every synthetic
row carries ``synthetic``: its kind, the model, the prompt template and the exact messages sent,
the generation that made it, and the source row. The job runs on the pipeline queue.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any

from celery import current_app
from django.db import transaction
from django.utils import timezone

from collection import datasets
from collection.models import (
    Augmentation,
    AugmentationStatus,
    AugmentedRow,
    DatasetVersion,
    VersionStatus,
)
from collection.pipeline.core import message_text
from modelhub.models import TERMINAL_STATUSES, Generation, GenerationStatus, Model
from modelhub.services import generations_create

# The task that runs a job (collection.tasks.dataset_augment), enqueued by name.
AUGMENT_TASK = "collection.tasks.dataset_augment"
KINDS = ("paraphrase", "replies", "judge")
PARAPHRASE_PROMPT = (
    "Rewrite the following request in other words, keeping its meaning and its language. "
    "Answer with the rewritten request only.\n\n{prompt}"
)
JUDGE_PROMPT = (
    "You compare two answers to the same request.\n\nRequest:\n{prompt}\n\n"
    "Answer A:\n{a}\n\nAnswer B:\n{b}\n\n"
    "Which answer is better? Reply with exactly one of: A, B, tie."
)
# How long the job waits for the pool's replies to one batch of requests, and the batch's size.
WAIT_S = 900.0
IN_FLIGHT = 64
_VERDICT = re.compile(r"\b(A|B|tie)\b", re.IGNORECASE)


class AugmentationError(Exception):
    """A job that cannot run as asked (the message is shown to staff)."""


def _model(name: str) -> Model:
    model = Model.objects.filter(name=name, enabled=True).first()
    if model is None:
        raise AugmentationError(f"No enabled model named {name!r}.")
    return model


def augmentation_create(
    *,
    version: DatasetVersion,
    kinds: Sequence[str],
    paraphrase_model: str = "",
    reply_models: Sequence[str] = (),
    judge_model: str = "",
    limit: int = 100,
) -> Augmentation:
    """A pending job on a frozen version; enqueued on the pipeline queue once committed."""
    if version.status != VersionStatus.DONE:
        raise AugmentationError("Only a frozen version can be augmented.")
    if not kinds or any(kind not in KINDS for kind in kinds):
        raise AugmentationError(f"Choose kinds among {', '.join(KINDS)}.")
    if "paraphrase" in kinds:
        _model(paraphrase_model)
    if "replies" in kinds:
        if not reply_models:
            raise AugmentationError("Name the models whose replies are wanted.")
        for name in reply_models:
            _model(name)
    if "judge" in kinds:
        _model(judge_model)
    if not 1 <= limit <= 100_000:
        raise AugmentationError("The limit is between 1 and 100000 rows.")
    with transaction.atomic():
        job = Augmentation.objects.create(
            version=version,
            kinds=[kind for kind in KINDS if kind in kinds],
            paraphrase_model=paraphrase_model if "paraphrase" in kinds else "",
            reply_models=list(reply_models) if "replies" in kinds else [],
            judge_model=judge_model if "judge" in kinds else "",
            limit=limit,
        )
        transaction.on_commit(
            lambda: current_app.send_task(
                AUGMENT_TASK, args=(job.id,), queue=datasets.PIPELINE_QUEUE
            )
        )
    return job


# -- the run ----------------------------------------------------------------------------------


class _Request:
    """One request to the pool and what the synthetic row it makes needs to know."""

    def __init__(self, model: Model, template: str, messages: list[dict[str, Any]]) -> None:
        self.model = model
        self.template = template
        self.messages = messages
        self.generation: Generation | None = None

    def mark(self, kind: str, of: Any) -> dict[str, Any]:
        assert self.generation is not None
        return {
            "kind": kind,
            "model": self.model.name,
            "prompt": self.template,
            "messages": self.messages,
            "generation": str(self.generation.id),
            "of": of,
        }


def _ask(requests: Sequence[_Request]) -> None:
    """Send the requests to the pool (committed, so the workers see them), ``IN_FLIGHT`` at a
    time so that the arena's own requests still find room, and wait until every reply is stored,
    finished or failed."""
    for start in range(0, len(requests), IN_FLIGHT):
        _ask_batch(requests[start : start + IN_FLIGHT])


def _ask_batch(requests: Sequence[_Request]) -> None:
    if not requests:
        return
    with transaction.atomic():
        generations = generations_create(requests=[(r.model, r.messages) for r in requests])
    for request, generation in zip(requests, generations, strict=True):
        request.generation = generation
    ids = [g.id for g in generations]
    deadline = time.monotonic() + WAIT_S
    pending = Generation.objects.filter(id__in=ids).exclude(status__in=TERMINAL_STATUSES)
    while pending.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pending.count()} replies still unfinished after {WAIT_S:.0f} s")
        time.sleep(0.2)
    stored = Generation.objects.in_bulk(ids)
    for request in requests:
        request.generation = stored[request.generation.id]  # type: ignore[union-attr]


def _reply(request: _Request) -> str | None:
    generation = request.generation
    if generation is None or generation.status != GenerationStatus.DONE:
        return None
    return generation.text.strip() or None


def _prompt(row: dict[str, Any]) -> str:
    for message in row.get("messages") or ():
        if message.get("role") == "user":
            return message_text(message)
    return ""


def _answers(row: dict[str, Any]) -> list[tuple[str, str]]:
    """The first answer of each side to the first prompt: ``(name, text)``."""
    seen: dict[str, str] = {}
    for message in row.get("messages") or ():
        if message.get("role") == "assistant":
            side = message.get("name")
            # A battle's sides name the model that answered (model_a -> row["model_a"]).
            name = str(row.get(side) if side in ("model_a", "model_b") else side or "")
            name = name or str(row.get("model") or "answer")
            seen.setdefault(name, message_text(message))
    return list(seen.items())


def verdict(text: str | None, *, first: str, second: str) -> str:
    """What one judge reply chose: ``first`` (answer A), ``second`` (B), "tie" or "unclear"."""
    match = _VERDICT.search(text or "")
    if match is None:
        return "unclear"
    word = match.group(1).lower()
    return {"a": first, "b": second}.get(word, "tie")


def augmentation_run(*, augmentation_id: int) -> Augmentation | None:
    """Make a job's synthetic rows. A finished job is left alone; a failed or interrupted one
    starts over (its rows so far are replaced)."""
    with transaction.atomic():
        job = Augmentation.objects.select_for_update().filter(id=augmentation_id).first()
        if job is None or job.status == AugmentationStatus.DONE:
            return job
        job.status, job.error = AugmentationStatus.RUNNING, ""
        job.save(update_fields=["status", "error"])
        AugmentedRow.objects.filter(augmentation=job).delete()
    try:
        rows, counts = _augment(job)
        with transaction.atomic():
            AugmentedRow.objects.bulk_create(
                AugmentedRow(augmentation=job, position=i, kind=row["synthetic"]["kind"], data=row)
                for i, row in enumerate(rows)
            )
            job.counts = dict(counts)
            job.status, job.finished_at = AugmentationStatus.DONE, timezone.now()
            job.save(update_fields=["counts", "status", "finished_at"])
    except Exception as error:
        Augmentation.objects.filter(id=job.id).update(
            status=AugmentationStatus.FAILED, error=f"{type(error).__name__}: {error}"
        )
        raise
    return job


def _augment(job: Augmentation) -> tuple[list[dict[str, Any]], Counter[str]]:
    sources = [
        row
        for row in islice(datasets.version_rows(version=job.version), job.limit)
        if _prompt(row).strip()
    ]
    counts: Counter[str] = Counter(read=len(sources))
    out: list[dict[str, Any]] = []

    # Round one: paraphrases and extra replies, all sent together.
    paraphrases: list[tuple[dict[str, Any], _Request]] = []
    replies: list[tuple[dict[str, Any], _Request]] = []
    if "paraphrase" in job.kinds:
        model = _model(job.paraphrase_model)
        for row in sources:
            text = PARAPHRASE_PROMPT.format(prompt=_prompt(row))
            paraphrases.append(
                (row, _Request(model, PARAPHRASE_PROMPT, [{"role": "user", "content": text}]))
            )
    if "replies" in job.kinds:
        for name in job.reply_models:
            model = _model(name)
            for row in sources:
                messages = [{"role": "user", "content": _prompt(row)}]
                replies.append((row, _Request(model, "{prompt}", messages)))
    _ask([request for _, request in (*paraphrases, *replies)])
    for row, request in paraphrases:
        paraphrased = _reply(request)
        if paraphrased is None:
            counts["failed"] += 1
            continue
        out.append(
            {
                "id": f"{row['id']}:paraphrase:{request.model.name}",
                "messages": [{"role": "user", "content": paraphrased}],
                "synthetic": request.mark("paraphrase", row["id"]),
            }
        )
        counts["paraphrase"] += 1
    pairs: list[tuple[dict[str, Any], tuple[str, str], tuple[str, str]]] = []
    for row, request in replies:
        answer = _reply(request)
        if answer is None:
            counts["failed"] += 1
            continue
        out.append(
            {
                "id": f"{row['id']}:reply:{request.model.name}",
                "messages": [
                    {"role": "user", "content": _prompt(row)},
                    {"role": "assistant", "name": request.model.name, "content": answer},
                ],
                "synthetic": request.mark("reply", row["id"]),
            }
        )
        counts["reply"] += 1
        answers = _answers(row)
        if answers:
            pairs.append((row, answers[0], (request.model.name, answer)))
    if "judge" in job.kinds:
        if "replies" not in job.kinds:
            pairs = [(row, *_answers(row)[:2]) for row in sources if len(_answers(row)) >= 2]  # type: ignore[misc]
        out.extend(_judge(job, pairs, counts))
    return out, counts


def _judge(
    job: Augmentation,
    pairs: Iterable[tuple[dict[str, Any], tuple[str, str], tuple[str, str]]],
    counts: Counter[str],
) -> list[dict[str, Any]]:
    """One preference row per pair: both orders' verdicts and the label they agree on."""
    model = _model(job.judge_model)
    asked: list[tuple[dict[str, Any], tuple[str, str], tuple[str, str], _Request, _Request]] = []
    for row, first, second in pairs:
        prompt = _prompt(row)
        orders = []
        for a, b in ((first, second), (second, first)):
            asking = JUDGE_PROMPT.format(prompt=prompt, a=a[1], b=b[1])
            orders.append(_Request(model, JUDGE_PROMPT, [{"role": "user", "content": asking}]))
        asked.append((row, first, second, orders[0], orders[1]))
    _ask([request for *_, ab, ba in asked for request in (ab, ba)])
    out = []
    for row, first, second, ab, ba in asked:
        if ab.generation is None or ba.generation is None:
            continue
        judgements = [
            {
                "order": [first[0], second[0]],
                "generation": str(ab.generation.id),
                "reply": ab.generation.text,
                "verdict": verdict(_reply(ab), first=first[0], second=second[0]),
            },
            {
                "order": [second[0], first[0]],
                "generation": str(ba.generation.id),
                "reply": ba.generation.text,
                "verdict": verdict(_reply(ba), first=second[0], second=first[0]),
            },
        ]
        verdicts = {j["verdict"] for j in judgements}
        label = verdicts.pop() if len(verdicts) == 1 else "inconsistent"
        turn = [{"role": "user", "content": _prompt(row)}]
        pair: dict[str, Any] = {
            "id": f"{row['id']}:judge:{first[0]}:{second[0]}",
            "prompt": turn,
            "messages": [
                *turn,
                {"role": "assistant", "name": first[0], "content": first[1]},
                {"role": "assistant", "name": second[0], "content": second[1]},
            ],
            "judgements": judgements,
            "label": label,
            "synthetic": {
                **ab.mark("judge", row["id"]),
                "messages": [ab.messages, ba.messages],
                "generation": [str(ab.generation.id), str(ba.generation.id)],
            },
        }
        if label in (first[0], second[0]):
            chosen, rejected = (first, second) if label == first[0] else (second, first)
            pair["chosen"] = [{"role": "assistant", "content": chosen[1]}]
            pair["rejected"] = [{"role": "assistant", "content": rejected[1]}]
        out.append(pair)
        counts["judge"] += 1
        counts[
            f"judge_{label}" if label in ("tie", "unclear", "inconsistent") else "judge_pref"
        ] += 1
    return out


# -- selectors --------------------------------------------------------------------------------


def augmentation_rows(*, augmentation: Augmentation) -> Iterable[dict[str, Any]]:
    queryset = AugmentedRow.objects.filter(augmentation=augmentation).order_by("position")
    yield from queryset.values_list("data", flat=True).iterator(chunk_size=datasets.BATCH)
