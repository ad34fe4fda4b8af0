"""Hostile input, tried as a hostile visitor would: markup in prompts, answers and model names,
Markdown link and image tricks, oversized and malformed bodies, hostile images, forged and foreign
IDs, replayed votes, requests without CSRF, and API calls with bad tokens. Each gets a precise 4xx
or a safe render, and what was stored before is still there, unchanged."""

from __future__ import annotations

import io
import re
import struct
import threading
import uuid
import zlib
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import close_old_connections
from django.test import Client
from PIL import Image

from arena import apitokens
from arena.leaderboard import services as leaderboard_services
from arena.models import ApiToken, Battle, Turn, Vote
from modelhub.models import Generation, GenerationStatus, Model
from tests.arena.helpers import finish_turn, last_turn
from tests.factories import EndpointFactory, ModelFactory
from tests.helpers import wait_for
from tests.leaderboard.votes import simulate_votes

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"


def _counts() -> dict[str, int]:
    return {
        "battles": Battle.objects.count(),
        "turns": Turn.objects.count(),
        "generations": Generation.objects.count(),
        "votes": Vote.objects.count(),
        "tokens": ApiToken.objects.count(),
    }


def _as(user: User | None, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


def _start(client: Client, prompt: str = "hello there", **extra: Any) -> Any:
    return client.post("/battles/", {"prompt": prompt, **extra}, HTTP_HX_REQUEST="true")


def _battle(client: Client, prompt: str = "hello there") -> Battle:
    response = _start(client, prompt)
    assert response.status_code == 200, response.content
    battle = Battle.objects.order_by("-created_at").first()
    assert battle is not None
    return battle


def _finished_battle(client: Client, text_a: str = "answer a", text_b: str = "answer b") -> Battle:
    battle = _battle(client)
    finish_turn(last_turn(battle), text_a, text_b)
    return battle


def _vote(client: Client, battle: Battle, turn_id: int, choice: str = "a") -> Any:
    return client.post(
        f"/b/{battle.id}/vote/", {"turn": turn_id, "choice": choice}, HTTP_HX_REQUEST="true"
    )


def _no_live_markup(html: str, *, page: bool = False) -> None:
    """Nothing in ``html`` that a browser would run or load from hostile text: no script or
    markup-bearing element, no on* attribute, no javascript:, vbscript: or data: URL in an
    attribute. A whole page has its own scripts, forms and plots: there only the payloads' own
    elements count."""
    lowered = html.lower()
    tags: tuple[str, ...] = ("<script>alert", "<img", "<svg onload", "<iframe", "<object", "<embed")
    if not page:
        tags += ("<script", "<svg", "<style", "<form")
    for tag in tags:
        assert tag not in lowered, tag
    assert not re.search(r"<[^>]*\son\w+\s*=", lowered), "an on* attribute survived"
    # data:, (empty) is the arena page's own favicon, which loads nothing.
    url = r"(href|src|action)\s*=\s*[\"']?\s*(javascript:|vbscript:|data:(?!,[\"']))"
    assert not re.search(url, lowered), "a script or data URL survived"


# -- markup in prompts --------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        f"hi {SCRIPT}",
        'hi <img src=x onerror="alert(1)">',
        'hi "><svg onload=alert(1)>',
        "hi </textarea><script>alert(1)</script>",
    ],
    ids=["script", "img-onerror", "attribute-break", "textarea-break"],
)
def test_it_stores_markup_in_a_prompt_as_typed_and_renders_it_inert(
    arena_models: list[Model], bob: User, prompt: str
) -> None:
    client = _as(bob)
    battle = _battle(client, prompt)
    assert last_turn(battle).prompt == prompt  # stored as typed: the dataset keeps what was asked
    page = client.get(f"/b/{battle.id}/").content.decode()
    assert "alert(1)" in page  # shown, as text
    _no_live_markup(page, page=True)


def test_it_refuses_an_oversized_prompt_with_400_and_stores_nothing(
    arena_models: list[Model], bob: User
) -> None:
    before = _counts()
    response = _start(_as(bob), "x" * 8001)
    assert response.status_code == 400
    assert _counts() == before


