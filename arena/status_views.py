"""The staff status page: the hub's serving pool beside the arena's vote rate.

It lives in the arena because it shows both, and the arena may read the hub, never the reverse."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from arena.models import Vote
from modelhub import health


def _votes_in_the_last_minute() -> int:
    return Vote.objects.filter(created_at__gte=timezone.now() - timedelta(minutes=1)).count()


@staff_member_required
@require_GET
@never_cache
def status_page(request: HttpRequest) -> HttpResponse:
    """Staff-only live view of the serving pool; htmx refreshes the `pool` partial every 2 s."""
    context = {
        **health.pool_status(),
        "votes_per_minute": _votes_in_the_last_minute(),
        "now": timezone.now(),
    }
    template = "arena/status.html#pool" if request.htmx else "arena/status.html"  # type: ignore[attr-defined]
    return render(request, template, context)
