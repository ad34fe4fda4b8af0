"""A worker killed mid-answer: the reaper ends its answer in error with the text the browsers saw
(the worker had written it only to the answer's stream), and an answer that ended never changes
again, whoever finishes it late."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from modelhub import services, streams
from modelhub.models import Generation, GenerationStatus
from modelhub.pool import redis_client
from tests.factories import ModelFactory

pytestmark = [pytest.mark.django_db(transaction=True)]


def _streaming_then_silent(deltas: list[str]) -> Generation:
    """A claimed answer whose worker streamed `deltas` and then died (no heartbeat since)."""
    generation = Generation.objects.create(model=ModelFactory.create(), messages=[], params={})
    [(claimed, _)] = services.generations_claim(generation_ids=[str(generation.id)])
    gid = str(claimed.id)
    streams.add_many(redis_client(), [(gid, seq, text) for seq, text in enumerate(deltas, 1)])
    Generation.objects.filter(id=claimed.id).update(
        heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    return claimed


def test_it_keeps_the_streamed_text_when_it_reaps_a_silent_worker() -> None:
    generation = _streaming_then_silent(["The answer ", "so far"])

    assert services.generation_reap_stale(older_than_s=30) == 1

    generation.refresh_from_db()
    assert generation.status == GenerationStatus.ERROR
    assert generation.text == "The answer so far"
    frames = streams.read_all(redis_client(), str(generation.id))
    assert [f["type"] for f in frames] == ["delta", "delta", "error"]
    assert generation.last_seq == frames[-1]["seq"] == 3


def test_it_never_changes_an_answer_once_it_ended() -> None:
    generation = _streaming_then_silent(["half an"])
    services.generation_reap_stale(older_than_s=30)

    # The worker was slow, not dead: it finishes the answer after the reaper ended it.
    late = services.generation_finish(
        generation=generation,
        status=GenerationStatus.DONE,
        seq=2,
        text="half an answer, and the rest",
        finish_reason="stop",
    )

    assert late is False
    generation.refresh_from_db()
    assert (generation.status, generation.text) == (GenerationStatus.ERROR, "half an")
    frames = streams.read_all(redis_client(), str(generation.id))
    assert [f["type"] for f in frames] == ["delta", "error"]  # no "done" after the error


def test_the_end_of_an_answer_carries_no_token_counts_or_timings() -> None:
    generation = Generation.objects.create(model=ModelFactory.create(), messages=[], params={})
    [(claimed, _)] = services.generations_claim(generation_ids=[str(generation.id)])
    services.generation_finish(
        generation=claimed,
        status=GenerationStatus.DONE,
        seq=1,
        text="hi",
        finish_reason="stop",
        fields={"ttft_ms": 12.5, "completion_tokens": 3, "prompt_tokens": 4},
    )

    [frame] = streams.read_all(redis_client(), str(generation.id))
    assert frame == {"type": "done", "finish_reason": "stop", "id": str(generation.id), "seq": 1}
    generation.refresh_from_db()  # the figures are kept, for the operator
    assert (generation.ttft_ms, generation.completion_tokens) == (12.5, 3)
