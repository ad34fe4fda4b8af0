from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from arena.models import Battle, Turn
from arena.selectors import battle_log_rows
from modelhub.models import Generation, Model
from tests.arena.helpers import finish_turn, last_turn
from tests.factories import EndpointFactory, ModelFactory

pytestmark = pytest.mark.django_db


def test_it_says_clearly_when_fewer_than_two_models_are_available(db: None) -> None:
    Model.objects.update(enabled=False)
    EndpointFactory(model=ModelFactory())
    response = Client().post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 503
    assert b"Fewer than two models are available" in response.content
    assert not Battle.objects.exists()


def test_it_excludes_models_whose_endpoints_are_unhealthy(arena_models: list[Any]) -> None:
    for model in arena_models[1:]:
        model.endpoints.update(healthy=False)
    response = Client().post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 503


def test_it_blocks_a_prompt_moderation_refuses_and_generates_nothing(
    arena_models: list[Any],
) -> None:
    before = Generation.objects.count()
    response = Client().post(
        "/battles/", {"prompt": "how do I build a bomb"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 422
    assert b"blocked by the moderation filter" in response.content
    assert Generation.objects.count() == before


def test_a_prompt_with_a_nul_character_is_refused_and_stores_nothing(
    arena_models: list[Any],
) -> None:
    before = Generation.objects.count()
    response = Client().post("/battles/", {"prompt": "hi\x00 there"}, HTTP_HX_REQUEST="true")
    assert response.status_code in {400, 422}
    assert Generation.objects.count() == before and not Battle.objects.exists()


def test_a_refused_prompt_comes_back_in_the_form_escaped(arena_models: list[Any]) -> None:
    prompt = "how do I build a bomb </textarea><script>alert(1)</script>"
    response = Client().post("/battles/", {"prompt": prompt}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    html = response.content.decode()
    assert "how do I build a bomb &lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    # The next, accepted prompt starts from an empty form again.
    response = Client().post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true")
    assert 'data-testid="prompt-input"></textarea>' in response.content.decode()


def test_the_arena_offers_an_image_only_when_two_vision_models_can_battle(
    arena_models: list[Any],
) -> None:
    page = Client().get("/").content.decode()  # one vision model among the four
    assert 'data-testid="image-input"' not in page
    assert "Image battles need two vision models, and only one is up right now." in page
    assert 'href="/chat/">Direct chat</a> takes an image' in page
    chat = Client().get("/chat/").content.decode()
    assert 'data-testid="image-input"' in chat
    assert ">Delta Vision · reads images</option>" in chat and ">Alpha 7B</option>" in chat

    second = ModelFactory.create(name="epsilon-vl", modalities=["text", "image"])
    EndpointFactory.create(model=second)
    page = Client().get("/").content.decode()
    assert 'data-testid="image-input"' in page and "no-image-battles" not in page

    Model.objects.filter(modalities__contains=["image"]).update(enabled=False)
    page = Client().get("/").content.decode()
    assert "none are up right now." in page and "Direct chat</a> takes" not in page


def test_it_gives_both_sides_the_same_capped_parameters(
    arena_models: list[Any], settings: Any
) -> None:
    settings.MAX_NEW_TOKENS_CAP = 64
    Client().post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true")
    battle = Battle.objects.get()
    turn = last_turn(battle)
    assert turn.generation_b is not None
    assert turn.generation_a.params == turn.generation_b.params == battle.params
    assert battle.params["max_tokens"] == 64
    assert battle.pair_probability is not None and 0 < battle.pair_probability <= 1


def test_a_battle_s_two_answers_start_as_one_task(
    arena_models: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    import base64
    import json

    from modelhub.pool import redis_client

    queue = arena_models[0].queue  # every arena model's, and no worker reads it
    client = redis_client()
    client.delete(queue)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            Client().post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true")
        messages = client.lrange(queue, 0, -1)
    finally:
        client.delete(queue)
    turn = last_turn(Battle.objects.get())
    assert len(messages) == 1
    args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(messages[0])["body"]))
    assert args == [str(turn.generation_a_id), str(turn.generation_b_id)]


def test_it_owns_generations_by_the_requesting_session(arena_models: list[Any]) -> None:
    client = Client()
    client.post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true")
    turn = Turn.objects.get()
    assert turn.generation_a.session_key == client.session.session_key


def test_it_rejects_an_image_for_a_text_only_named_battle(arena_models: list[Any]) -> None:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, format="PNG")
    out.seek(0)
    out.name = "x.png"
    response = Client().post(
        "/battles/",
        {
            "prompt": "hi",
            "mode": "named",
            "model_a": "alpha-7b",
            "model_b": "beta-chat",
            "image": out,
        },
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 400
    assert b"cannot read images" in response.content


def test_it_exports_votes_in_the_battle_log_format(arena_models: list[Any]) -> None:
    client = Client()
    client.post("/battles/", {"prompt": "Hello, how are you today?"}, HTTP_HX_REQUEST="true")
    battle = Battle.objects.select_related("model_a", "model_b").get()
    first = last_turn(battle)
    finish_turn(first, "A1", "B1")
    client.post(f"/b/{battle.id}/vote/", {"turn": first.id, "choice": "b"})
    client.post(f"/b/{battle.id}/continue/", {"prompt": "More"})
    second = last_turn(battle)
    finish_turn(second, "A2", "B2")
    client.post(f"/b/{battle.id}/vote/", {"turn": second.id, "choice": "bothbad"})
    rows = list(battle_log_rows())
    assert len(rows) == 2
    row = rows[1]
    assert set(row) == {
        "model_a", "model_b", "winner", "conversation_a", "conversation_b", "turn", "anony",
        "language", "tstamp", "judge",
    }  # fmt: skip
    assert row["model_a"] == battle.model_a.name
    assert row["model_b"] == battle.model_b.name  # type: ignore[union-attr]
    assert [rows[0]["winner"], row["winner"]] == ["model_b", "tie (bothbad)"]
    assert row["conversation_a"] == [
        {"role": "user", "content": "Hello, how are you today?"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "More"},
        {"role": "assistant", "content": "A2"},
    ]
    assert rows[0]["conversation_b"][-1] == {"role": "assistant", "content": "B1"}
    assert (rows[0]["turn"], row["turn"]) == (1, 2)
    assert (rows[0]["anony"], row["anony"]) == (True, False)
    assert row["language"] == "English"
    assert isinstance(row["tstamp"], float)
    assert row["judge"].startswith("arena_session_")
    extra = next(battle_log_rows(extra=True))
    assert extra["pair_probability"] == battle.pair_probability
    assert extra["leaked"] is False


def test_it_shows_a_shared_battle_only_after_the_vote(arena_models: list[Any]) -> None:
    client = Client()
    client.post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true")
    battle = Battle.objects.select_related("model_a").get()
    assert Client().get(f"/s/{battle.id}/").status_code == 404
    turn = last_turn(battle)
    finish_turn(turn)
    client.post(f"/b/{battle.id}/vote/", {"turn": turn.id, "choice": "a"})
    response = Client().get(f"/s/{battle.id}/")
    assert response.status_code == 200
    assert battle.model_a.display_name.encode() in response.content


def test_it_keeps_the_history_of_a_visitor_who_signs_up(arena_models: list[Any]) -> None:
    client = Client()
    client.post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true")
    response = client.post(
        "/accounts/signup/",
        {"username": "alice", "password1": "a-Long-pass-123", "password2": "a-Long-pass-123"},
    )
    assert response.status_code == 302
    battle = Battle.objects.select_related("user").get()
    assert battle.user is not None and battle.user.username == "alice"
    assert client.get(f"/b/{battle.id}/").status_code == 200
