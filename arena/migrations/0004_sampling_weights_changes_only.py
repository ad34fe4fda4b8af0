"""Sampling weights history: keep one row per change of the weights.

Earlier versions stored a row with empty weights whenever the pool looked empty (every start,
before the first health probe), then the unchanged weights again once it filled: two rows per
restart. This drops the empty rows and every row equal to the row kept before it."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def keep_changes_only(apps: Any, schema_editor: Any) -> None:
    SamplingWeights = apps.get_model("arena", "SamplingWeights")
    previous = None
    drop = []
    for row in SamplingWeights.objects.order_by("recorded_at", "id").iterator():
        state = (row.policy, row.weights)
        if not row.weights or state == previous:
            drop.append(row.id)
            continue
        previous = state
    SamplingWeights.objects.filter(id__in=drop).delete()


class Migration(migrations.Migration):
    dependencies = [("arena", "0003_api_tokens")]

    # The dropped rows said nothing the kept ones do not: nothing to restore.
    operations = [migrations.RunPython(keep_changes_only, migrations.RunPython.noop)]
