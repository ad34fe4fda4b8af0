"""The vote endpoint on the event loop (arena.fastvote): through the ASGI app the product serves,
it answers anonymous htmx votes exactly as the Django view does, with the same refusals, and hands
everything else to Django before counting or storing anything."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from arena import fastvote, ratelimit, services
from arena.models import Battle, Turn, Vote
from config.asgi import application
from tests.arena.conftest import finish_turn, last_turn
from tests.conftest import run_async

pytestmark = pytest.mark.django_db(transaction=True)  # the event loop's pool sees committed rows

CSRF = secrets.token_hex(16)  # a 32-character secret, as Django's cookie holds


def _battle(client: Client, finished: bool = True) -> tuple[Battle, Turn]:
    response = client.post("/battles/", {"prompt": "hello there"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200, response.content
    battle = Battle.objects.order_by("-created_at").first()
    assert battle is not None
    turn = last_turn(battle)
    if finished:
        finish_turn(turn)
    return battle, turn


def _session(client: Client) -> str:
    return client.cookies["sessionid"].value


async def _django_must_not_answer(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError(f"handed to Django: {scope['path']}")


class _Recorder:
    """Stands in for Django behind the fast path: records what was handed over."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"django"})


def _post(
    app: Any,
    battle: Battle,
    data: dict[str, Any],
    *,
    session: str,
    csrf_cookie: str = CSRF,
    csrf_header: str = CSRF,
    htmx: bool = True,
) -> httpx.Response:
    headers = {"X-CSRFToken": csrf_header} if csrf_header else {}
    if htmx:
        headers["HX-Request"] = "true"
    cookies = {"sessionid": session} | ({"csrftoken": csrf_cookie} if csrf_cookie else {})

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver", cookies=cookies
            ) as client:
                return await client.post(f"/b/{battle.id}/vote/", data=data, headers=headers)
        finally:
            await fastvote.close()

    return run_async(go())


def test_it_is_on_with_the_project_settings_and_off_with_other_middleware(settings: Any) -> None:
    assert fastvote.enabled()
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]
    assert not fastvote.enabled()


def test_it_answers_an_anonymous_htmx_vote_as_the_django_view_does(
    arena_models: list[Any],
) -> None:
    client = Client()
    by_django, turn_django = _battle(client)
    on_loop, turn_loop = _battle(client)
    expected = client.post(
        f"/b/{by_django.id}/vote/", {"turn": turn_django.id, "choice": "b"}, HTTP_HX_REQUEST="true"
    )
    fast = fastvote.VoteFastPath(_django_must_not_answer)
    response = _post(fast, on_loop, {"turn": turn_loop.id, "choice": "b"}, session=_session(client))
    assert (response.status_code, expected.status_code) == (200, 200)
    assert on_loop.model_a.display_name in response.text
    # Same page fragment (but for the battle's own names and ids), same headers.
    assert _normalised(response.text, on_loop) == _normalised(expected.content.decode(), by_django)
    expected_headers = {k.lower(): v for k, v in expected.headers.items()}
    assert {k: v for k, v in response.headers.items() if k != "content-length"} == {
        k: v for k, v in expected_headers.items() if k != "content-length"
    }
    vote = Vote.objects.get(battle=on_loop)
    twin = Vote.objects.get(battle=by_django)
    assert (vote.choice, vote.anony, vote.leaked, vote.user_id) == ("b", True, False, None)
    assert (vote.session_key, vote.ip_hash) == (twin.session_key, twin.ip_hash)
    assert vote.ip_hash == services.ip_hash("127.0.0.1")
    assert vote.time_to_vote_ms is not None


def _normalised(html: str, battle: Battle) -> str:
    html = html.replace(str(battle.id), "<battle>")
    for side, model in (("a", battle.model_a), ("b", battle.model_b)):
        assert model is not None
        html = html.replace(model.display_name, f"<name-{side}>")
        html = html.replace(model.organization, f"<org-{side}>")
    return re.sub(r"\s+", " ", html)


