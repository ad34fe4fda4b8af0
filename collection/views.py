"""Quests, the rules, contributor boards and the profile. Quests need an account: anonymous
visitors are sent to log in."""

from __future__ import annotations

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from collection import rules, selectors, services
from collection.models import QuestFocus, QuestItem, QuestType

QUEST_PAGE = "collection/quest.html"


def _user_id(request: HttpRequest) -> int:
    assert request.user.pk is not None
    return int(request.user.pk)


@login_required
@require_GET
def quests_home(request: HttpRequest) -> HttpResponse:
    user_id = _user_id(request)
    settled = selectors.xp_totals(user_id=user_id)[0]
    context = {
        "cards": selectors.quest_cards(),
        "goals": selectors.goals_progress(user_id=user_id),
        "settled": settled,
        "level": rules.level_for(settled),
        "budgets": selectors.budgets_today(user_id=user_id),
    }
    return render(request, "collection/quests.html", context)


def _quest_context(request: HttpRequest, quest_type: str, focus: str = "") -> dict[str, object]:
    user_id = _user_id(request)
    assignment = services.assignment_claim(user_id=user_id, quest_type=quest_type, focus=focus)
    draft = ""
    if assignment is not None and assignment.item.type == QuestType.REFERENCE:
        draft = selectors.draft_text(user_id=user_id, item_id=assignment.item_id)
    tools = assignment is not None and assignment.item.focus == QuestFocus.TOOLS
    title = QuestType(quest_type).label
    if focus or tools:
        title = selectors.TOOL_QUEST_TITLES.get(QuestType(quest_type), title)
    return {
        "quest_type": quest_type,
        "focus": focus,
        "title": title,
        "assignment": assignment,
        "item": assignment.item if assignment else None,
        "draft": draft,
        "labels": rules.TOOL_LABELS if tools else rules.LABELS,
        "ratings": range(1, 6),
    }


@login_required
@require_GET
def quest_page(request: HttpRequest, quest_type: str) -> HttpResponse:
    """The user's current item of this type (a live lease is resumed, else the router leases the
    next one); `?focus=tools` asks for the type's tool-use items only."""
    focus = request.GET.get("focus", "")
    if quest_type not in QuestType.values or focus not in QuestFocus.values:
        raise Http404("No such quest.")
    if focus and quest_type not in selectors.TOOL_QUEST_TITLES:
        raise Http404("No such quest.")
    if selectors.quests_left_today(user_id=_user_id(request)) == 0:
        return _refusal(request, services.BudgetSpent(services.budget_spent_message()))
    return render(request, QUEST_PAGE, _quest_context(request, quest_type, focus))


@login_required
@require_POST
def quest_submit(request: HttpRequest, assignment_id: int) -> HttpResponse:
    user_id = _user_id(request)
    before = selectors.xp_totals(user_id=user_id)[0]
    data: dict[str, object] = dict(request.POST.items())
    data["labels"] = request.POST.getlist("labels")
    try:
        assignment = services.assignment_submit(
            user_id=user_id, assignment_id=assignment_id, data=data
        )
    except services.QuestError as error:
        return _refusal(request, error)
    settled, pending = selectors.xp_totals(user_id=user_id)
    entry = assignment.xp.first()
    context = {
        "assignment": assignment,
        "quest_type": assignment.item.type,
        "focus": assignment.item.focus,
        "entry": entry,
        "settled": settled,
        "pending": pending,
        "level": rules.level_for(settled),
        "levelled_up": rules.level_for(settled) > rules.level_for(before),
    }
    template = f"{QUEST_PAGE}#result" if request.htmx else QUEST_PAGE  # type: ignore[attr-defined]
    return render(request, template, context)


def _refusal(request: HttpRequest, error: services.QuestError) -> HttpResponse:
    if isinstance(error, services.NotFound):
        raise Http404(str(error))
    template = f"{QUEST_PAGE}#refusal" if request.htmx else QUEST_PAGE  # type: ignore[attr-defined]
    return render(request, template, {"error": str(error)}, status=error.status)