@pytest.mark.parametrize("control", ["\x00", "\x1b[2J", "\x08\x07", "\u202e"])
def test_a_prompt_with_control_characters_is_refused_or_kept_inert(
    arena_models: list[Model], bob: User, control: str
) -> None:
    """NUL cannot be stored (PostgreSQL text): 400 and nothing stored. Other control characters are
    text: stored as typed, and rendered only escaped."""
    before = _counts()
    client = _as(bob)
    prompt = f"hi{control}there {SCRIPT}"
    response = _start(client, prompt)
    if control == "\x00":
        assert response.status_code == 400
        assert _counts() == before
        return
    assert response.status_code == 200
    battle = Battle.objects.get()
    assert last_turn(battle).prompt == prompt
    _no_live_markup(client.get(f"/b/{battle.id}/").content.decode(), page=True)


def test_invalid_utf8_in_a_form_field_never_reaches_the_database_as_bytes(
    arena_models: list[Model], bob: User
) -> None:
    client = _as(bob)
    body = b"prompt=hi+%FF%FE+there"  # percent-encoded bytes that are not UTF-8
    response = client.post(
        "/battles/", body, content_type="application/x-www-form-urlencoded", HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert last_turn(Battle.objects.get()).prompt == "hi \ufffd\ufffd there"


def test_a_json_body_with_invalid_utf8_is_refused_with_400_and_stores_nothing(
    arena_models: list[Model], bob: User
) -> None:
    """The arena's endpoints take forms: a JSON body (here not even UTF-8) is no prompt."""
    before = _counts()
    response = _as(bob).post(
        "/battles/", b'{"prompt": "hi \xff\xfe"}', content_type="application/json"
    )
    assert response.status_code == 400
    assert _counts() == before


def test_a_vote_with_invalid_utf8_and_control_characters_is_refused_with_400(
    arena_models: list[Model], bob: User
) -> None:
    client = _as(bob)
    battle = _finished_battle(client)
    turn = last_turn(battle)
    for body in (f"turn={turn.id}&choice=%FF%FE", f"turn={turn.id}%00&choice=a"):
        response = client.post(
            f"/b/{battle.id}/vote/", body, content_type="application/x-www-form-urlencoded"
        )
        assert response.status_code == 400, body
    assert not Vote.objects.exists()


# -- markup and tricks in model output ------------------------------------------------------

HOSTILE_ANSWERS = {
    "script": f"Here you go {SCRIPT} done",
    "img-onerror": 'Look <img src=x onerror="alert(1)">',
    "raw-anchor-onclick": '<a href="https://example.com" onclick="alert(1)">x</a>',
    "svg-onload": "<svg onload=alert(1)></svg>",
    "iframe": '<iframe src="https://example.com"></iframe>',
    "javascript-link": "[click me](javascript:alert(1))",
    "javascript-link-mixed-case": "[click me](JaVaScRiPt:alert(1))",
    "javascript-link-entity": "[click me](jav&#x09;ascript:alert(1))",
    "javascript-reference-link": "[click me][1]\n\n[1]: javascript:alert(1)",
    "vbscript-link": "[click me](vbscript:msgbox(1))",
    "data-link": "[click me](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "javascript-image": "![x](javascript:alert(1))",
    "data-image": "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "remote-image": "![tracker](https://evil.example/pixel.png)",
    "javascript-autolink": "<javascript:alert(1)>",
    "math-with-markup": "$<img src=x onerror=alert(1)>$ and \\[<script>alert(1)</script>\\]",
    "code-with-markup": f"```html\n{SCRIPT}\n```",
}


@pytest.mark.parametrize("text", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
def test_an_answer_with_hostile_markup_renders_inert(
    arena_models: list[Model], bob: User, text: str
) -> None:
    client = _as(bob)
    battle = _finished_battle(client, text_a=text)
    generation = last_turn(battle).generation_a
    assert generation is not None
    response = client.get(f"/b/{battle.id}/answer/{generation.id}/")
    assert response.status_code == 200
    _no_live_markup(response.content.decode())
    assert Generation.objects.get(id=generation.id).text == text  # stored as the model said it


def test_a_protocol_relative_link_in_an_answer_leaves_the_site_without_its_referrer(
    arena_models: list[Model], bob: User
) -> None:
    client = _as(bob)
    battle = _finished_battle(client, text_a="[docs](//evil.example/x) and <https://evil.example>")
    generation = last_turn(battle).generation_a
    assert generation is not None
    html = client.get(f"/b/{battle.id}/answer/{generation.id}/").content.decode()
    anchors = re.findall(r"<a [^>]*>", html)
    assert len(anchors) == 2
    for anchor in anchors:
        assert 'rel="noopener noreferrer nofollow"' in anchor


@pytest.mark.django_db(transaction=True)
def test_a_model_streaming_script_through_the_real_pool_renders_inert(
    upstream: Any, celery_worker: str, bob: User
) -> None:
    """The fake upstream's fake-say model answers with the prompt's words: the hostile text goes
    through the real client, worker and stream, and is stored as said and rendered inert."""
    Model.objects.update(enabled=False)
    for name in ("say-a", "say-b"):
        model = ModelFactory.create(name=name, served_name="fake-say")
        EndpointFactory.create(model=model, base_url=upstream.base_url)
    client = _as(bob)
    said = "say: <script>alert(1)</script> <img src=x onerror=alert(1)> [x](javascript:alert(1))"
    battle = _battle(client, said)
    generation = last_turn(battle).generation_a
    assert generation is not None
    wait_for(
        lambda: Generation.objects.get(id=generation.id).status == GenerationStatus.DONE,
        timeout=30,
    )
    assert "<script>alert(1)</script>" in Generation.objects.get(id=generation.id).text
    html = client.get(f"/b/{battle.id}/answer/{generation.id}/").content.decode()
    assert "alert(1)" in html
    _no_live_markup(html)


# -- markup in model names ----------------------------------------------------------------


def test_markup_in_model_names_is_escaped_on_every_page_that_shows_them(
    arena_models: list[Model], bob: User
) -> None:
    Model.objects.filter(name="alpha-7b").update(display_name=f'Alpha "><{SCRIPT[1:]}')
    Model.objects.filter(name="beta-chat").update(organization=f"Beta {SCRIPT}")
    client = _as(bob)
    for path in ("/side-by-side/", "/chat/"):
        page = client.get(path).content.decode()
        assert "Alpha &quot;&gt;&lt;script&gt;" in page
        _no_live_markup(page, page=True)
    battle = _finished_battle(client)
    turn = last_turn(battle)
    verdict = _vote(client, battle, turn.id)
    assert verdict.status_code == 200
    _no_live_markup(verdict.content.decode())
    _no_live_markup(client.get(f"/b/{battle.id}/").content.decode(), page=True)


def test_markup_in_model_names_is_escaped_on_the_leaderboard(
    arena_models: list[Model], bob: User
) -> None:
    alpha, beta = arena_models[:2]
    Model.objects.filter(id=alpha.id).update(display_name=f"Alpha {SCRIPT}")
    alpha.refresh_from_db()
    simulate_votes([alpha, beta], 6)
    leaderboard_services.leaderboard_refresh(rounds=10, style_rounds=5, elo_rounds=3, seed=1)
    page = _as(bob).get("/leaderboard/").content.decode()
    assert "Alpha &lt;script&gt;" in page
    _no_live_markup(page, page=True)


# -- hostile images -----------------------------------------------------------------------


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, format="PNG")
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels, with a few bytes of highly compressible
    image data after it: the shape of a decompression bomb, cheap to build."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    rows = zlib.compressobj(9).compress(b"\0" * 65536)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows)


def _encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format=fmt)
    return out.getvalue()


def _upload(name: str, data: bytes, content_type: str) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type=content_type)


