"""`manage.py models load FILE | list [--format json] | enable NAME | disable NAME`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser

from modelhub import services
from modelhub.models import Model
from modelhub.selectors import model_list


class Command(BaseCommand):
    help = "Manage registered models: load them from a YAML/JSON file, list, enable, disable."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        load = sub.add_parser("load", help="create or update models from a YAML or JSON file")
        load.add_argument("file")
        listing = sub.add_parser("list", help="list models with engine, modalities and endpoints")
        listing.add_argument("--format", choices=["text", "json"], default="text")
        for action in ("enable", "disable"):
            p = sub.add_parser(action, help=f"{action} a model")
            p.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "load":
            self._load(Path(options["file"]))
        elif action == "list":
            self._list(options["format"])
        else:
            try:
                model = services.model_set_enabled(name=options["name"], enabled=action == "enable")
            except Model.DoesNotExist as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"{model.name}: {'enabled' if model.enabled else 'disabled'}")

    def _load(self, path: Path) -> None:
        if not path.exists():
            raise CommandError(f"{path}: no such file")
        try:
            data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
        except yaml.YAMLError as exc:
            raise CommandError(f"{path}: not valid YAML/JSON: {exc}") from None
        if isinstance(data, dict) and "models" in data:
            data = data["models"]
        try:
            models = services.models_load(entries=data)
        except services.ModelConfigError as exc:
            raise CommandError(f"{path}: {exc}") from None
        self.stdout.write(f"loaded {len(models)} model(s): {', '.join(m.name for m in models)}")

    def _list(self, fmt: str) -> None:
        rows: list[dict[str, Any]] = [
            {
                "name": m.name,
                "display_name": m.label,
                "organization": m.organization,
                "engine": m.engine,
                "modalities": list(m.modalities),
                "enabled": m.enabled,
                "arena_eligible": m.arena_eligible,
                "endpoints": [ep.base_url for ep in m.endpoints.all()],
            }
            for m in model_list()
        ]
        if fmt == "json":
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("no models registered")
        for row in rows:
            state = "enabled" if row["enabled"] else "disabled"
            self.stdout.write(
                f"{row['name']:<28} {row['engine']:<7} {','.join(row['modalities']):<11} {state:<9} {' '.join(row['endpoints'])}"
            )
