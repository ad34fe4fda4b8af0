"""`manage.py evaluate_tool_calls [NAME ...] [--cases FILE]`: the function-calling evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from modelhub.models import Model
from modelhub.services.evaluations import EvaluationFailed, tool_call_evaluation_run
from modelhub.zoo import tooluse


class Command(BaseCommand):
    help = (
        "Run the function-calling test set (BFCL-style: calls matched on name and arguments) "
        "against models' endpoints and store each score (the tools leaderboard's column)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "names", nargs="*", help="models to evaluate (default: enabled models with tools)"
        )
        parser.add_argument(
            "--cases",
            type=Path,
            default=None,
            help="test set in JSON Lines (default: the one the zoo build writes under MODELS_DIR)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        cases = options["cases"] or Path(settings.MODELS_DIR) / tooluse.TEST_SET
        names: list[str] = options["names"]
        if names:
            models = list(Model.objects.filter(name__in=names).order_by("name"))
            missing = sorted(set(names) - {m.name for m in models})
            if missing:
                raise CommandError(f"no such model: {', '.join(missing)}")
        else:
            models = list(Model.objects.filter(enabled=True).exclude(tools=[]).order_by("name"))
        failed = []
        for model in models:
            try:
                run = tool_call_evaluation_run(model=model, cases_path=cases)
            except EvaluationFailed as exc:
                self.stderr.write(f"{model.name}: {exc}")
                failed.append(model.name)
                continue
            per_category = ", ".join(f"{k} {v:.1%}" for k, v in run.by_category.items())
            self.stdout.write(f"{model.name}: {run.accuracy:.1%} of {run.cases} ({per_category})")
        if failed:
            raise CommandError(f"not evaluated: {', '.join(failed)}")