@pytest.mark.parametrize(
    ("name", "data", "content_type", "status"),
    [
        ("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (10 * 1024 * 1024), "image/png", 413),
        ("cut.png", _png(64, 64)[:60], "image/png", 400),
        ("notes.png", b"just some text, not an image at all", "image/png", 400),
        ("x.png", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "image/png", 400),
        ("shot.png", b"BM" + _png(8, 8)[2:], "image/png", 400),
        ("scan.png", _encoded("TIFF"), "image/png", 415),
    ],
    ids=["oversized", "truncated", "text-as-png", "svg-as-png", "corrupt-magic", "tiff"],
)
def test_a_hostile_image_is_refused_and_stores_nothing(
    arena_models: list[Model], bob: User, name: str, data: bytes, content_type: str, status: int
) -> None:
    before = _counts()
    response = _start(_as(bob), "what is this?", image=_upload(name, data, content_type))
    assert response.status_code == status, response.content[:300]
    assert _counts() == before


def test_a_decompression_bomb_is_refused_by_its_declared_size(
    arena_models: list[Model], bob: User
) -> None:
    """6324 x 6324 pixels in 40 KB of PNG: refused from its header, before any decoding."""
    before = _counts()
    bomb = _png_declaring(6324, 6324)
    assert len(bomb) < 200_000
    response = _start(_as(bob), "what is this?", image=_upload("bomb.png", bomb, "image/png"))
    assert response.status_code == 413
    assert _counts() == before


def test_a_giant_image_is_refused_with_413_naming_the_pixel_limit(
    arena_models: list[Model], bob: User
) -> None:
    before = _counts()
    giant = _upload("giant.png", _png_declaring(50_000, 50_000), "image/png")
    response = _start(_as(bob), "what is this?", image=giant)
    assert response.status_code == 413
    assert b"megapixels" in response.content
    assert _counts() == before


def test_an_image_is_not_decoded_before_the_rate_limit_refuses_the_battle(
    arena_models: list[Model], bob: User, settings: Any
) -> None:
    """Limits come first: over the limit, even an unreadable image gets 429, not the decoder's 400."""
    settings.ARENA_BATTLES_PER_MINUTE = 1
    client = _as(bob)
    _battle(client)
    before = _counts()
    response = _start(client, "again", image=_upload("cut.png", _png(64, 64)[:60], "image/png"))
    assert response.status_code == 429
    assert _counts() == before


# -- forged and foreign IDs ---------------------------------------------------------------


def test_charlie_cannot_read_or_act_on_bobs_battle(
    arena_models: list[Model], bob: User, charlie: User
) -> None:
    battle = _finished_battle(_as(bob))
    Battle.objects.filter(id=battle.id).update(image=_encoded("PNG"), image_mime="image/png")
    turn = last_turn(battle)
    assert turn.generation_a is not None
    before = _counts()
    intruder = _as(charlie)
    base = f"/b/{battle.id}"
    assert intruder.get(f"{base}/").status_code == 404
    assert intruder.get(f"{base}/image/").status_code == 404
    assert intruder.get(f"{base}/answer/{turn.generation_a.id}/").status_code == 404
    assert intruder.get(f"/s/{battle.id}/").status_code == 404  # not shared: no vote yet
    assert _vote(intruder, battle, turn.id).status_code == 404
    assert intruder.post(f"{base}/continue/", {"prompt": "mine now"}).status_code == 404
    assert intruder.post(f"{base}/regenerate/").status_code == 404
    assert intruder.post(f"{base}/flag/", {"reason": "spam"}).status_code == 404
    assert _counts() == before
    battle.refresh_from_db()
    assert (battle.flagged, battle.user_id) == (False, bob.id)
    assert last_turn(battle).id == turn.id


def test_a_forged_battle_id_or_turn_id_is_refused_with_404(
    arena_models: list[Model], bob: User
) -> None:
    client = _as(bob)
    battle = _finished_battle(client)
    other = _finished_battle(client)
    before = _counts()
    assert client.get(f"/b/{uuid.uuid4()}/").status_code == 404
    assert client.get("/b/not-a-uuid/").status_code == 404
    assert _vote(client, battle, last_turn(other).id).status_code == 404  # a turn of another battle
    assert _vote(client, battle, 2**31 - 1).status_code == 404
    response = client.get(f"/b/{battle.id}/answer/{last_turn(other).generation_a.id}/")  # type: ignore[union-attr]
    assert response.status_code == 404
    assert _counts() == before


def test_a_forged_battle_id_creates_no_session(arena_models: list[Model]) -> None:
    from django.contrib.sessions.models import Session

    before = Session.objects.count()
    assert Client().get(f"/b/{uuid.uuid4()}/").status_code == 404
    assert Session.objects.count() == before


def test_a_battle_id_from_the_export_opens_nothing(
    arena_models: list[Model], charlie: User
) -> None:
    import json

    alpha, beta = arena_models[:2]
    simulate_votes([alpha, beta], 4)
    snapshot = leaderboard_services.leaderboard_refresh(
        rounds=10, style_rounds=5, elo_rounds=3, seed=1
    )
    Battle.objects.update(image=_encoded("PNG"), image_mime="image/png")
    client = _as(charlie)
    lines = b"".join(client.get(f"/leaderboard/{snapshot.id}/battles.jsonl").streaming_content)  # type: ignore[attr-defined]
    exported = [json.loads(line) for line in lines.splitlines() if line.strip()]
    assert exported
    for row in exported:
        key = str(row.get("battle_id") or row.get("id"))
        assert client.get(f"/s/{key}/").status_code == 404
        assert client.get(f"/b/{key}/image/").status_code == 404


# -- replayed and double-submitted votes ----------------------------------------------------


def test_a_replayed_vote_is_refused_with_409_and_the_first_stands(
    arena_models: list[Model], bob: User
) -> None:
    client = _as(bob)
    battle = _finished_battle(client)
    turn = last_turn(battle)
    assert _vote(client, battle, turn.id, "a").status_code == 200
    for choice in ("a", "b", "tie"):
        assert _vote(client, battle, turn.id, choice).status_code == 409
    assert list(Vote.objects.values_list("choice", flat=True)) == ["a"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_votes_with_different_choices_store_exactly_one(
    arena_models: list[Model], bob: User
) -> None:
    client = _as(bob)
    battle = _finished_battle(client)
    turn = last_turn(battle)
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def submit(choice: str) -> None:
        try:
            barrier.wait()
            statuses.append(_vote(client, battle, turn.id, choice).status_code)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=submit, args=(c,)) for c in ("a", "b", "tie") * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409, 409, 409, 409, 409]
    assert Vote.objects.filter(turn=turn).count() == 1


