"""Staff pages of voter anomalies: the voters held out of the published leaderboards, with the
evidence, and the decision on each (release or confirm)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from arena.leaderboard import selectors as leaderboard_selectors
from arena.models import HoldStatus, VoterHold
from collection import anomalies


@staff_member_required
@require_GET
def anomalies_page(request: HttpRequest) -> HttpResponse:
    holds = leaderboard_selectors.voter_holds()
    context = {
        "waiting": [h for h in holds if h.status == HoldStatus.HELD],
        "reviewed": [h for h in holds if h.status != HoldStatus.HELD],
    }
    return render(request, "collection/anomalies.html", context)


@staff_member_required
@require_POST
def anomaly_decide(request: HttpRequest, hold_id: int) -> HttpResponse:
    try:
        hold = anomalies.voter_hold_decide(
            hold_id=hold_id,
            reviewer=request.user,  # type: ignore[arg-type]
            decision=request.POST.get("decision", ""),
        )
    except anomalies.AnomalyReviewError as error:
        return HttpResponseBadRequest(str(error))
    except VoterHold.DoesNotExist:
        return HttpResponse("No such held voter.", status=404)
    messages.success(request, f"{hold.judge}: {hold.get_status_display()}.")
    return redirect("staff-anomalies")
