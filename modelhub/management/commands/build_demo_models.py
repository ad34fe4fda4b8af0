"""``manage.py build_demo_models [--if-missing] [--force] [--quick] [--seed N]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from modelhub.zoo_registry import zoo_build, zoo_is_built, zoo_models_register


class Command(BaseCommand):
    help = "Train the demo model zoo into MODELS_DIR (if needed) and register its models."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--if-missing", action="store_true", help="build only if not built")
        parser.add_argument("--force", action="store_true", help="rebuild even if built")
        parser.add_argument("--quick", action="store_true", help="tiny budget (tests)")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, **options: Any) -> None:
        models_dir = Path(settings.MODELS_DIR)
        built = zoo_is_built(models_dir=models_dir)
        if options["force"] or not built:
            self.stdout.write(f"Building the demo zoo into {models_dir} ...")
            manifest = zoo_build(
                models_dir=models_dir, seed=options["seed"], quick=options["quick"]
            )
            self.stdout.write(f"Built in {manifest['build_seconds']}s.")
        elif not options["if_missing"]:
            self.stdout.write(f"Zoo already built in {models_dir}; use --force to rebuild.")
        rows = zoo_models_register(models_dir=models_dir)
        for model in rows:
            self.stdout.write(f"  {model.name:14} heldout_loss={model.heldout_loss:.4f}")
        self.stdout.write(self.style.SUCCESS(f"Registered {len(rows)} demo models."))