@pytest.mark.parametrize("choice", ["c", "", f"a{SCRIPT}", "A" * 11])
def test_a_vote_with_a_forged_choice_is_refused_with_400(
    arena_models: list[Model], bob: User, choice: str
) -> None:
    client = _as(bob)
    battle = _finished_battle(client)
    assert _vote(client, battle, last_turn(battle).id, choice).status_code == 400
    assert not Vote.objects.exists()


# -- requests without CSRF ----------------------------------------------------------------


def test_every_state_changing_post_without_csrf_is_refused_with_403(
    arena_models: list[Model], bob: User
) -> None:
    battle = _finished_battle(_as(bob))
    turn = last_turn(battle)
    _, raw = apitokens.token_create(user=bob, name="nightly")
    token = ApiToken.objects.get(user=bob)
    before = _counts()
    client = _as(bob, enforce_csrf_checks=True)
    posts = {
        "/battles/": {"prompt": "hello"},
        f"/b/{battle.id}/vote/": {"turn": turn.id, "choice": "a"},
        f"/b/{battle.id}/continue/": {"prompt": "more"},
        f"/b/{battle.id}/regenerate/": {},
        f"/b/{battle.id}/flag/": {"reason": "x"},
        "/accounts/tokens/": {"name": "another"},
        f"/accounts/tokens/{token.id}/revoke/": {},
        "/accounts/logout/": {},
    }
    for path, data in posts.items():
        assert client.post(path, data).status_code == 403, path
        # A bearer token is no substitute for the CSRF token on a browser's endpoint.
        bearer = client.post(path, data, HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert bearer.status_code == 403, path
    assert _counts() == before
    assert client.get("/accounts/tokens/").status_code == 200  # still logged in
    battle.refresh_from_db()
    assert not battle.flagged


def test_signup_and_login_without_csrf_are_refused_with_403(db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    users = User.objects.count()
    data = {"username": "mallory", "password1": "a-long-pass-123", "password2": "a-long-pass-123"}
    assert client.post("/accounts/signup/", data).status_code == 403
    assert client.post("/accounts/login/", {"username": "x", "password": "y"}).status_code == 403
    assert User.objects.count() == users


# -- API tokens ---------------------------------------------------------------------------


@pytest.fixture
def snapshot_id(arena_models: list[Model]) -> int:
    simulate_votes(arena_models[:2], 4)
    return leaderboard_services.leaderboard_refresh(
        rounds=10, style_rounds=5, elo_rounds=3, seed=1
    ).id


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer ludus_", "Bearer " + "x" * 5000,
     "Bearer ludus_\x00abc", "Bearer not-a-ludus-token"],
    ids=["none", "bare-scheme", "empty", "basic", "prefix-only", "huge", "nul", "foreign"],
)  # fmt: skip
def test_an_export_with_a_missing_or_malformed_token_is_refused_with_401(
    snapshot_id: int, header: str
) -> None:
    headers = {"Authorization": header} if header else {}
    response = Client().get(f"/leaderboard/{snapshot_id}/export.json", headers=headers)
    assert response.status_code == 401
    assert "error" in response.json()


