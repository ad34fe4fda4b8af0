"""Arena pages. One page template (arena/battle.html) with named partials; htmx requests get the
partial, plain form posts get a redirect (the page works without JavaScript, minus streaming)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from arena import images, ratelimit, selectors, services
from arena.forms import BattleStartForm, FlagForm, PromptForm, VoteForm
from arena.models import Battle, Mode
from arena.selectors import Requester
from arena.signals import SESSION_OWNER_KEY, session_owner_remember
from modelhub.models import Model
from modelhub.selectors import models_available

PAGE = "arena/battle.html"
MODE_HOME = {Mode.ANONYMOUS: "arena-home", Mode.NAMED: "arena-named", Mode.DIRECT: "arena-direct"}


def _requester(request: HttpRequest, *, create_session: bool = True) -> Requester:
    if create_session:
        if not request.session.session_key:
            request.session.save()  # generations are owned by the session: it must exist first
        session_owner_remember(request)  # so that a later login adopts this browser's battles
    user = request.user
    return Requester(
        user_id=user.pk if user.is_authenticated else None,
        session_key=request.session.session_key or "",
        ip_hash=services.ip_hash(request.META.get("REMOTE_ADDR", "")),
    )


def _context(
    request: HttpRequest,
    *,
    mode: str,
    battle: Battle | None = None,
    error: str = "",
    tools: bool = False,
) -> dict[str, Any]:
    tools = bool(battle.tools) if battle is not None else tools
    context: dict[str, Any] = {
        "mode": mode,
        "modes": Mode,
        "battle": battle,
        "error": error,
        "tools": tools,  # a tools battle, or the page that starts one
        "home_url": _mode_home_url(mode, tools=tools),
    }
    if mode == Mode.ANONYMOUS:
        # An image battle draws two vision models: with fewer up, the page says so where the
        # upload would be, instead of offering one that can only be refused.
        context["vision_models"] = models_available(modality="image").count()
    if error and request.method == "POST":
        # A refused prompt comes back in the form, with the models picked: nothing typed is lost.
        context["draft"] = request.POST
    if battle is None:
        if mode != Mode.ANONYMOUS:
            context["choices"] = list(models_available().order_by("name"))
        return context
    turns = selectors.battle_turns(battle=battle)
    last = turns[-1] if turns else None
    last_vote = getattr(last, "vote", None) if last else None
    revealed = selectors.battle_is_revealed(battle=battle)
    context |= {
        "turns": turns,
        "last": last,
        "last_vote": last_vote,
        "revealed": revealed,
        "two_sided": battle.model_b_id is not None,
        "finished": last is not None and selectors.turn_is_finished(last),
        "share_url": request.build_absolute_uri(reverse("battle-share", args=[battle.id]))
        if battle.votes.exists()
        else "",
    }
    return context


@lru_cache(maxsize=1)
def _base_css_cached() -> str:
    path = finders.find("css/ludus.css")
    return Path(str(path)).read_text() if path else ""


def _base_css() -> str:
    """The site stylesheet, inlined in the arena page (no render-blocking request); read once,
    or on every page with DEBUG so that edits show."""
    css = _base_css_cached.__wrapped__() if settings.DEBUG else _base_css_cached()
    return mark_safe(css)  # our own static file, not user input


def _page(
    request: HttpRequest, context: dict[str, Any], *, status: int = 200, push: str = ""
) -> HttpResponse:
    template = f"{PAGE}#arena" if request.htmx else PAGE  # type: ignore[attr-defined]
    if not request.htmx:  # type: ignore[attr-defined]
        context["base_css"] = _base_css()
        # The page opens its socket as it loads (arena.js) when the socket can act for the
        # visitor: its session is what a stop on the socket is checked against, and a visitor
        # who has started no battle has none until the first one (which the socket would not
        # see). Such a page opens its socket with its first answers.
        context["preconnect"] = request.user.is_authenticated or bool(
            request.session.get(SESSION_OWNER_KEY)
        )
    response = render(request, template, context, status=status)
    if push and request.htmx:  # type: ignore[attr-defined]
        response["HX-Push-Url"] = push
    return response


def _mode_page(request: HttpRequest, mode: str, *, tools: bool = False) -> HttpResponse:
    return _page(request, _context(request, mode=mode, tools=tools))


@require_GET
def arena_home(request: HttpRequest) -> HttpResponse:
    return _mode_page(request, Mode.ANONYMOUS)


@require_GET
def arena_tools(request: HttpRequest) -> HttpResponse:
    """Anonymous battles in which both models get the same tools."""
    return _mode_page(request, Mode.ANONYMOUS, tools=True)


@require_GET
def arena_named(request: HttpRequest) -> HttpResponse:
    return _mode_page(request, Mode.NAMED)


@require_GET
def arena_direct(request: HttpRequest) -> HttpResponse:
    return _mode_page(request, Mode.DIRECT)


def _image_bytes(form: PromptForm) -> bytes | None:
    """The upload as sent (the service checks and decodes it after its cheaper checks)."""
    upload = form.cleaned_data.get("image")
    if not upload:
        return None
    if upload.size and upload.size > images.MAX_BYTES:
        raise images.ImageRejected("The image is larger than 10 MB.", 413)
    return bytes(upload.read())


def _model(name: str) -> Model | None:
    return Model.objects.filter(name=name).first() if name else None


def _start(
    request: HttpRequest,
    form: BattleStartForm | PromptForm,
    mode: str,
    *,
    tools: bool = False,
    **models: Model | None,
) -> HttpResponse:
    try:
        image = _image_bytes(form)
        battle = services.battle_create(
            requester=_requester(request),
            prompt=form.cleaned_data["prompt"],
            mode=mode,
            image=image,
            tools=tools,
            **models,
        )
    except images.ImageRejected as exc:
        context = _context(request, mode=mode, error=str(exc), tools=tools)
        return _page(request, context, status=exc.status)
    except services.ArenaError as exc:
        context = _context(request, mode=mode, error=exc.message, tools=tools)
        return _page(request, context, status=exc.status)
    url = reverse("battle", args=[battle.id])
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect(url)
    return _page(request, _context(request, mode=mode, battle=battle), push=url)


@require_POST
def battle_start(request: HttpRequest) -> HttpResponse:
    form = BattleStartForm(request.POST, request.FILES)
    mode = request.POST.get("mode") or Mode.ANONYMOUS
    if mode not in Mode.values:
        mode = Mode.ANONYMOUS
    tools = mode == Mode.ANONYMOUS and request.POST.get("tools") == "1"
    if not form.is_valid():
        context = _context(request, mode=mode, error="Write a prompt first.", tools=tools)
        return _page(request, context, status=400)
    models: dict[str, Model | None] = {}
    if mode != Mode.ANONYMOUS:
        models["model_a"] = _model(form.cleaned_data["model_a"])
        models["model_b"] = _model(form.cleaned_data["model_b"]) if mode == Mode.NAMED else None
    return _start(request, form, mode, tools=tools, **models)


def _owned(request: HttpRequest, battle_id: UUID) -> tuple[Battle, Requester]:
    # No session is created here: an owner has one already, and a 404 must not leave one behind.
    requester = _requester(request, create_session=False)
    battle = selectors.battle_for_owner(battle_id=battle_id, requester=requester)
    if battle is None:
        raise Http404("No such battle.")
    return battle, requester


@require_GET
def battle_page(request: HttpRequest, battle_id: UUID) -> HttpResponse:
    battle, _ = _owned(request, battle_id)
    return _page(request, _context(request, mode=battle.mode, battle=battle))


@require_POST
def battle_continue_view(request: HttpRequest, battle_id: UUID) -> HttpResponse:
    battle, requester = _owned(request, battle_id)
    form = PromptForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(
            request,
            _context(request, mode=battle.mode, battle=battle, error="Write a prompt first."),
            status=400,
        )
    if form.cleaned_data.get("image"):
        # One image per conversation: a new image starts a new battle with the same mode.
        models: dict[str, Model | None] = {}
        if battle.mode != Mode.ANONYMOUS:
            models = {"model_a": battle.model_a, "model_b": battle.model_b}
        return _start(request, form, battle.mode, tools=bool(battle.tools), **models)
    try:
        services.battle_continue(
            battle=battle, requester=requester, prompt=form.cleaned_data["prompt"]
        )
    except services.ArenaError as exc:
        context = _context(request, mode=battle.mode, battle=battle, error=exc.message)
        return _page(request, context, status=exc.status)
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect("battle", battle_id=battle.id)
    return _page(request, _context(request, mode=battle.mode, battle=battle))


@require_POST
def battle_regenerate_view(request: HttpRequest, battle_id: UUID) -> HttpResponse:
    battle, requester = _owned(request, battle_id)
    try:
        services.turn_regenerate(battle=battle, requester=requester)
    except services.ArenaError as exc:
        context = _context(request, mode=battle.mode, battle=battle, error=exc.message)
        return _page(request, context, status=exc.status)
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect("battle", battle_id=battle.id)
    return _page(request, _context(request, mode=battle.mode, battle=battle))


def _verdict_template() -> Any:
    return loader.get_template(f"{PAGE}#verdict")


VOTE_BUDGET_SPENT = (
    "You have cast today's {budget} votes, the daily budget. It renews at midnight UTC."
)


@require_POST
def battle_vote_view(request: HttpRequest, battle_id: UUID) -> HttpResponse:
    """The hot path: two round trips to Redis (the daily budget, then the per-minute limits),
    then one statement (lock, checks and insert) in PostgreSQL."""
    form = VoteForm(request.POST)
    if not form.is_valid():
        return HttpResponse("Choose an answer.", status=400, content_type="text/plain")
    requester = _requester(request, create_session=False)
    # The daily budget is taken first and given back when the vote is refused: only stored votes
    # spend it.
    budget = [(requester.ident, settings.ARENA_VOTES_PER_DAY)]
    if not ratelimit.hit(ratelimit.VOTE_DAY_SCOPE, budget, window_s=ratelimit.DAY_S):
        spent = VOTE_BUDGET_SPENT.format(budget=settings.ARENA_VOTES_PER_DAY)
        return vote_refused(services.RateLimited(spent))
    try:
        result = services.vote_cast(
            battle_id=battle_id,
            turn_id=form.cleaned_data["turn"],
            requester=requester,
            choice=form.cleaned_data["choice"],
        )
    except services.ArenaError as exc:
        if settings.ARENA_VOTES_PER_DAY > 0:
            ratelimit.refund(ratelimit.VOTE_DAY_SCOPE, requester.ident, window_s=ratelimit.DAY_S)
        return vote_refused(exc)
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect("battle", battle_id=battle_id)
    return vote_verdict(request, result)


def vote_refused(exc: services.ArenaError) -> HttpResponse:
    return HttpResponse(exc.message, status=exc.status, content_type="text/plain")


@lru_cache(maxsize=8)
def _mode_home_url(mode: str, *, tools: bool = False) -> str:
    """Where "New round" goes: the page that started the battle (a tools battle's is /tools/)."""
    return reverse("arena-tools" if tools else MODE_HOME[Mode(mode)])


@lru_cache(maxsize=1)
def _share_path_template() -> tuple[str, str]:
    zero = UUID(int=0)
    return reverse("battle-share", args=[zero]), str(zero)


def _share_path(battle_id: UUID) -> str:
    """reverse("battle-share", args=[battle_id]), without the resolver on the hot path."""
    path, zero = _share_path_template()
    return path.replace(zero, str(battle_id))


def vote_verdict(request: HttpRequest, result: services.VoteResult) -> HttpResponse:
    """The htmx reply to a vote: the verdict partial (names revealed), swapped into #actions."""
    battle = result.battle
    # The partial needs no request: rendered without context processors (no user, no CSRF token).
    html = _verdict_template().render(
        {
            "battle": battle,
            "vote": result.vote,
            "revealed": True,
            "oob": True,
            "last_vote": result.vote,
            "finished": True,
            "two_sided": battle.model_b_id is not None,
            "home_url": _mode_home_url(battle.mode, tools=bool(battle.tools)),
            "share_url": request.build_absolute_uri(_share_path(battle.id)),
        }
    )
    response = HttpResponse(html)
    response["HX-Retarget"] = "#actions"
    return response


@require_POST
def battle_flag_view(request: HttpRequest, battle_id: UUID) -> HttpResponse:
    battle, _ = _owned(request, battle_id)
    form = FlagForm(request.POST)
    reason = form.cleaned_data.get("reason", "") if form.is_valid() else ""
    services.battle_flag(battle=battle, reason=reason)
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect("battle", battle_id=battle.id)
    return HttpResponse("Thanks, this conversation is flagged for review.")


@require_GET
def answer_view(request: HttpRequest, battle_id: UUID, generation_id: UUID) -> HttpResponse:
    """One answer as sanitised HTML (the page fetches it when the stream ends)."""
    battle = selectors.battle_for_owner(
        battle_id=battle_id, requester=_requester(request, create_session=False)
    ) or selectors.battle_shared(battle_id=battle_id)
    if battle is None:
        raise Http404("No such battle.")
    found = selectors.generation_in_battle(battle=battle, generation_id=generation_id)
    if found is None:
        raise Http404("No such answer.")
    generation, _side = found
    return render(request, f"{PAGE}#answer-body", {"generation": generation})


@require_GET
def battle_image(request: HttpRequest, battle_id: UUID) -> HttpResponse:
    battle = selectors.battle_for_owner(
        battle_id=battle_id, requester=_requester(request, create_session=False)
    ) or selectors.battle_shared(battle_id=battle_id)
    if battle is None or not battle.image_mime or battle.image is None:
        raise Http404("No image.")
    response = HttpResponse(bytes(battle.image), content_type=battle.image_mime)
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_GET
def battle_share(request: HttpRequest, battle_id: UUID) -> HttpResponse:
    battle = selectors.battle_shared(battle_id=battle_id)
    if battle is None:
        raise Http404("This battle is not shared (it has no vote yet).")
    context = _context(request, mode=battle.mode, battle=battle)
    context |= {"readonly": True, "base_css": _base_css()}
    return render(request, PAGE, context)