@login_required
@require_POST
def quest_skip(request: HttpRequest, assignment_id: int) -> HttpResponse:
    try:
        assignment = services.assignment_skip(
            user_id=_user_id(request), assignment_id=assignment_id
        )
    except services.NotFound as error:
        raise Http404(str(error)) from None
    url = reverse("quest", kwargs={"quest_type": assignment.item.type})
    return redirect(f"{url}?focus={assignment.item.focus}" if assignment.item.focus else url)


@login_required
@require_POST
def quest_draft(request: HttpRequest, item_id: int) -> HttpResponse:
    """Save the written answer as it is typed (htmx, on keyup after a pause)."""
    try:
        services.draft_save(
            user_id=_user_id(request), item_id=item_id, text=request.POST.get("text", "")
        )
    except services.NotFound as error:
        raise Http404(str(error)) from None
    return render(request, f"{QUEST_PAGE}#draft-saved", {})


@login_required
@require_GET
def quest_image(request: HttpRequest, item_id: int) -> HttpResponse:
    """The image of an image quest's battle, to the people who hold or held the item."""
    item = (
        QuestItem.objects.select_related("battle")
        .filter(id=item_id, type=QuestType.IMAGE, assignments__user_id=_user_id(request))
        .first()
    )
    if item is None or item.battle is None or item.battle.image is None:
        raise Http404("No image.")
    response = HttpResponse(bytes(item.battle.image), content_type=item.battle.image_mime)
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_GET
def rules_page(request: HttpRequest) -> HttpResponse:
    context = {
        "xp": [(QuestType(t).label, xp, rules.OVERLAP[t]) for t, xp in rules.XP.items()],
        "levels": list(enumerate(rules.LEVELS, start=1)),
        "goals": rules.DAILY_GOALS,
        "badges": rules.BADGES,
        "lease_minutes": rules.LEASE_SECONDS // 60,
        "labels": rules.LABELS,
        "tool_labels": rules.TOOL_LABELS,
        "reliability_min": settings.QUEST_RELIABILITY_MIN,
        "quest_budget": settings.QUEST_ANSWERS_PER_DAY,
        "vote_budget": settings.ARENA_VOTES_PER_DAY,
    }
    return render(request, "collection/rules.html", context)


@require_GET
def contributor_leaderboard(request: HttpRequest) -> HttpResponse:
    period = request.GET.get("period", "week")
    quest_type = request.GET.get("type", "")
    if period not in selectors.PERIODS or quest_type not in ("", *QuestType.values):
        raise Http404("No such board.")
    user_id = request.user.pk if request.user.is_authenticated else None
    top, near = selectors.contributor_board(period=period, quest_type=quest_type, user_id=user_id)
    context = {
        "top": top, "near": near, "period": period, "quest_type": quest_type,
        "periods": list(selectors.PERIODS), "types": QuestType.choices,
    }  # fmt: skip
    return render(request, "collection/leaderboard.html", context)


@login_required
@require_GET
def profile_page(request: HttpRequest) -> HttpResponse:
    user_id = _user_id(request)
    profile = selectors.contributor_profile(user_id=user_id)
    context = {"profile": profile, "budgets": selectors.budgets_today(user_id=user_id)}
    return render(request, "collection/me.html", context)


@staff_member_required
@require_GET
def quality_page(request: HttpRequest) -> HttpResponse:
    """Staff: each contributor's reliability (gold accuracy, agreement) and Krippendorff's alpha
    per quest type and per contributor."""
    return render(request, "collection/quality.html", {"quality": selectors.quality_overview()})


@login_required
@require_POST
def profile_board_visibility(request: HttpRequest) -> HttpResponse:
    services.contributor_opt_out_set(
        user=request.user,  # type: ignore[arg-type]
        opt_out=request.POST.get("opt_out") == "1",
    )
    return redirect("me")