def test_a_revoked_token_and_a_deactivated_accounts_token_are_refused_with_401(
    snapshot_id: int, bob: User, charlie: User
) -> None:
    revoked, raw_revoked = apitokens.token_create(user=bob, name="old")
    _, raw_charlie = apitokens.token_create(user=charlie, name="c")
    url = f"/leaderboard/{snapshot_id}/export.json"
    assert Client().get(url, HTTP_AUTHORIZATION=f"Bearer {raw_revoked}").status_code == 200
    assert apitokens.token_revoke(user=bob, token_id=revoked.id)
    assert Client().get(url, HTTP_AUTHORIZATION=f"Bearer {raw_revoked}").status_code == 401
    User.objects.filter(id=charlie.id).update(is_active=False)
    assert Client().get(url, HTTP_AUTHORIZATION=f"Bearer {raw_charlie}").status_code == 401


def test_a_researcher_token_opens_exports_only(
    arena_models: list[Model], bob: User, alice: User
) -> None:
    """A token is scoped to the exports: it is no session on the site's pages, opens nobody's
    battle, and even a staff member's token reaches no staff page."""
    battle = _finished_battle(_as(bob))
    _, raw = apitokens.token_create(user=alice, name="staff script")
    _, bob_raw = apitokens.token_create(user=bob, name="bob script")
    bearer = {"Authorization": f"Bearer {raw}"}
    client = Client()
    assert client.get("/status/", headers=bearer).status_code == 302  # to the admin login
    assert client.get("/admin/", headers=bearer).status_code == 302
    assert client.get("/accounts/tokens/", headers=bearer).status_code == 302
    bob_bearer = {"Authorization": f"Bearer {bob_raw}"}
    assert client.get(f"/b/{battle.id}/", headers=bob_bearer).status_code == 404
    assert client.get("/metrics", headers=bearer).status_code in {200, 403}
    tokens = ApiToken.objects.count()
    assert client.post("/accounts/tokens/", {"name": "more"}, headers=bearer).status_code == 302
    assert ApiToken.objects.count() == tokens