def test_it_refuses_each_abuse_with_the_views_status_and_stores_nothing_extra(
    arena_models: list[Any], settings: Any
) -> None:
    fast = fastvote.VoteFastPath(_django_must_not_answer)
    alice = Client()
    battle, turn = _battle(alice, finished=False)
    session = _session(alice)
    early = _post(fast, battle, {"turn": turn.id, "choice": "a"}, session=session)
    assert (early.status_code, early.text) == (
        425,
        "Wait until both answers are complete before voting.",
    )
    finish_turn(turn)
    assert (
        _post(fast, battle, {"turn": turn.id, "choice": "up"}, session=session).status_code == 400
    )
    mallory = Client()
    _battle(mallory)  # mallory has a session of her own
    theirs = _post(fast, battle, {"turn": turn.id, "choice": "a"}, session=_session(mallory))
    assert theirs.status_code == 404
    assert _post(fast, battle, {"turn": turn.id, "choice": "a"}, session=session).status_code == 200
    replay = _post(fast, battle, {"turn": turn.id, "choice": "b"}, session=session)
    assert (replay.status_code, replay.text) == (409, "This answer already has your vote.")
    assert list(Vote.objects.values_list("battle_id", "choice")) == [(battle.id, "a")]

    settings.ARENA_VOTES_PER_MINUTE = 1
    other, other_turn = _battle(alice)
    too_fast = _post(fast, other, {"turn": other_turn.id, "choice": "a"}, session=session)
    assert too_fast.status_code == 429
    assert not Vote.objects.filter(battle=other).exists()


def test_it_hands_django_every_request_it_does_not_answer_before_counting_it(
    arena_models: list[Any],
) -> None:
    client = Client()
    battle, turn = _battle(client)
    session = _session(client)
    form = {"turn": turn.id, "choice": "a"}
    user = get_user_model().objects.create_user("alice", password="pw-alice-123")
    signed_in = Client()
    signed_in.force_login(user)
    cases = {
        "plain form post": _post_with(form, session=session, htmx=False),
        "CSRF header wrong": _post_with(form, session=session, csrf_header=secrets.token_hex(16)),
        "no CSRF cookie": _post_with(form, session=session, csrf_cookie=""),
        "no CSRF token": _post_with(form, session=session, csrf_header=""),
        "session not in the cache": _post_with(form, session=secrets.token_hex(16)),
        "signed-in user": _post_with(form, session=_session(signed_in)),
        "bad form": _post_with({"turn": "x", "choice": "a"}, session=session),
    }
    for case, post in cases.items():
        recorder = _Recorder()
        response = post(fastvote.VoteFastPath(recorder), battle)
        assert (response.status_code, recorder.paths) == (299, [f"/b/{battle.id}/vote/"]), case
    assert not Vote.objects.exists()
    counted = ratelimit._client().keys("ludus:rl:vote:*")
    assert counted == []


def _post_with(data: dict[str, Any], **kwargs: Any) -> Any:
    return lambda app, battle: _post(app, battle, data, **kwargs)


def test_the_served_app_answers_votes_and_django_answers_the_rest(arena_models: list[Any]) -> None:
    """config.asgi.application, as uvicorn serves it: a vote on the loop; a CSRF failure, a plain
    form post and a signed-in user's vote through Django."""
    client = Client()
    battle, turn = _battle(client)
    session = _session(client)
    forged = _post(application, battle, {"turn": turn.id, "choice": "a"}, session=session,
                   csrf_header=secrets.token_hex(16))  # fmt: skip
    assert forged.status_code == 403
    assert not Vote.objects.exists()
    assert (
        _post(application, battle, {"turn": turn.id, "choice": "tie"}, session=session).status_code
        == 200
    )
    assert Vote.objects.get().choice == "tie"

    second, second_turn = _battle(client)
    plain = _post(application, second, {"turn": second_turn.id, "choice": "a"}, session=session,
                  htmx=False)  # fmt: skip
    assert (plain.status_code, plain.headers["location"]) == (302, f"/b/{second.id}/")

    user = get_user_model().objects.create_user("bob", password="pw-bob-12345")
    signed_in = Client()
    signed_in.force_login(user)
    own, own_turn = _battle(signed_in)
    response = _post(
        application, own, {"turn": own_turn.id, "choice": "b"}, session=_session(signed_in)
    )
    assert response.status_code == 200
    assert Vote.objects.get(battle=own).user_id == user.id