def test_charlie_cannot_revoke_bobs_token(bob: User, charlie: User) -> None:
    token, raw = apitokens.token_create(user=bob, name="nightly")
    response = _as(charlie).post(f"/accounts/tokens/{token.id}/revoke/")
    assert response.status_code == 404
    assert apitokens.token_find(raw=raw) is not None


def test_guessing_api_tokens_is_throttled(snapshot_id: int) -> None:
    url = f"/leaderboard/{snapshot_id}/export.json"
    client = Client()
    statuses = {
        client.get(url, HTTP_AUTHORIZATION=f"Bearer ludus_guess{i}").status_code for i in range(100)
    }
    assert 429 in statuses


# -- hostile websocket messages -------------------------------------------------------------


async def _socket(cookie: str = "") -> Any:
    from channels.testing import WebsocketCommunicator

    from config.asgi import application

    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    comm = WebsocketCommunicator(application, "/ws/generations/", headers=headers)
    connected, _ = await comm.connect()
    assert connected
    return comm


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "message",
    [
        "{not json",
        "[]",
        '"subscribe"',
        '{"type": "subscribe\\u0000"}',
        '{"type": null}',
    ],
    ids=["not-json", "array", "string", "nul-in-type", "null-type"],
)
def test_a_malformed_socket_message_is_answered_or_closes_only_that_socket(message: str) -> None:
    """A message the protocol does not know gets "invalid", or (not JSON at all) closes that
    socket; another socket is served all the while."""
    from tests.helpers import receive_frame, run_async

    async def scenario() -> tuple[Any, Any]:
        hostile, other = await _socket(), await _socket()
        await hostile.send_to(text_data=message)
        reply = await hostile.receive_output(timeout=5)
        await other.send_json_to({"type": "ping"})
        other_reply = await receive_frame(other)
        await other.disconnect()
        await hostile.disconnect()
        return reply, other_reply

    reply, other_reply = run_async(scenario())
    if reply["type"] == "websocket.send":
        assert '"invalid"' in reply["text"]
    else:
        assert reply["type"] == "websocket.close"
    assert other_reply["type"] == "invalid"


@pytest.mark.django_db(transaction=True)
def test_a_socket_cannot_watch_a_generation_of_someone_elses_battle(
    arena_models: list[Model], bob: User, charlie: User
) -> None:
    """Charlie asks for bob's answers: without a token, with a token signed for another
    generation, with a forged token, and by an id carrying control characters. Each is denied and
    no text of bob's reaches him."""
    from django.conf import settings

    from modelhub import streams
    from tests.helpers import receive_frame, run_async

    bob_client = _as(bob)
    battle = _finished_battle(bob_client, text_a="bob's secret answer")
    turn = last_turn(battle)
    gid, other = str(turn.generation_a_id), str(turn.generation_b_id)
    charlie_client = _as(charlie)
    cookie = f"{settings.SESSION_COOKIE_NAME}={charlie_client.cookies[settings.SESSION_COOKIE_NAME].value}"
    asks = [
        {"id": gid},
        {"id": gid, "token": streams.stream_token(str(uuid.uuid4()))},
        {"id": gid, "token": streams.stream_token(other) + "x"},
        {"id": gid + "\x00\x1b", "token": "ludus"},
    ]

    async def scenario() -> list[Any]:
        comm = await _socket(cookie)
        replies = []
        for item in asks:
            await comm.send_json_to({"type": "subscribe", "generations": [item]})
            replies.append(await receive_frame(comm))
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()
        return replies

    replies = run_async(scenario())
    assert [r["type"] for r in replies] == ["denied"] * len(asks)
    assert "secret" not in repr(replies)


# -- forged and foreign quest IDs -----------------------------------------------------------


def test_charlie_cannot_submit_skip_draft_or_view_bobs_quest(
    arena_models: list[Model], bob: User, charlie: User
) -> None:
    from collection import services as quests
    from collection.models import Assignment, AssignmentState, Draft, XpEntry

    battle = _finished_battle(_as(bob))
    Battle.objects.filter(id=battle.id).update(image=_encoded("PNG"), image_mime="image/png")
    item = quests.quest_item_create(
        type="image", prompt="which is better?", battle_id=battle.id,
        replies=[{"text": "one"}, {"text": "two"}],
    )  # fmt: skip
    assert item is not None
    assignment = quests.assignment_claim(user_id=bob.id, quest_type="image")
    assert assignment is not None and assignment.item_id == item.id
    quests.draft_save(user_id=bob.id, item_id=item.id, text="bob's draft")
    ledger = XpEntry.objects.count()
    intruder = _as(charlie)
    submit = intruder.post(f"/quests/a/{assignment.id}/submit/", {"choice": "a", "reason": "x"})
    assert submit.status_code == 404
    assert intruder.post(f"/quests/a/{assignment.id}/skip/").status_code == 404
    assert intruder.post(f"/quests/i/{item.id}/draft/", {"text": "mine"}).status_code == 404
    assert intruder.get(f"/quests/i/{item.id}/image/").status_code == 404
    assert intruder.post("/quests/a/2147483647/submit/", {"choice": "a"}).status_code == 404
    assignment.refresh_from_db()
    assert assignment.state == AssignmentState.LEASED and assignment.user_id == bob.id
    assert list(Draft.objects.values_list("user_id", "text")) == [(bob.id, "bob's draft")]
    assert XpEntry.objects.count() == ledger
    assert not Assignment.objects.filter(user=charlie).exists()
    assert _as(bob).get(f"/quests/i/{item.id}/image/").status_code == 200
